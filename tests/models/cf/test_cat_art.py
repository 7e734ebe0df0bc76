"""CAT-ART (cdrec.models.cf.cat_art): shapes per domain, gradients to every parameter group, seeded
reruns, a planted cross-domain signal it finds where single-domain BPR-MF cannot, and the CLI faces
(run, evaluate, recommend, serve) like every CF model."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cdrec.config import load_config
from cdrec.data.datasets import load_dataset
from cdrec.data.samplers import BPRSampler
from cdrec.errors import CdrecError
from cdrec.experiments.pipeline import run_config
from cdrec.models import registry
from cdrec.models.cf.cat_art import CATART, CATARTParams
from cdrec.train.tasks import make_split
from tests.cli_helpers import cli

SYNTH = "data.synthetic={n_users: 120, n_domains: 3, items_per_domain: 80, seed: 5}"
TINY = [SYNTH, "model=cat-art", "split.n_negatives=10", "train.epochs=2", "train.progress=false", "train.device=cpu",
        "model_params.dim=16", "model_params.hidden=[32]", "model_params.cat_epochs=2", "model_params.cat_passes=2",
        "model_params.art_epochs=2"]


def _tiny_model(**params) -> tuple[CATART, object]:
    cfg = load_config(None, TINY)
    data = load_dataset(cfg.data, seed=0)
    split = make_split(data, cfg)
    torch.manual_seed(0)
    return CATART.from_split(split, CATARTParams(dim=16, hidden=[32], **params)), split


def test_registered_with_typed_params_and_bad_options_refused():
    entry = registry.get("cat-art")
    assert entry.family == "cf" and entry.params is CATARTParams
    with pytest.raises(CdrecError, match="model_params.transfer"):
        CATARTParams(transfer="all")
    with pytest.raises(CdrecError, match="model_params.heads"):
        CATARTParams(dim=10, heads=3)
    with pytest.raises(CdrecError, match="mask_domains"):
        _tiny_model(mask_domains=3)


def test_output_shapes_per_domain():
    model, split = _tiny_model()
    data = split.data
    users = torch.arange(7)
    for stage in ("mf", "art"):
        model.stage = stage
        for d in range(data.n_domains):
            start, stop = data.domain_item_range(d)
            assert model.user_vectors(users, d).shape == (7, 16)
            assert model.score_all(users, start, stop).shape == (7, stop - start)
            cand = torch.randint(start, stop, (7, 5))
            assert model.score(users, cand).shape == (7, 5)
    assert model.cat.encode(model.domain_inputs(users)).shape == (7, 16)


def test_heads_start_at_the_per_domain_bprmf():
    model, split = _tiny_model()
    users = torch.arange(9)
    model.eval()
    for d in range(split.data.n_domains):
        model.heads[d].start_from(model.domain_tables()[d].detach())
        model.stage = "mf"
        before = model.user_vectors(users, d)
        model.stage = "art"
        torch.testing.assert_close(model.user_vectors(users, d), before)  # zero_init: ART adds nothing yet


def test_gradient_reaches_every_parameter_group():
    model, split = _tiny_model(zero_init=False)
    users = torch.arange(20)
    model.cat.loss(model.domain_inputs(users)).backward()
    for name, w in model.cat.named_parameters():
        assert w.grad is not None and w.grad.abs().sum() > 0, f"cat.{name}"
    model.encode_users(64)
    assert model.global_emb.abs().sum() > 0
    sampler = BPRSampler(split.train, 64, seed=0)
    batch = {k: torch.as_tensor(v) for k, v in next(iter(sampler.epoch(0))).items()}
    from cdrec.models.cf.cat_art import _ARTStage, _DomainMFStage

    for d, head in enumerate(model.heads):
        head.start_from(model.domain_tables()[d].detach())
        rows = batch["domain"] == d
        stage = _ARTStage(model, d)
        model.mf.item_emb.weight.grad = None
        stage.loss({k: v[rows] for k, v in batch.items()}).backward()
        for name, w in head.named_parameters():
            assert w.grad is not None and w.grad.abs().sum() > 0, f"heads.{d}.{name}"
        assert model.mf.item_emb.weight.grad.abs().sum() > 0
    mf_stage = _DomainMFStage(model)
    mf_stage.train_step(batch, [mf_stage.configure_optimizers(load_config(None, TINY).train)])
    assert model.mf.user_emb.weight.grad.abs().sum() > 0 and model.mf.item_emb.weight.grad.abs().sum() > 0


def test_seeded_rerun_is_identical(tmp_path):
    a = run_config(load_config(None, TINY), tmp_path / "a")
    b = run_config(load_config(None, TINY), tmp_path / "b")
    assert a.metrics == b.metrics
    stages = [h["stage"] for h in a.history[0]["epochs"]]
    assert stages[0] == "mf" and "cat" in stages and {"art:0", "art:1", "art:2"} <= set(stages)
    sa = torch.load(tmp_path / "a" / "model.pt", weights_only=False)["joint"]
    sb = torch.load(tmp_path / "b" / "model.pt", weights_only=False)["joint"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_scope_single_is_refused(tmp_path):
    with pytest.raises(CdrecError, match="cross-domain by design"):
        run_config(load_config(None, [*TINY, "scope=single"]), tmp_path / "single")


def _planted(path: Path, seed: int = 0) -> Path:
    """Two domains, one preference per user shared by both (a cluster of items in each domain). Domain A
    is dense; in domain B every user has 3 interactions in their cluster (train, validation, test), so
    B's training data alone never puts two items of a cluster in one user's history."""
    rng = np.random.default_rng(seed)
    n_users, n_clusters, per_cluster = 240, 6, 10
    rows = []
    for u in range(n_users):
        c = u % n_clusters
        for t, j in enumerate(rng.choice(per_cluster, 8, replace=False)):
            rows.append((u, f"a{c * per_cluster + j}", "A", t))
        for t, j in enumerate(rng.choice(per_cluster, 3, replace=False)):
            rows.append((u, f"b{c * per_cluster + j}", "B", 100 + t))
    pd.DataFrame(rows, columns=["user", "item", "domain", "timestamp"]).to_csv(path / "planted.csv", index=False)
    return path / "planted.csv"


def test_finds_a_planted_cross_domain_signal_single_domain_bprmf_misses(tmp_path):
    csv = _planted(tmp_path)
    common = ["data.name=table", f"data.path={csv}", "split.n_negatives=30", "train.epochs=20", "train.patience=20", "train.lr=0.01",
              "train.batch_size=256", "train.progress=false", "train.device=cpu", "model_params.dim=16", "eval.ks=[10]"]
    single = run_config(load_config(None, ["model=bprmf", "scope=single", *common]), tmp_path / "bprmf")
    cat_art = run_config(load_config(None, ["model=cat-art", *common, "model_params.hidden=[32]", "model_params.cat_epochs=10",
                                            "model_params.art_epochs=40"]), tmp_path / "cat-art")
    mrr_single, mrr_cat = single.metrics["B"]["MRR@10"], cat_art.metrics["B"]["MRR@10"]
    assert mrr_cat > mrr_single + 0.1, (mrr_cat, mrr_single)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cat-art") / "run"
    run_config(load_config(None, TINY), out)
    return out


def test_run_evaluate_recommend_and_serve(monkeypatch, capsys, tiny_run):
    import cdrec
    from cdrec.serve import create_app

    code, out, _ = cli(monkeypatch, capsys, "evaluate", tiny_run, "--device", "cpu")
    assert code == 0 and "overall" in out
    predictor = cdrec.load(tiny_run, device="cpu")
    user = predictor.data.user_ids[3]
    expected = predictor.recommend(user, "D1", 4)
    assert len(expected.items) == 4
    code, out, _ = cli(monkeypatch, capsys, "recommend", tiny_run, "--user", user, "--domain", "D1", "-k", 4, "--device", "cpu")
    items = [int(line.split("|")[2]) for line in out.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert code == 0 and items == expected.items
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient
    client = TestClient(create_app(predictor))
    r = client.get("/recommend", params={"user": user, "domain": "D1", "k": 4})
    assert r.status_code == 200 and [x["item"] for x in r.json()["items"]] == expected.items
