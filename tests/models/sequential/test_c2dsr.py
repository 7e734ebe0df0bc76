"""C2DSR: causal streams, padding, seeded reruns, shapes per domain, training-only item graphs,
the cross-domain declaration, and the run / evaluate / recommend faces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cdrec.config import load_config
from cdrec.data.sequences import next_events
from cdrec.errors import CdrecError
from cdrec.experiments.pipeline import run_config
from cdrec.models import registry
from cdrec.models.sequential.c2dsr import C2DSR, C2DSRParams, training_transitions, transition_graph
from cdrec.train.sequential import cached_split

from tests.cli_helpers import call_main

from .test_merit import OFFSETS, make_batch

TINY = [
    "model=c2dsr", "data.name=synthetic", "data.synthetic={n_users: 80, n_domains: 2, items_per_domain: 60, seed: 5}",
    "split.n_negatives=10", "train.epochs=2", "train.progress=false", "train.device=cpu",
    "model_params.dim=16", "model_params.max_len=8", "eval.batch_size=64",
]


def model(**kw) -> C2DSR:
    torch.manual_seed(0)
    m = C2DSR(70, OFFSETS, C2DSRParams(dim=16, n_heads=2, dropout=0.0, max_len=24, **kw))
    rng = np.random.default_rng(1)  # a random graph over both domains' items
    m.set_graphs(rng.integers(0, 70, (2, 200)), np.r_[rng.integers(0, 30, (1, 80)), rng.integers(0, 30, (1, 80))])
    return m.eval()


def test_later_events_never_change_earlier_outputs_of_any_stream():
    m = model()
    batch = make_batch()
    base = m(batch["items"], batch["domains"])
    for pos in (4, 9):
        changed = batch["items"].clone()
        changed[:, pos] = torch.where(changed[:, pos] > 0, (changed[:, pos] % 30) + 1, changed[:, pos])  # another item of A
        doms = batch["domains"].clone()
        doms[:, pos] = torch.where(changed[:, pos] > 0, 0, -1)
        out = m(changed, doms)
        for s in "MAB":
            torch.testing.assert_close(out[s][:, :pos], base[s][:, :pos])
        assert not torch.allclose(out["M"][:, pos:], base["M"][:, pos:])


def test_padding_changes_neither_outputs_nor_loss():
    m = model()
    short, padded = make_batch(length=12), make_batch(length=12, pad_to=20)
    a, b = m(short["items"], short["domains"]), m(padded["items"], padded["domains"])
    for s in "MAB":
        torch.testing.assert_close(b[s][:, -12:], a[s])
        assert (b[s][:, :8] == 0).all()
    m.train()  # dropout 0: the loss is deterministic given the RNG of the corrupted sequences
    for window in (10, 0):
        m.params.loss_window = window
        torch.manual_seed(3)
        la = m.loss_terms(short)
        torch.manual_seed(3)
        lb = m.loss_terms(padded)
        for k in la:
            torch.testing.assert_close(la[k], lb[k])
        assert la["infomax"] > 0 and la["rec"] > 0


def test_shapes_per_domain_and_streams_see_only_their_domain():
    m = model()
    batch = make_batch()
    out = m(batch["items"], batch["domains"])
    assert all(out[s].shape == (6, 12, 16) for s in "MAB")
    for d, s in enumerate("AB"):
        assert (out[s][batch["domains"] != d] == 0).all() and (out[s][batch["domains"] == d] != 0).any()
        other = batch["items"].clone()  # changing the other domain's items leaves this stream unchanged
        other[batch["domains"] == 1 - d] = other[batch["domains"] == 1 - d] % 2 + (1 if d == 1 else 31)
        torch.testing.assert_close(m(other, batch["domains"])[s], out[s])
    for d in (0, 1):
        cands = torch.randint(OFFSETS[d] + 1, OFFSETS[d + 1] + 1, (6, 7))
        scores = m.score({"items": batch["items"], "domains": batch["domains"], "candidates": cands, "target_domain": torch.full((6,), d)})
        assert scores.shape == (6, 7) and torch.isfinite(scores).all()


def test_graph_is_row_normalized_over_training_transitions_only():
    cfg = load_config(None, TINY)
    data, split = cached_split(cfg)
    mixed, single = training_transitions(split)
    # every transition of the whole data (training + held-out events) ...
    _, items, doms, nxt, nxt_dom = next_events(data, np.arange(len(data)))
    everything = {(a, b) for a, b in zip(items[nxt > 0] - 1, nxt[nxt > 0] - 1)}
    train = {(a, b) for a, b in mixed.T.tolist()}
    held_out = everything - train
    assert held_out, "the check needs transitions that only validation/test events make"
    m = C2DSR(data.n_items, data.item_offsets, C2DSRParams(dim=8))
    m.attach_training(split)
    edges = {(a - 1, b - 1) for a, b in m.graph_mixed.indices().T.tolist()}
    assert edges == train and not edges & held_out
    single_edges = {(a - 1, b - 1) for a, b in m.graph_single.indices().T.tolist()}
    assert single_edges == {(a, b) for a, b in single.T.tolist()}
    dom = np.searchsorted(data.item_offsets, np.arange(data.n_items), side="right") - 1
    assert all(dom[a] == dom[b] for a, b in single_edges)  # single-domain graph: within a domain
    rows = torch.sparse.sum(m.graph_mixed, 1).to_dense()
    torch.testing.assert_close(rows[rows > 0], torch.ones(int((rows > 0).sum())))
    # repeated transitions weigh more; undirected adds the reverse edges
    g = transition_graph(np.array([[0, 0, 0], [1, 1, 2]]), 3, directed=True).to_dense()
    torch.testing.assert_close(g[1, 2:4], torch.tensor([2 / 3, 1 / 3]))
    u = transition_graph(np.array([[0], [1]]), 3, directed=False).to_dense()
    assert u[1, 2] == 1 and u[2, 1] == 1


def test_cross_domain_by_design():
    entry = registry.get("c2dsr")
    assert (entry.family, entry.min_domains, entry.max_domains) == ("sequential", 2, 2)
    for offsets in (np.array([0, 30]), np.array([0, 10, 20, 30])):
        with pytest.raises(CdrecError, match="c2dsr"):
            C2DSR(30, offsets, C2DSRParams(dim=8))
    with pytest.raises(CdrecError, match="model_params.graph"):
        C2DSR(70, OFFSETS, C2DSRParams(dim=8, graph="both"))


def test_seeded_run_is_identical_and_evaluate_recommend_reproduce_it(tmp_path):
    import cdrec

    first = run_config(load_config(None, TINY), tmp_path / "a")
    second = run_config(load_config(None, TINY), tmp_path / "b")
    assert first.metrics == second.metrics and first.history[0]["epochs"] == second.history[0]["epochs"]
    saved = json.loads((tmp_path / "a" / "results.json").read_text())["metrics"]
    assert set(saved) == {"D0", "D1", "overall"} and 0 < saved["overall"]["MRR"] <= 1
    shown = call_main("evaluate", str(tmp_path / "a"), "--device", "cpu")
    assert shown.code == 0 and f"{saved['D0']['MRR']:.4f}" in shown.stdout, shown.stdout + shown.stderr
    predictor = cdrec.load(tmp_path / "a", device="cpu")
    rec = predictor.recommend(predictor.data.user_ids[0], "D1", 5)
    assert len(rec.items) == 5 and rec.scores == sorted(rec.scores, reverse=True)
