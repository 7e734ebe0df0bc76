"""UCLR options of issue #32: the contrastive view (row / element / element+dropout masking), the
embedding that scores items (decoded / original / finetuned) through every face, and the LightGCN
pretraining backbone (its PGE is a plain joint LightGCN run)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from cdrec.config import load_config
from cdrec.errors import CdrecError
from cdrec.evaluate import evaluate_sampled
from cdrec.experiments.pipeline import evaluate_run, load_run_config, run_config
from cdrec.models.cf.uclr import ContrastiveAE, UCLRParams
from cdrec.train.tasks import task_for
from tests.cli_helpers import call_main

BASE = ["train.progress=false", "train.device=cpu", "train.batch_size=128", "train.lr=0.01", "eval.ks=[10]",
        "data.synthetic={n_users: 120, n_domains: 2, items_per_domain: 60, signal: 1.0, seed: 3}", "split.n_negatives=30",
        "model_params.dim=8"]
TINY = [*BASE, "model_params.hidden=[16,8]", "model_params.ae_epochs=2", "model_params.ae_passes=2", "model_params.ft_epochs=2"]


# ------------------------------------------------------------------------------ contrastive view
def test_element_masking_differs_per_user_and_per_step_and_repeats_under_a_seed():
    ae = ContrastiveAE(8, 64, UCLRParams(dim=8, hidden=[8, 4], mask_mode="element", mask_ratio=0.5))
    x = torch.ones(64, 8)
    torch.manual_seed(11)
    first, second = ae.mask(x), ae.mask(x)
    torch.manual_seed(11)
    again = ae.mask(x)
    assert torch.equal(first, again)  # a seeded rerun draws the same masks
    assert not torch.equal(first, second)  # a fresh mask per step
    assert len(torch.unique(first, dim=0)) > 32  # ... and per user: the users' masks differ
    partly = (first == 0).any(1) & (first == 1).any(1)
    assert partly.float().mean() > 0.9  # coordinates, not whole users, are masked
    # whole-user masking zeroes rows: every row is all kept or all zero
    rows = ContrastiveAE(8, 64, UCLRParams(dim=8, hidden=[8, 4], mask_ratio=0.5, mask_mode="row")).mask(x)
    assert bool(((rows == 0).all(1) | (rows == 1).all(1)).all())


def test_encoder_dropout_perturbs_both_streams_while_training_only():
    torch.manual_seed(0)
    ae = ContrastiveAE(8, 16, UCLRParams(dim=8, hidden=[16, 4], mask_mode="element+dropout", encoder_dropout=0.5))
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in ae.encoder)
    assert not any(isinstance(m, torch.nn.Dropout) for m in ae.decoder)
    x = torch.randn(16, 8)
    ae.train()
    assert not torch.equal(ae.encoder(x), ae.encoder(x))  # the unmasked stream differs between passes
    ae.eval()
    assert torch.equal(ae.encoder(x), ae.encoder(x))
    assert not any(isinstance(m, torch.nn.Dropout) for m in ContrastiveAE(8, 16, UCLRParams(dim=8, hidden=[16, 4], mask_mode="element")).encoder)


@pytest.mark.parametrize("sets, needle", [
    (["model_params.mask_mode=columns"], "model_params.mask_mode: expected row, element or element+dropout"),
    (["model_params.encoder_dropout=0.2"], "model_params.encoder_dropout: only used with mask_mode=element+dropout"),
    (["model_params.mask_mode=element+dropout", "model_params.hidden=[8]"], "model_params.hidden"),
    (["model_params.score_with=embedding"], "model_params.score_with: expected decoded, original or finetuned"),
    (["model_params.layers=2"], "model_params.layers: only used with backbone=lightgcn"),
    (["model_params.backbone=gcn"], "model_params.backbone: expected bprmf or lightgcn"),
])
def test_bad_options_are_user_errors(sets, needle):
    with pytest.raises(CdrecError, match=needle.replace("+", r"\+").replace("[", r"\[")):
        load_config(None, ["model=uclr", *TINY, *sets])  # refused with the config, before any data is read


def test_uclr_lightgcn_refuses_another_backbone():
    with pytest.raises(CdrecError, match="model_params.backbone: this variant always uses lightgcn"):
        load_config(None, ["model=uclr-lightgcn", *TINY, "model_params.backbone=bprmf"])


def test_element_dropout_view_trains_and_repeats_under_a_seed(tmp_path):
    sets = ["model=pge+ucl-ae", *TINY, "train.epochs=2", "model_params.mask_mode=element+dropout", "model_params.encoder_dropout=0.2"]
    a = run_config(load_config(None, sets), tmp_path / "a")
    b = run_config(load_config(None, sets), tmp_path / "b")
    assert a.metrics == b.metrics
    tau_a, tau_b = np.load(tmp_path / "a" / "temperatures.npz")["tau_ae"], np.load(tmp_path / "b" / "temperatures.npz")["tau_ae"]
    np.testing.assert_array_equal(tau_a, tau_b)
    assert tau_a.std() > 0
    state_a = torch.load(tmp_path / "a" / "model.pt", weights_only=False)["joint"]
    state_b = torch.load(tmp_path / "b" / "model.pt", weights_only=False)["joint"]
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


# ------------------------------------------------------------------------------ scoring embedding
def _mlp(prefix: str, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """A ReLU MLP evaluated from its state-dict entries (``<prefix>.<n>.weight`` / ``.bias``)."""
    layers = sorted({int(k[len(prefix) + 1 :].split(".")[0]) for k in state if k.startswith(prefix + ".")})
    for n, idx in enumerate(layers):
        x = x @ state[f"{prefix}.{idx}.weight"].T + state[f"{prefix}.{idx}.bias"]
        if n < len(layers) - 1:
            x = torch.relu(x)
    return x


def expected_user_vectors(state: dict[str, torch.Tensor], d: int, score_with: str) -> torch.Tensor:
    """Domain ``d``'s user table of a finished ``uclr`` run, computed from its saved weights alone."""
    w0 = state[f"heads.{d}.lora.weight0"]
    if score_with == "original":
        return w0
    w = w0 + state[f"heads.{d}.lora.lora_B"] @ state[f"heads.{d}.lora.lora_A"]
    if score_with == "finetuned":
        return w
    return _mlp(f"heads.{d}.ae.decoder", state, _mlp(f"heads.{d}.ae.encoder", state, w))


MODES = ["decoded", "original", "finetuned"]


@pytest.fixture(scope="module")
def scored_runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("uclr-score-with")
    out = {}
    for mode in MODES:
        sets = ["model=uclr", *TINY, "train.epochs=3", f"model_params.score_with={mode}", f"model_params.pge_cache={base / 'pge.pt'}"]
        run_config(load_config(None, sets), base / mode)
        out[mode] = base / mode
    return out


@pytest.mark.parametrize("mode", MODES)
def test_the_chosen_embedding_scores_in_evaluate_recommend_and_serve(scored_runs, mode, monkeypatch):
    import cdrec

    run = scored_runs[mode]
    state = torch.load(run / "model.pt", weights_only=False)["joint"]
    items = state["item_emb.weight"]
    tables = [expected_user_vectors(state, d, mode) for d in range(2)]
    cfg = load_run_config(run)
    prepared = task_for("uclr").prepare(cfg)
    data, offsets = prepared.data, np.asarray(prepared.data.item_offsets)
    item_domain = data.item_domain()

    def scorer(users: np.ndarray, cand: np.ndarray) -> np.ndarray:
        doms = item_domain[cand[:, 0]]
        out = np.empty(cand.shape, dtype=np.float32)
        for d in (0, 1):
            sel = doms == d
            out[sel] = torch.einsum("nd,ncd->nc", tables[d][torch.as_tensor(users[sel])], items[torch.as_tensor(cand[sel])]).numpy()
        return out

    # cdrec evaluate (evaluate_run is the command's body; the command prints the same numbers)
    expected = evaluate_sampled(scorer, prepared.split, "test", ks=cfg.eval.ks, bucket_edges=cfg.eval.buckets).metrics
    saved = json.loads((run / "results.json").read_text())["metrics"]
    evaluated = evaluate_run(run, device="cpu").metrics
    for dom in ("overall", *data.domains):
        for metric in ("MRR@10", "HR@10", "NDCG@10"):
            assert evaluated[dom][metric] == pytest.approx(expected[dom][metric], abs=1e-6)
            assert saved[dom][metric] == pytest.approx(expected[dom][metric], abs=1e-6)
    cli = call_main("evaluate", str(run), "--device", "cpu")
    assert cli.code == 0 and f"{expected['overall']['MRR@10']:.4f}" in cli.stdout, cli.stdout + cli.stderr

    # cdrec recommend (predictor and command line) and cdrec serve (the HTTP app over the same predictor)
    predictor = cdrec.load(run, device="cpu")
    from cdrec.serve import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    for d, dom in enumerate(data.domains):
        start, stop = int(offsets[d]), int(offsets[d + 1])
        for user in (0, 7, 50):
            raw = data.user_ids[user]
            scores = (tables[d][user] @ items[start:stop].T).numpy()
            top = [data.item_ids[start + j] for j in np.argsort(-scores, kind="stable")[:5]]
            got = predictor.recommend(raw, dom, 5, exclude_seen=False)
            assert [str(i) for i in got.items] == [str(i) for i in top]
            out = call_main("recommend", str(run), "--user", str(raw), "--domain", dom, "-k", "5", "--include-seen", "--json", "--device", "cpu")
            assert out.code == 0 and [str(r["item"]) for r in json.loads(out.stdout)["items"]] == [str(i) for i in top]
            with TestClient(create_app(predictor)) as client:
                body = client.get("/recommend", params={"user": str(raw), "domain": dom, "k": 5, "exclude_seen": "false"}).json()
            assert [str(r["item"]) for r in body["items"]] == [str(i) for i in top]


def test_score_with_options_are_different_embeddings(scored_runs):
    """The three options are not one vector under three names (guards the test above)."""
    state = torch.load(scored_runs["decoded"] / "model.pt", weights_only=False)["joint"]
    assert not torch.allclose(expected_user_vectors(state, 0, "decoded"), expected_user_vectors(state, 0, "original"))
    kept = [torch.load(scored_runs["finetuned"] / "model.pt", weights_only=False)["joint"][f"heads.{d}.lora.lora_B"].abs().sum() > 0 for d in (0, 1)]
    assert any(kept), "no domain kept its LoRA finetune: finetuned would equal original here"


# ------------------------------------------------------------------------------ LightGCN backbone
def test_lightgcn_backbone_pge_is_a_plain_joint_lightgcn_run(tmp_path):
    sets = [*BASE, "train.epochs=3", "scope=joint"]
    plain = run_config(load_config(None, ["model=lightgcn", *sets]), tmp_path / "lightgcn")
    pge = run_config(load_config(None, ["model=pge-lightgcn", *sets]), tmp_path / "pge")
    assert pge.metrics == plain.metrics and pge.valid_metrics == plain.valid_metrics
    assert [h["valid"] for h in pge.history[0]["epochs"]] == [h["valid"] for h in plain.history[0]["epochs"]]
    a = torch.load(tmp_path / "lightgcn" / "model.pt", weights_only=False)["joint"]
    b = torch.load(tmp_path / "pge" / "model.pt", weights_only=False)["joint"]
    assert torch.equal(a["user_emb.weight"], b["graph.user_emb.weight"]) and torch.equal(a["item_emb.weight"], b["graph.item_emb.weight"])


def test_uclr_lightgcn_runs_every_stage_from_the_cached_graph_pretraining(tmp_path):
    cache = tmp_path / "pge.pt"
    sets = [*TINY, "train.epochs=2", f"model_params.pge_cache={cache}"]
    pge = run_config(load_config(None, ["model=pge-lightgcn", *sets]), tmp_path / "pge")
    uclr = run_config(load_config(None, ["model=uclr-lightgcn", *sets]), tmp_path / "uclr")
    assert {"pge", "ae", "finetune:0", "finetune:1"} <= {h["stage"] for h in uclr.history[0]["epochs"]}
    assert [h["valid"] for h in uclr.history[0]["epochs"] if h["stage"] == "pge"] == [h["valid"] for h in pge.history[0]["epochs"]]
    state = torch.load(tmp_path / "uclr" / "model.pt", weights_only=False)["joint"]
    # W0 = LightGCN's propagated user embeddings (the layer mean, not the ego table)
    cached = torch.load(cache, weights_only=False)
    torch.testing.assert_close(state["heads.0.lora.weight0"], cached["user"])
    assert not torch.allclose(cached["user"], cached["graph"]["user_emb.weight"])
    assert np.isfinite(uclr.metrics["overall"]["MRR@10"])


def test_the_pge_cache_is_not_reused_under_another_weight_decay_or_optimizer(tmp_path):
    cache = tmp_path / "pge.pt"
    sets = [*TINY, "model=pge", "train.epochs=2", f"model_params.pge_cache={cache}"]
    first = run_config(load_config(None, sets), tmp_path / "a")
    key = torch.load(cache, weights_only=False)["key"]
    again = run_config(load_config(None, sets), tmp_path / "b")
    assert again.timing["train_s"] == 0.0 and again.metrics == first.metrics  # same settings: read from the cache
    for change in ("train.weight_decay=0.1", "train.optimizer=adamw"):
        other = run_config(load_config(None, [*sets, change]), tmp_path / change)
        assert other.timing["train_s"] > 0.0, f"{change}: the cached pretraining of other settings was reused"
        assert torch.load(cache, weights_only=False)["key"] != key
