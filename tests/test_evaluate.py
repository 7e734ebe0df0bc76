import numpy as np

from cdrec.data.candidates import add_sampled_candidates
from cdrec.data.splits import leave_one_out
from cdrec.evaluate import evaluate_full, evaluate_sampled


def test_full_ranking_matches_brute_force_and_masks_seen_items(tiny_synthetic):
    inter = tiny_synthetic
    split = leave_one_out(inter, seed=0)
    rng = np.random.default_rng(0)
    table = rng.integers(0, 5, size=(inter.n_users, inter.n_items)).astype(float)  # ties on purpose

    def full(users, d):
        s, e = inter.domain_item_range(d)
        return table[users, s:e]

    got = evaluate_full(full, split, "test", ks=(10,))
    seen = {(u, i) for u, i in zip(inter.users[split.train_rows], inter.items[split.train_rows])}
    seen |= {(u, i) for u, i in zip(inter.users[split.valid_rows], inter.items[split.valid_rows])}
    ranks = []
    for r in split.test_rows:
        u, pos, d = inter.users[r], inter.items[r], inter.domain[r]
        s, e = inter.domain_item_range(d)
        others = [table[u, j] for j in range(s, e) if j != pos and (u, j) not in seen]
        ranks.append(1 + sum(o >= table[u, pos] for o in others))
    ranks = np.array(ranks)
    assert got.metrics["overall"]["HR@10"] == np.mean(ranks <= 10)
    assert np.isclose(got.metrics["overall"]["MRR"], np.mean(1 / ranks))


def test_sampled_evaluation_groups_by_domain_and_bucket(tiny_synthetic):
    split = add_sampled_candidates(leave_one_out(tiny_synthetic, seed=0), 20, seed=0)
    perfect = evaluate_sampled(lambda u, c: (c == c[:, :1]).astype(float), split, "test")
    assert perfect.metrics["overall"]["HR@5"] == 1.0 and perfect.metrics["overall"]["MRR"] == 1.0
    constant = evaluate_sampled(lambda u, c: np.zeros(c.shape), split, "test")
    assert constant.metrics["overall"]["HR@10"] == 0.0
    assert set(perfect.metrics) == {"D0", "D1", "D2", "overall"}
    n = sum(b["n"] for b in perfect.buckets["D0"].values())
    assert n == perfect.metrics["D0"]["n"]
