"""`cdrec run` for the mtal task: results.json names and settings; bad settings fail cleanly."""

from __future__ import annotations

import json
import re

import pytest

from cdrec.config import load_config
from cdrec.errors import CdrecError
from cdrec.experiments.pipeline import run_config
from cdrec.results.schema import RunResult

SYNTH = {"n_users": 120, "n_domains": 3, "items_per_domain": 30, "min_activity": 6, "max_activity": 20}


def cfg(model, *extra, **setting):
    sets = [*extra, f"model={model}", "data.name=synthetic", "data.synthetic=" + json.dumps(SYNTH), "train.progress=false",
            "train.epochs=2", "train.device=cpu"]
    if model in ("aae", "assisted-ae"):
        sets.append("model_params.epochs=2")
    return load_config(None, sets + [f"setting.{k}={json.dumps(v)}" for k, v in setting.items()])


def test_mtal_run_writes_results_with_issue_names(tmp_path):
    res = run_config(cfg("aae", mode="mtal", rounds=2, eta=0.3, weights="optimize", privacy="dp"), tmp_path / "aae")
    saved = RunResult.read(tmp_path / "aae" / "results.json")
    assert saved.model == "aae" and res.model == "aae"
    for key in ("mode", "feedback", "alignment", "partition", "side_info", "eta", "weights", "privacy", "align_ratio", "cold_start_ratio"):
        assert key in saved.setting
    assert set(saved.metrics) == {"D0", "D1", "D2", "overall"}
    assert "RMSE" in saved.metrics["overall"]
    assert [h["round"] for h in saved.history] == [0, 1, 2]
    assert saved.data_stats["messages"] > 0 and saved.data_stats["payload_bytes"]["query"] > 0
    # no model.pt (each organization keeps its model): evaluate / recommend say so in one line
    from tests.cli_helpers import call_main

    for args in (["evaluate", str(tmp_path / "aae")], ["recommend", str(tmp_path / "aae"), "--user", "u0"]):
        got = call_main(*args)
        assert got.code == 2 and got.exception is None and got.stderr.count("\n") == 1, got
        assert "keeps no model.pt" in got.stderr


@pytest.mark.parametrize("model,mode", [("assisted-mf", "mtcdr"), ("assisted-mf", "joint"), ("assisted-ae", "joint"), ("assisted-base", "alone")])
def test_baselines_run(tmp_path, model, mode):
    res = run_config(cfg(model, mode=mode, feedback="implicit"), tmp_path / model)
    assert res.model == model.split("-")[1]
    assert "MAP@10" in res.metrics["overall"] and "NDCG@10" in res.metrics["overall"]
    assert {"MAP@10[paper]", "NDCG@10[paper]"} <= set(res.metrics["overall"])  # setting.paper_eval_batch defaults to 100


def test_bad_settings_fail_before_writing(tmp_path):
    with pytest.raises(CdrecError, match="setting.mode"):
        run_config(cfg("aae", mode="alone"), tmp_path / "x")
    with pytest.raises(CdrecError, match="setting.privacy"):
        run_config(cfg("aae", mode="mtal", privacy="rsa"), tmp_path / "y")
    with pytest.raises(CdrecError, match="setting.base"):
        run_config(cfg("aae", mode="mtal", base="median"), tmp_path / "b")
    with pytest.raises(CdrecError, match="setting.paper_eval_batch"):
        run_config(cfg("assisted-base", mode="alone", feedback="implicit", paper_eval_batch=0), tmp_path / "p")
    with pytest.raises(CdrecError, match="item-aligned"):
        run_config(cfg("aae", mode="mtal", alignment="item"), tmp_path / "z")
    for key, value in (("train.metric", "FOO"), ("split.protocol", "loo")):  # values the task would ignore are refused
        with pytest.raises(CdrecError, match=rf"^{re.escape(key)}: the mtal task"):
            run_config(cfg("aae", f"{key}={value}", mode="mtal"), tmp_path / "m")
    assert not any((tmp_path / d).exists() for d in ("x", "y", "z", "b", "p", "m"))


@pytest.mark.parametrize(("key", "value", "message"), [
    ("eta", 0, r"setting\.eta: expected a number > 0 or 'optimize', got 0"),
    ("eta", "fast", r"setting\.eta: "),
    ("privacy_alpha", 0, r"setting\.privacy_alpha: expected a number > 0, got 0"),
    ("privacy_thresholds", 0, r"setting\.privacy_thresholds: expected a number >= 1, got 0"),
    ("align_ratio", 1.5, r"setting\.align_ratio: expected a number in \[0, 1\], got 1\.5"),
    ("cold_start_ratio", 1.0, r"setting\.cold_start_ratio: expected a number in \(0, 1\), got 1\.0"),
    ("rounds", 0, r"setting\.rounds: expected a number >= 1, got 0"),
    ("query_decoys", -1, r"setting\.query_decoys: expected a number >= 0, got -1"),
])
def test_out_of_range_settings_name_the_key(tmp_path, key, value, message):
    with pytest.raises(CdrecError, match=f"^{message}"):
        run_config(cfg("aae", mode="mtal", **{key: value}), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_privacy_strengths_reach_the_organizations():
    """setting.privacy_alpha (DP) and setting.privacy_thresholds (IP) set the MTAL config the organizations run with."""
    from cdrec.federated.flower.orgdata import federation_from_config

    assert federation_from_config(cfg("aae", mode="mtal", rounds=1, privacy="ip", privacy_thresholds=3))[1].ip_thresholds == 3
    assert federation_from_config(cfg("aae", mode="mtal", rounds=1, privacy="dp", privacy_alpha=2.5))[1].privacy_alpha == 2.5
    assert federation_from_config(cfg("aae", mode="mtal", rounds=1, privacy="ip"))[1].ip_thresholds == 10


def test_the_deployed_federation_refuses_a_zero_base_whose_residuals_are_the_ratings():
    """F0 = 0 makes round 1's residuals 2 x the ratings: in-process it is a diagnostic, but the
    federation written for separate organizations (Flower) refuses it instead of dropping it silently."""
    from cdrec.federated.flower.orgdata import federation_from_config

    _, mcfg = federation_from_config(cfg("aae", mode="mtal", rounds=1))
    assert mcfg.base == "mean" and mcfg.query_decoys == 0
    assert federation_from_config(cfg("aae", mode="mtal", rounds=1, query_decoys=2))[1].query_decoys == 2
    with pytest.raises(CdrecError, match=r"^setting\.base: .*2 x rating"):
        federation_from_config(cfg("aae", mode="mtal", rounds=1, base="zero"))


@pytest.mark.parametrize(("model", "setting", "message"), [
    ("assisted-mf", {"mode": "alone", "privacy": "dp"}, "setting.privacy: only setting.mode=mtal uses it; the alone baseline would ignore it"),
    ("assisted-mf", {"mode": "joint", "eta": 0.9}, "setting.eta: only setting.mode=mtal uses it"),
    ("assisted-ncf", {"mode": "mtcdr", "align_ratio": 0.5}, "setting.align_ratio: only setting.mode=mtal uses it"),
    ("assisted-mlp", {"mode": "joint", "query_decoys": 2}, "setting.query_decoys: only setting.mode=mtal uses it; the joint baseline would ignore it"),
    ("aae", {"mode": "mtal", "privacy_alpha": 1.0}, "setting.privacy_alpha: the Laplace scale of setting.privacy=dp; got privacy 'none'"),
    ("aae", {"mode": "mtal", "privacy": "dp", "privacy_thresholds": 3}, "setting.privacy_thresholds: the thresholds per value of setting.privacy=ip; got privacy 'dp'"),
    ("assisted-mf", {"mode": "alone", "privacy_thresholds": 3}, "setting.privacy_thresholds: only setting.mode=mtal uses it"),
    ("aae", {"mode": "mtal", "cold_start_org": "D1"}, "setting.cold_start_org: names the cold organization of setting.cold_start_ratio"),
    ("aae", {"mode": "mtal", "cold_start_ratio": 0.5, "cold_start_org": "Z"}, "setting.cold_start_org: unknown organization 'Z'"),
    ("aae", {"mode": "mtal", "partition": "banana"}, "setting.partition: expected one of"),
    ("assisted-ae", {"mode": "mtcdr"}, "setting.mode=mtcdr: MTCDR is defined for the CF backbones"),
])
def test_settings_a_run_would_ignore_or_misread_are_refused(tmp_path, model, setting, message):
    with pytest.raises(CdrecError, match="^" + re.escape(message)):
        run_config(cfg(model, **setting), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_the_setting_records_the_cold_organization_and_the_partition(tmp_path):
    res = run_config(cfg("assisted-base", mode="alone", cold_start_ratio=0.5), tmp_path / "c")
    assert res.setting["cold_start_org"] == "D0" and res.setting["partition"] == "domain"
    res = run_config(cfg("assisted-base", "data.domains=uniform-items:2", mode="alone"), tmp_path / "u")
    assert res.setting["partition"] == "uniform" and res.setting["cold_start_org"] is None
