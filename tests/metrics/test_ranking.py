import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from cdrec.metrics import auc, hit_rate, log_loss, mrr, ndcg, positive_rank, ranked_list_metrics, rmse


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
