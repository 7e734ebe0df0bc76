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


def _ranked_groups(
    user: np.ndarray, score: np.ndarray, relevance: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    user = np.asarray(user, dtype=np.int64)
    order = np.lexsort((np.arange(len(user)), -np.asarray(score, dtype=np.float64), user))
    u = user[order]
    rel = (np.asarray(relevance)[order] > 0).astype(np.float64)
    uniq, first, counts = np.unique(u, return_index=True, return_counts=True)
    position = np.arange(len(u)) - np.repeat(first, counts) + 1
    group = np.repeat(np.arange(len(uniq)), counts)
    return uniq, group, position, rel, counts


def _list_terms(user: np.ndarray, score: np.ndarray, relevance: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-user sums both ranked-list conventions share: DCG@k, ideal DCG@k, the AP@k numerator
    sum_{i<=k} P@i * rel_i, the relevant items in the top k and in all, and the entry count."""
    uniq, group, position, rel, counts = _ranked_groups(user, score, relevance)
    n = len(uniq)
    in_k = position <= k
    n_rel = np.bincount(group, weights=rel, minlength=n)
    top_rel = np.where(in_k, rel, 0.0)
    discounts = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))]
    hits_before = np.cumsum(rel) - np.repeat(np.cumsum(n_rel) - n_rel, counts)
    return {
        "users": uniq,
        "counts": counts,
        "n_rel": n_rel,
        "top_hits": np.bincount(group, weights=top_rel, minlength=n),
        "dcg": np.bincount(group, weights=top_rel / np.log2(position + 1.0), minlength=n),
        "idcg": discounts[np.minimum(n_rel, k).astype(np.int64)],
        "ap_sum": np.bincount(group, weights=top_rel * hits_before / position, minlength=n),
    }


def ranked_list_metrics(user: np.ndarray, score: np.ndarray, relevance: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-user ``NDCG@k``, ``HR@k``, ``MAP@k`` over each user's held-out rated items.

    ``relevance > 0`` marks relevant items. AP@k = sum_{i<=k} P@i * rel_i / min(k, #relevant).
    Users without any relevant held-out item get NaN (excluded by :func:`mean_over_ranked`). Returns the
    metrics plus ``users``, the user id of each value.
    """
    t = _list_terms(user, score, relevance, k)
    has = t["n_rel"] > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "users": t["users"],
            f"NDCG@{k}": np.where(has, t["dcg"] / np.where(has, t["idcg"], 1.0), np.nan),
            f"HR@{k}": np.where(has, (t["top_hits"] > 0).astype(np.float64), np.nan),
            f"MAP@{k}": np.where(has, t["ap_sum"] / np.maximum(np.minimum(t["n_rel"], k), 1), np.nan),
        }


def mean_over_ranked(per_list: np.ndarray) -> float:
    """The mean of a :func:`ranked_list_metrics` metric over the lists that could be ranked (NaN marks a list
    without a relevant item); NaN, without NumPy's empty-slice warning, when none could."""
    ranked = per_list[~np.isnan(per_list)]
    return float(ranked.mean()) if ranked.size else float("nan")


def paper_list_metrics(row: np.ndarray, score: np.ndarray, relevance: np.ndarray, k: int, batch: int) -> dict[str, float]:
    """``MAP@k`` and ``NDCG@k`` as the public code of the AAE / MTAL papers computes the figures in their
    tables (``src/metrics/metrics.py`` of the authors' repository), for comparison with those tables.

    ``row`` is the aligned id each list is ranked for: the user when user-aligned, the *item* when
    item-aligned (the item's held-out raters are ranked). Three departures from
    :func:`ranked_list_metrics`: AP@k is divided by the relevant items found in the top k, not by
    ``min(k, #relevant)``; a row without a relevant held-out item scores 0 instead of being left out; and
    the mean is taken per batch of ``batch`` consecutive row ids, the batch means weighted by their entry
    counts (the authors' logger).
    """
    t = _list_terms(row, score, relevance, k)
    per_row = {
        f"MAP@{k}": np.where(t["top_hits"] > 0, t["ap_sum"] / np.maximum(t["top_hits"], 1), 0.0),
        f"NDCG@{k}": np.where(t["idcg"] > 0, t["dcg"] / np.where(t["idcg"] > 0, t["idcg"], 1.0), 0.0),
    }
    batch_of = t["users"] // batch
    rows_in = np.bincount(batch_of).astype(np.float64)
    entries_in = np.bincount(batch_of, weights=t["counts"].astype(np.float64))
    used = rows_in > 0
    weights = entries_in[used] / entries_in[used].sum()
    return {name: float(((np.bincount(batch_of, weights=v)[used] / rows_in[used]) * weights).sum()) for name, v in per_row.items()}
