"""The evaluator owns candidates and metrics, so every model is measured the same way.

A model is seen only through a *scorer*: ``scorer(users[n], items[n, c]) -> scores[n, c]`` for
sampled candidates, or ``full_scorer(users[n], domain) -> scores[n, n_items_in_domain]`` for full
ranking. Scores are computed in batches of rows; ranks and metrics are vectorized.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import scipy.sparse as sp

from cdrec.data.splits import Split
from cdrec.data.views import interaction_matrix
from cdrec.metrics import activity_bucket, bucket_labels, grouped_means
from cdrec.metrics.ranking import hit_rate_from_rank, mrr_from_rank, ndcg_from_rank, positive_rank

if TYPE_CHECKING:
    import torch

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
FullScorer = Callable[[np.ndarray, int], np.ndarray]

CELLS_PER_BATCH = 1 << 16
"""Most candidates scored in one call of a CPU scorer (rows x candidates): the gathered embeddings
stay in cache. A GPU scorer takes whole ``batch_size`` row batches (fewer launches and copies)."""


@dataclass
class Evaluation:
    """Metrics per domain (+ ``overall``), per activity bucket, and the per-row values behind them."""

    metrics: dict[str, dict[str, float]]
    buckets: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    per_row: dict[str, np.ndarray] = field(default_factory=dict)
    rows: np.ndarray | None = None


def rank_metrics(rank: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-row ``HR@k``, ``NDCG@k``, ``MRR@k`` for each k, plus ``MRR`` without cut-off."""
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"HR@{k}"] = hit_rate_from_rank(rank, k)
        out[f"NDCG@{k}"] = ndcg_from_rank(rank, k)
        out[f"MRR@{k}"] = mrr_from_rank(rank, k)
    out["MRR"] = mrr_from_rank(rank)
    return out


def report(split: Split, rows: np.ndarray, per_row: dict[str, np.ndarray], bucket_edges: Sequence[int]) -> Evaluation:
    """Group per-row values by domain, by (domain, activity bucket) and overall."""
    data = split.data
    doms = data.domain[rows].astype(np.int64)
    metrics = grouped_means(per_row, doms, data.domains)
    metrics["overall"] = {m: float(np.nanmean(v)) for m, v in per_row.items()} if len(rows) else {}
    if len(rows):
        metrics["overall"]["n"] = int(len(rows))
    counts = split.train_counts()[data.users[rows], doms]
    bucket = activity_bucket(counts, bucket_edges)
    labels = bucket_labels(bucket_edges)
    buckets = {}
    for d, name in enumerate(data.domains):
        mask = doms == d
        if mask.any():
            buckets[name] = grouped_means({m: v[mask] for m, v in per_row.items()}, bucket[mask], labels)
    return Evaluation(metrics, buckets, per_row, rows)


def evaluate_sampled(
    scorer: Scorer,
    split: Split,
    part: str,
    *,
    ks: Sequence[int] = (5, 10),
    bucket_edges: Sequence[int] = (2, 5, 20),
    batch_size: int = 4096,
    scorer_device: str | torch.device = "cpu",
) -> Evaluation:
    """Rank each row's stored candidates (positive in column 0).

    ``batch_size`` caps the rows per scorer call; where the scorer runs on the CPU (``scorer_device``,
    a ``torch.device`` or its name) a call also holds at most :data:`CELLS_PER_BATCH` candidates, so
    gathered embeddings stay in cache with 1+999 lists. The batching never changes a result on the CPU.
    """
    rows = split.rows(part)
    cands = split.candidates[part]
    users = split.data.users[rows]
    ranks = np.empty(len(rows), dtype=np.int64)
    if str(scorer_device).startswith("cpu"):
        batch_size = max(1, min(batch_size, CELLS_PER_BATCH // max(1, cands.shape[1])))
    for start in range(0, len(rows), batch_size):
        stop = start + batch_size
        ranks[start:stop] = positive_rank(np.asarray(scorer(users[start:stop], cands[start:stop])))
    return report(split, rows, rank_metrics(ranks, ks), bucket_edges)


def evaluate_full(
    full_scorer: FullScorer,
    split: Split,
    part: str,
    *,
    ks: Sequence[int] = (5, 10),
    bucket_edges: Sequence[int] = (2, 5, 20),
    batch_size: int = 1024,
) -> Evaluation:
    """Rank the positive among all items of its domain, minus the user's training items (and
    validation items when ``part == "test"``); ties count against the positive."""
    data = split.data
    rows = split.rows(part)
    seen_rows = split.train_rows if part != "test" else np.concatenate([split.train_rows, split.valid_rows])
    seen = interaction_matrix(data.subset(seen_rows)).tocsr()
    ranks = np.empty(len(rows), dtype=np.int64)
    doms = data.domain[rows].astype(np.int64)
    for d in np.unique(doms):
        start_item, stop_item = data.domain_item_range(int(d))
        idx = np.flatnonzero(doms == d)
        for b in range(0, len(idx), batch_size):
            sel = idx[b : b + batch_size]
            users = data.users[rows[sel]]
            scores = np.asarray(full_scorer(users, int(d)), dtype=np.float64)
            local_pos = data.items[rows[sel]] - start_item
            pos_score = scores[np.arange(len(sel)), local_pos]
            mask = seen[users][:, start_item:stop_item]
            scores = np.where(_dense_bool(mask), -np.inf, scores)
            scores[np.arange(len(sel)), local_pos] = -np.inf
            ranks[sel] = 1 + (scores >= pos_score[:, None]).sum(axis=1)
    return report(split, rows, rank_metrics(ranks, ks), bucket_edges)


def _dense_bool(mat: sp.spmatrix) -> np.ndarray:
    return mat.toarray().astype(bool)
