"""Filters: k-core per domain, overlapping users only, rating threshold for implicit feedback."""

from __future__ import annotations

import numpy as np

from cdrec.data.interactions import Interactions
from cdrec.errors import require


def kcore(inter: Interactions, k: int, *, max_rounds: int = 50) -> Interactions:
    """Keep rows whose user and item both have >= ``k`` interactions within the row's domain, repeatedly."""
    require(k >= 1, f"k-core needs k >= 1, got {k}")
    keep = np.ones(len(inter), dtype=bool)
    users, items, doms = inter.users, inter.items, inter.domain.astype(np.int64)
    user_key = users * inter.n_domains + doms
    for _ in range(max_rounds):
        user_count = np.bincount(user_key[keep], minlength=inter.n_users * inter.n_domains)
        item_count = np.bincount(items[keep], minlength=inter.n_items)
        new_keep = keep & (user_count[user_key] >= k) & (item_count[items] >= k)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    require(bool(keep.any()), f"{inter.name}: no interaction survives the {k}-core filter")
    return inter.subset(np.flatnonzero(keep))


def overlapping_users(inter: Interactions, min_domains: int | None = None) -> Interactions:
    """Keep users present in at least ``min_domains`` domains (default: all of them)."""
    need = inter.n_domains if min_domains is None else min_domains
    present = np.zeros((inter.n_users, inter.n_domains), dtype=bool)
    present[inter.users, inter.domain.astype(np.int64)] = True
    ok = present.sum(axis=1) >= need
    keep = ok[inter.users]
    require(bool(keep.any()), f"{inter.name}: no user appears in {need} domains (no overlapping users)")
    return inter.subset(np.flatnonzero(keep))


def rating_threshold(inter: Interactions, threshold: float, *, keep_negatives: bool = False) -> Interactions:
    """Implicit feedback: rows with ``rating >= threshold`` become positives.

    ``keep_negatives=False`` drops the other rows; ``True`` keeps them with a ``label`` column of 0
    (the MTAL protocol keeps low ratings as negatives).
    """
    require(inter.has_rating, f"{inter.name}: rating threshold needs a rating column")
    positive = inter.column("rating") >= threshold
    if keep_negatives:
        frame = inter.frame.copy()
        frame["label"] = positive.astype(np.float32)
        out = inter.with_frame(frame)
        out.label_columns = tuple(dict.fromkeys([*inter.label_columns, "label"]))
        return out
    require(bool(positive.any()), f"{inter.name}: no rating >= {threshold}")
    return inter.subset(np.flatnonzero(positive))
