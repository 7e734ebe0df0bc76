"""Grouped reports: a per-row metric averaged per domain, per activity bucket and overall."""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_BUCKET_EDGES = (2, 5, 20)


def bucket_labels(edges: Sequence[int] = DEFAULT_BUCKET_EDGES) -> list[str]:
    """Names of the activity buckets: edges (2, 5, 20) give 0, 1-2, 3-5, 6-20, >20 (a one-value
    bucket is named by its value: edges (1, 3) give 0, 1, 2-3, >3)."""
    labels = ["0"]
    low = 1
    for e in edges:
        labels.append(f"{low}-{e}" if e > low else str(e))
        low = e + 1
    labels.append(f">{edges[-1]}")
    return labels


def activity_bucket(counts: np.ndarray, edges: Sequence[int] = DEFAULT_BUCKET_EDGES) -> np.ndarray:
    """Bucket index per value of ``counts`` (training interactions in the domain), see :func:`bucket_labels`."""
    counts = np.asarray(counts)
    return np.where(counts <= 0, 0, 1 + np.searchsorted(np.asarray(edges), counts, side="left"))


def grouped_means(values: dict[str, np.ndarray], groups: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{group name: {metric: mean}}`` for the groups that have rows (``values`` are per-row arrays)."""
    groups = np.asarray(groups, dtype=np.int64)
    out: dict[str, dict[str, float]] = {}
    counts = np.bincount(groups, minlength=len(names))
    for g, name in enumerate(names):
        if counts[g] == 0:
            continue
        mask = groups == g
        out[name] = {m: float(np.nanmean(v[mask])) for m, v in values.items()}
        out[name]["n"] = int(counts[g])
    return out
