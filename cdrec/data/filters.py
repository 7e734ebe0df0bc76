"""Filters: repeated (user, item, domain) pairs, k-core per domain, overlapping users only, rating
threshold for implicit feedback."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from cdrec.data.interactions import Interactions, show_id
from cdrec.errors import CdrecError, require

DUPLICATE_POLICIES = ("error", "first", "last", "mean")
"""What ``data.duplicates`` does with a (user, item, domain) pair that occurs in several rows."""

PAIR = ["user", "item", "domain"]


def _rows(rows: Sequence[int]) -> list[str]:
    return [f"row {r + 1}" for r in rows]


def collapse_repeats(
    inter: Interactions, policy: str, *, source: str | None = None, locate: Callable[[Sequence[int]], list[str]] = _rows
) -> Interactions:
    """One row per (user, item, domain) pair, so no pair can sit in both train and a held-out part.

    ``error`` refuses a table with a repeated pair, naming ``source`` (default: the data's name), the
    first repeat and the row it repeats as ``locate`` describes them (file lines for a user's file;
    the default says ``row N``, 1-based);
    ``first`` / ``last`` keep the pair's earliest / latest row by timestamp (file order breaks ties and
    decides alone without timestamps); ``mean`` keeps the latest row (its timestamp and labels) with the
    rating averaged over the pair's rows. Kept rows stay in file order; a table without repeats is
    returned as it is.
    """
    if policy not in DUPLICATE_POLICIES:
        raise CdrecError(f"data.duplicates: expected one of {', '.join(DUPLICATE_POLICIES)}, got {policy!r}")
    frame = inter.frame
    repeat = frame.duplicated(PAIR, keep="first").to_numpy()
    if not repeat.any():
        return inter
    if policy == "error":
        raise CdrecError(_repeat_message(inter, repeat, source or inter.name, locate))
    if policy == "mean" and not inter.has_rating:
        raise CdrecError(f"data.duplicates: 'mean' averages ratings, but {inter.name} has no rating column; use first or last")
    by_time = np.argsort(inter.column("timestamp"), kind="stable") if inter.has_timestamp else np.arange(len(frame))
    dropped = frame[PAIR].iloc[by_time].duplicated(keep="first" if policy == "first" else "last").to_numpy()
    kept = np.sort(by_time[~dropped])
    if policy != "mean":
        return inter.subset(kept)
    mean = frame["rating"].astype(np.float64).groupby([frame[c] for c in PAIR], sort=False).transform("mean")
    out = frame.iloc[kept].copy()
    out["rating"] = mean.to_numpy()[kept].astype(frame["rating"].dtype)
    return inter.with_frame(out)


def _repeat_message(inter: Interactions, repeat: np.ndarray, source: str, locate: Callable[[Sequence[int]], list[str]]) -> str:
    """The ``error`` policy's one line: the first repeat, the row it repeats, and how to resolve it."""
    frame = inter.frame
    row = int(np.flatnonzero(repeat)[0])
    same_pair = (frame[PAIR] == frame[PAIR].iloc[row]).all(axis=1).to_numpy()
    first = int(np.flatnonzero(same_pair)[0])
    exact = frame.iloc[row].equals(frame.iloc[first])
    where_repeat, where_first = locate([row, first])
    user, item, dom = (int(frame[c].iloc[row]) for c in PAIR)
    pair = f"user {show_id(inter.user_ids[user])}, item {show_id(inter.item_ids[item])}" + (f", domain {inter.domains[dom]!r}" if inter.n_domains > 1 else "")
    n_pairs = int(frame.loc[repeat, PAIR].drop_duplicates().shape[0])
    how = f"{where_first} exactly" if exact else f"the pair of {where_first} with other values"
    return (
        f"{source}: {where_repeat} repeats {how} ({pair}); {n_pairs} (user, item) pair(s) occur in more than one row, "
        "which would put a pair in both train and a held-out part: set data.duplicates to first, last or mean "
        "to keep one row per pair (default: error)"
    )


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
