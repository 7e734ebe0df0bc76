"""Options a task would ignore are refused before anything is written: MTAL's ``setting`` keys
outside MTAL, ``scope: single`` where the task or model fixes the scope, and a ``train.metric`` the
task never computes (it silently kept the first epoch)."""

from __future__ import annotations

import re

import pytest

from cdrec.config import load_config
from cdrec.errors import CdrecError
from cdrec.experiments.pipeline import run_config

TINY = ["data.synthetic={n_users: 120, n_domains: 2, items_per_domain: 40}", "train.epochs=1", "train.progress=false", "train.device=cpu"]


@pytest.mark.parametrize(
    ("model", "key", "value", "message"),
    [
        ("bprmf", "setting.eta", "0.3", "setting: the ranking task takes no setting keys (they configure MTAL runs); got ['eta']"),
        ("sasrec-dt", "setting.foo", "bar", "setting: the sequential task takes no setting keys"),
        ("mmoe", "setting.foo", "bar", "setting: the ctr task takes no setting keys"),
        ("sasrec-dt", "train.metric", "AUC", "train.metric: 'AUC' is not among the metrics computed with eval.ks"),
        ("merit", "scope", "single", "scope: the sequential task does not take scope='single'; the model fixes it"),
        ("mmoe", "scope", "single", "scope: the ctr task does not take scope='single'; model_params.mode"),
        ("aae", "scope", "single", "scope: the mtal task does not take scope='single'"),
        ("mmoe", "split.full_ranking", "true", "split.full_ranking: the ctr task scores rows"),
        ("aae", "split.full_ranking", "true", "split.full_ranking: the mtal task ranks each user's held-out rated items"),
    ],
)
def test_ignored_options_are_refused(tmp_path, model, key, value, message):
    cfg = load_config(None, [f"model={model}", *TINY, f"{key}={value}"])
    with pytest.raises(CdrecError, match="^" + re.escape(message)):
        run_config(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_sequential_models_stop_on_the_sum_of_domain_mrr_or_a_computed_metric(tmp_path):
    for metric in ("MRR_sum", "NDCG@10"):
        res = run_config(load_config(None, ["model=sasrec-dt", *TINY, "split.n_negatives=15", "model_params.dim=16", f"train.metric={metric}"]), tmp_path / metric)
        assert res.setting == {} and metric in res.history[0]["epochs"][0]["valid"]
