"""Sampled evaluation scores in cache-sized calls on the CPU without changing any result; a GPU scorer takes whole row batches."""

from __future__ import annotations

import numpy as np

import cdrec.evaluate as evaluate_mod
from cdrec.data.candidates import add_sampled_candidates
from cdrec.data.splits import leave_one_out
from cdrec.evaluate import evaluate_sampled
from cdrec.metrics.ranking import positive_rank


def test_wide_candidate_lists_are_split_into_small_calls(tiny_synthetic, monkeypatch) -> None:
    split = add_sampled_candidates(leave_one_out(tiny_synthetic, seed=0), 30, seed=0)
    rng = np.random.default_rng(0)
    table = rng.normal(size=(tiny_synthetic.n_users, tiny_synthetic.n_items))
    calls = []

    def scorer(users, items):
        calls.append(items.size)
        return table[users[:, None], items]

    monkeypatch.setattr(evaluate_mod, "CELLS_PER_BATCH", 31 * 7)
    ev = evaluate_sampled(scorer, split, "test", ks=(10,))
    assert max(calls) <= 31 * 7 and len(calls) > 1
    rows = split.test_rows
    rank = positive_rank(table[tiny_synthetic.users[rows][:, None], split.candidates["test"]])
    assert np.isclose(ev.metrics["overall"]["HR@10"], np.mean(rank <= 10))
    assert np.isclose(ev.metrics["overall"]["NDCG@10"], np.mean(np.where(rank <= 10, 1 / np.log2(rank + 1), 0)))


def test_a_gpu_scorer_takes_whole_row_batches(tiny_synthetic, monkeypatch) -> None:
    split = add_sampled_candidates(leave_one_out(tiny_synthetic, seed=0), 30, seed=0)
    calls = []

    def scorer(users, items):
        calls.append(len(users))
        return np.zeros(items.shape)

    monkeypatch.setattr(evaluate_mod, "CELLS_PER_BATCH", 31 * 7)
    evaluate_sampled(scorer, split, "test", ks=(10,), batch_size=64, scorer_device="cuda:0")
    assert max(calls) == min(64, len(split.test_rows)) > 7
    calls.clear()
    evaluate_sampled(scorer, split, "test", ks=(10,), batch_size=64, scorer_device="cpu")
    assert max(calls) == 7
