import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from cdrec.metrics import auc, hit_rate, log_loss, mrr, ndcg, paper_list_metrics, positive_rank, ranked_list_metrics, rmse


def brute_rank(row: np.ndarray) -> int:
    pos = row[0]
    return 1 + sum(1 for s in row[1:] if s >= pos)


@pytest.mark.parametrize("seed", range(5))
def test_sampled_metrics_equal_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=(300, 20)).astype(float)  # many ties
    ranks = np.array([brute_rank(r) for r in scores])
    assert np.array_equal(positive_rank(scores), ranks)
    for k in (1, 5, 10):
        assert np.allclose(hit_rate(scores, k), [1.0 if r <= k else 0.0 for r in ranks])
        assert np.allclose(ndcg(scores, k), [1 / np.log2(r + 1) if r <= k else 0.0 for r in ranks])
        assert np.allclose(mrr(scores, k), [1 / r if r <= k else 0.0 for r in ranks])
    assert np.allclose(mrr(scores), 1 / ranks)


def test_constant_model_scores_worst():
    scores = np.zeros((4, 100))
    assert np.all(positive_rank(scores) == 100)
    assert hit_rate(scores, 10).sum() == 0


def _brute_list(users, scores, rel, k):
    out = {}
    for u in np.unique(users):
        idx = np.flatnonzero(users == u)
        order = idx[np.lexsort((idx, -scores[idx]))]
        r = rel[order] > 0
        n_rel = r.sum()
        if n_rel == 0:
            out[u] = (np.nan, np.nan, np.nan)
            continue
        top = r[:k]
        dcg = sum(1 / np.log2(i + 2) for i, x in enumerate(top) if x)
        idcg = sum(1 / np.log2(i + 2) for i in range(min(k, n_rel)))
        hits, ap = 0, 0.0
        for i, x in enumerate(top):
            if x:
                hits += 1
                ap += hits / (i + 1)
        out[u] = (dcg / idcg, float(top.any()), ap / min(k, n_rel))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_ranked_list_metrics_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 400
    users = rng.integers(0, 30, size=n)
    scores = rng.integers(0, 8, size=n).astype(float)
    rel = (rng.random(n) < 0.4).astype(float)
    got = ranked_list_metrics(users, scores, rel, 10)
    ref = _brute_list(users, scores, rel, 10)
    for i, u in enumerate(got["users"]):
        for name, value in zip(("NDCG@10", "HR@10", "MAP@10"), ref[u]):
            if np.isnan(value):
                assert np.isnan(got[name][i])
            else:
                assert got[name][i] == pytest.approx(value)


def _brute_paper(rows, scores, rel, k, batch):
    """The authors' MAP / NDCG loop by hand: per row AP@k over the hits in the top k (0 without a hit), NDCG@k
    (0 without a relevant item), averaged per batch of row ids, batches weighted by their entries."""
    per_batch = {}
    for r in np.unique(rows):
        idx = np.flatnonzero(rows == r)
        order = idx[np.lexsort((idx, -scores[idx]))]
        top = (rel[order] > 0)[:k]
        hits, ap = 0, 0.0
        for i, x in enumerate(top):
            if x:
                hits += 1
                ap += hits / (i + 1)
        dcg = sum(1 / np.log2(i + 2) for i, x in enumerate(top) if x)
        idcg = sum(1 / np.log2(i + 2) for i in range(min(k, int((rel[idx] > 0).sum()))))
        b = per_batch.setdefault(r // batch, {"MAP@10": [], "NDCG@10": [], "n": 0})
        b["MAP@10"].append(ap / hits if hits else 0.0)
        b["NDCG@10"].append(dcg / idcg if idcg else 0.0)
        b["n"] += len(idx)
    total = sum(b["n"] for b in per_batch.values())
    return {m: sum(np.mean(b[m]) * b["n"] for b in per_batch.values()) / total for m in ("MAP@10", "NDCG@10")}


@pytest.mark.parametrize(("seed", "batch"), [(0, 1), (1, 7), (2, 100), (3, 4)])
def test_paper_list_metrics_equal_the_authors_loop(seed, batch):
    rng = np.random.default_rng(seed)
    n = 500
    rows = rng.integers(0, 40, size=n)
    scores = rng.integers(0, 8, size=n).astype(float)
    rel = (rng.random(n) < 0.3).astype(float)
    rel[rows == 3] = 0.0  # a row without a relevant item counts as 0, not left out
    got = paper_list_metrics(rows, scores, rel, 10, batch)
    ref = _brute_paper(rows, scores, rel, 10, batch)
    assert got == pytest.approx(ref)


def test_paper_list_metrics_depart_from_ours_as_documented():
    rows = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([4.0, 3.0, 2.0, 1.0, 2.0, 1.0])
    rel = np.array([0.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    ours = ranked_list_metrics(rows, scores, rel, 2)
    assert ours["MAP@2"][0] == pytest.approx(0.5 / 2)  # one hit at rank 2, divided by min(k, #relevant) = 2
    assert np.isnan(ours["MAP@2"][1])  # row 1 has no relevant item: left out
    only_row0 = paper_list_metrics(rows[:4], scores[:4], rel[:4], 2, batch=10)
    assert only_row0["MAP@2"] == pytest.approx(0.5 / 1)  # divided by the 1 hit in the top 2
    assert paper_list_metrics(rows, scores, rel, 2, batch=10)["MAP@2"] == pytest.approx((0.5 + 0.0) / 2)  # row 1 scores 0
    # one row per batch: batch means 0.5 and 0 weighted by their 4 and 2 entries
    assert paper_list_metrics(rows, scores, rel, 2, batch=1)["MAP@2"] == pytest.approx((4 * 0.5 + 2 * 0.0) / 6)


@pytest.mark.parametrize("seed", range(5))
def test_auc_and_log_loss_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=500)
    s = np.round(rng.random(500), 2)  # ties
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    p = np.clip(rng.random(500), 0, 1)
    p[:3] = [0.0, 1.0, 0.5]
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p, labels=[0, 1]), abs=1e-10)


def test_rmse():
    assert rmse(np.array([1.0, 2.0]), np.array([1.0, 4.0])) == pytest.approx(np.sqrt(2.0))
