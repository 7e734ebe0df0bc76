"""Joint / Alone AE baselines: output-bias initialization and the cosine schedule's patience."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdrec.data.domains import uniform_users
from cdrec.data.splits import ratio_split
from cdrec.data.synthetic import SyntheticConfig, make_synthetic
from cdrec.errors import CdrecError
from cdrec.federated import baselines
from cdrec.federated.alignment import build_federation
from cdrec.federated.baselines import BaselineConfig, run_baseline
from cdrec.metrics import paper_list_metrics
from cdrec.models.assisted.aae import AAEParams
from cdrec.models.assisted.blocks import PairModel


@pytest.fixture(scope="module")
def fed():
    data = make_synthetic(SyntheticConfig(n_users=80, n_domains=2, items_per_domain=20, min_activity=6, max_activity=15, seed=2))
    return build_federation(data, ratio_split(data, [0.8, 0.1, 0.1], by_user=True, seed=0))


def spy_fit(monkeypatch) -> list[dict]:
    seen: list[dict] = []
    real = baselines.fit_autoencoder

    def spy(model, data, targets, **kw):
        seen.append({"bias": model.out_bias.detach().clone(), "patience": kw["patience"], "epochs": kw["epochs"]})
        return real(model, data, targets, **kw)

    monkeypatch.setattr(baselines, "fit_autoencoder", spy)
    return seen


def test_ae_output_bias_starts_at_zero_or_at_the_column_means(fed, monkeypatch):
    seen = spy_fit(monkeypatch)
    for init in ("zero", "f0"):
        run_baseline(fed, "joint", "ae", BaselineConfig(epochs=1, ae=AAEParams(epochs=1), ae_bias_init=init))
    zero, f0 = seen[0]["bias"], seen[1]["bias"]
    assert torch.count_nonzero(zero) == 0
    tr = np.concatenate([o.train.y for o in fed.orgs])
    assert abs(float(f0.mean()) - float(tr.mean())) < 0.5  # per-column means around the rating level
    assert float(f0.min()) >= float(tr.min()) - 1e-6 and float(f0.max()) <= float(tr.max()) + 1e-6
    with pytest.raises(CdrecError, match="ae_bias_init"):
        run_baseline(fed, "joint", "ae", BaselineConfig(epochs=1, ae_bias_init="mean"))


def test_cosine_schedule_runs_all_epochs_constant_rate_stops_early(fed, monkeypatch):
    seen = spy_fit(monkeypatch)
    run_baseline(fed, "joint", "ae", BaselineConfig(epochs=7, patience=2, ae=AAEParams(lr_schedule="cosine")))
    run_baseline(fed, "joint", "ae", BaselineConfig(epochs=7, patience=2, ae=AAEParams(lr_schedule="none")))
    assert [(s["epochs"], s["patience"]) for s in seen] == [(7, 7), (7, 2)]


@pytest.mark.parametrize("alignment", ["user", "item"])
def test_papers_scoring_ranks_per_aligned_id_and_leaves_the_selection_metric_alone(alignment):
    data = make_synthetic(SyntheticConfig(n_users=80, n_domains=2, items_per_domain=20, min_activity=6, max_activity=15, seed=2))
    data = uniform_users(data, 2, seed=0) if alignment == "item" else data
    fed = build_federation(data, ratio_split(data, [0.8, 0.1, 0.1], by_user=True, seed=0), alignment=alignment, feedback="implicit")
    scores = [np.random.default_rng(k).random(len(o.test)) for k, o in enumerate(fed.orgs)]
    plain = baselines.federation_metrics(fed, "test", scores)
    paper = baselines.federation_metrics(fed, "test", scores, paper_batch=7)
    test = baselines.Entries.concat([o.test for o in fed.orgs])
    expected = paper_list_metrics(test.rows, np.concatenate(scores), test.y, 10, 7)
    assert paper["overall"]["MAP@10[paper]"] == pytest.approx(expected["MAP@10"])
    assert paper["overall"]["NDCG@10[paper]"] == pytest.approx(expected["NDCG@10"])
    assert "MAP@10[paper]" not in plain["overall"]
    assert {k: v for k, v in paper["overall"].items() if "[paper]" not in k} == plain["overall"]
    if alignment == "item":  # lists per item (its held-out raters), not per user
        assert np.array_equal(np.unique(test.rows), np.unique(test.items))


def test_pair_models_on_the_blocks_rows_only_give_every_metric_bit_identical(monkeypatch):
    """Alone / MTCDR pair models keep the row tables of their block's rows only (PairModel.keep_rows): the same
    metrics, bit for bit, as tables of all rows, side information included."""
    data = make_synthetic(SyntheticConfig(n_users=120, n_domains=3, items_per_domain=15, min_activity=10, max_activity=14, max_activity_share=0.7, seed=4))
    fed = build_federation(data, ratio_split(data, [0.8, 0.1, 0.1], by_user=True, seed=0), side_info=True)
    alone_rows = [len(baselines.block_rows(baselines._pool(fed, [k]))) for k in range(len(fed.orgs))]
    assert max(alone_rows) < fed.n_rows  # each organization's block leaves rows out
    cfg = BaselineConfig(epochs=3, batch_size=32, seed=1)
    for mode, backbone in (("alone", "mf"), ("alone", "mlp"), ("alone", "ncf"), ("mtcdr", "ncf")):
        cut = run_baseline(fed, mode, backbone, cfg)
        with monkeypatch.context() as m:  # the tables of all rows, as before keep_rows
            m.setattr(baselines, "block_rows", lambda block: np.arange(fed.n_rows))
            m.setattr(PairModel, "keep_rows", lambda self, rows: None)
            full = run_baseline(fed, mode, backbone, cfg)
        assert cut == full, (mode, backbone)
