"""Ranking metrics.

Sampled / full ranking: ``scores[n_users, n_candidates]`` with the positive in column 0. The rank of
the positive is ``1 + #(others > positive) + #(others == positive)``: ties count against the
positive, so a constant model gets the worst rank. Each function returns per-user values.

Ranked lists of held-out rated items (the MTAL protocol): flat ``user, score, relevance`` arrays,
ranked per user by descending score (ties broken by the given order).
"""

from __future__ import annotations

import numpy as np


def positive_rank(scores: np.ndarray) -> np.ndarray:
    """1-based rank of column 0 among each row's candidates (ties count against it)."""
    scores = np.asarray(scores, dtype=np.float64)
    pos = scores[:, :1]
    others = scores[:, 1:]
    return 1 + (others >= pos).sum(axis=1)


def hit_rate_from_rank(rank: np.ndarray, k: int) -> np.ndarray:
    return (np.asarray(rank) <= k).astype(np.float64)


def ndcg_from_rank(rank: np.ndarray, k: int) -> np.ndarray:
    rank = np.asarray(rank, dtype=np.float64)
    return np.where(rank <= k, 1.0 / np.log2(rank + 1.0), 0.0)


def mrr_from_rank(rank: np.ndarray, k: int | None = None) -> np.ndarray:
    rank = np.asarray(rank, dtype=np.float64)
    rr = 1.0 / rank
    return rr if k is None else np.where(rank <= k, rr, 0.0)


def hit_rate(scores: np.ndarray, k: int) -> np.ndarray:
    """HR@k per user: 1 if the positive ranks in the top k."""
    return hit_rate_from_rank(positive_rank(scores), k)


def ndcg(scores: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k per user with one relevant item: ``1 / log2(rank + 1)`` if rank <= k."""
    return ndcg_from_rank(positive_rank(scores), k)


def mrr(scores: np.ndarray, k: int | None = None) -> np.ndarray:
    """Reciprocal rank per user, cut to 0 beyond ``k`` (``k=None``: no cut-off)."""
    return mrr_from_rank(positive_rank(scores), k)


def _ranked_groups(user: np.ndarray, score: np.ndarray, relevance: np.ndarray):
    user = np.asarray(user, dtype=np.int64)
    order = np.lexsort((np.arange(len(user)), -np.asarray(score, dtype=np.float64), user))
    u = user[order]
    rel = (np.asarray(relevance)[order] > 0).astype(np.float64)
    uniq, first, counts = np.unique(u, return_index=True, return_counts=True)
    position = np.arange(len(u)) - np.repeat(first, counts) + 1
    group = np.repeat(np.arange(len(uniq)), counts)
    return uniq, group, position, rel, counts


def ranked_list_metrics(user: np.ndarray, score: np.ndarray, relevance: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-user ``NDCG@k``, ``HR@k``, ``MAP@k`` over each user's held-out rated items.

    ``relevance > 0`` marks relevant items. AP@k = sum_{i<=k} P@i * rel_i / min(k, #relevant).
    Users without any relevant held-out item get NaN (excluded by ``np.nanmean``). Returns the
    metrics plus ``users``, the user id of each value.
    """
    uniq, group, position, rel, counts = _ranked_groups(user, score, relevance)
    n = len(uniq)
    in_k = position <= k
    n_rel = np.bincount(group, weights=rel, minlength=n)
    dcg = np.bincount(group, weights=np.where(in_k, rel / np.log2(position + 1.0), 0.0), minlength=n)
    ideal_len = np.minimum(n_rel, k).astype(np.int64)
    discounts = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))]
    idcg = discounts[ideal_len]
    hits_before = np.cumsum(rel) - np.repeat(np.cumsum(np.bincount(group, weights=rel, minlength=n)) - n_rel, counts)
    precision = hits_before / position
    ap = np.bincount(group, weights=np.where(in_k, precision * rel, 0.0), minlength=n)
    hit = np.bincount(group, weights=np.where(in_k, rel, 0.0), minlength=n) > 0
    has = n_rel > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "users": uniq,
            f"NDCG@{k}": np.where(has, dcg / np.where(has, idcg, 1.0), np.nan),
            f"HR@{k}": np.where(has, hit.astype(np.float64), np.nan),
            f"MAP@{k}": np.where(has, ap / np.maximum(ideal_len, 1), np.nan),
        }
