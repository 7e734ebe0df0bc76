"""Evaluation candidates: 1 positive + N negatives sampled from the positive's domain.

Negatives exclude every item the user touched anywhere in the data (train, validation and test),
are distinct within a row, and are fixed by the seed; they are stored with the :class:`Split` so
every model ranks the same candidates. Sampling is vectorized rejection sampling over all rows at
once (no Python loop per user).
"""

from __future__ import annotations

import weakref

import numpy as np

from cdrec.data.interactions import Interactions
from cdrec.data.splits import Split
from cdrec.errors import CdrecError, require


def user_item_keys(inter: Interactions, rows: np.ndarray | None = None) -> np.ndarray:
    """Sorted unique ``user * n_items + item`` keys (for fast membership tests)."""
    users = inter.users if rows is None else inter.users[rows]
    items = inter.items if rows is None else inter.items[rows]
    return np.unique(users.astype(np.int64) * inter.n_items + items)


def sample_in_domain(
    users: np.ndarray,
    domains: np.ndarray,
    n: int,
    *,
    item_offsets: np.ndarray,
    exclude_keys: np.ndarray,
    n_items: int,
    rng: np.random.Generator,
    distinct: bool = True,
    max_rounds: int = 200,
) -> np.ndarray:
    """``[len(users), n]`` item ids drawn uniformly from each row's domain, avoiding ``exclude_keys``
    (sorted ``user * n_items + item``) and, with ``distinct``, repeats within a row."""
    users = np.asarray(users, dtype=np.int64)
    domains = np.asarray(domains, dtype=np.int64)
    start = item_offsets[domains][:, None]
    size = (item_offsets[domains + 1] - item_offsets[domains])[:, None]
    out = start + np.floor(rng.random((len(users), n)) * size).astype(np.int64)
    member = _membership(exclude_keys, n_items)
    bad = member(users[:, None] * n_items + out)
    if distinct:
        bad |= _repeats(out)
    # Only rows holding a rejected draw are re-drawn and re-checked: a row without one keeps its
    # values, so its verdict cannot change; within a row only the new draws can be excluded items,
    # while repeats are re-checked over the whole row (a new draw can precede an earlier equal one).
    # The draws and their order are exactly those of re-checking every row every round.
    for _ in range(max_rounds):
        rows = np.flatnonzero(bad.any(axis=1))
        if len(rows) == 0:
            return out
        sub_bad = bad[rows]
        r_idx, c_idx = np.nonzero(sub_bad)
        sub = out[rows]
        drawn = start[rows[r_idx], 0] + np.floor(rng.random(len(r_idx)) * size[rows[r_idx], 0]).astype(np.int64)
        sub[r_idx, c_idx] = drawn
        out[rows] = sub
        new_bad = np.zeros_like(sub_bad)
        new_bad[r_idx, c_idx] = member(users[rows[r_idx]] * n_items + drawn)
        if distinct:
            new_bad |= _repeats(sub)
        bad[rows] = new_bad
    raise RuntimeError("negative sampling did not converge; a domain has too few items the user has not touched")


_BITMAP_MAX_BITS = 1 << 30
"""Up to this many ``user x item`` cells (128 MiB) membership is a bitmap lookup, else a binary search."""

_LAST: list = []
"""The last membership built, with a weak reference to its keys (samplers reuse theirs every epoch)."""


def _membership(exclude_keys: np.ndarray, n_items: int):
    """``keys[...] -> bool[...]``: is ``user * n_items + item`` among ``exclude_keys``."""
    if _LAST and _LAST[0]() is exclude_keys and _LAST[1] == len(exclude_keys):
        return _LAST[2]
    lookup = _build_membership(np.asarray(exclude_keys, dtype=np.int64))
    if isinstance(exclude_keys, np.ndarray):
        _LAST[:] = [weakref.ref(exclude_keys), len(exclude_keys), lookup]
    return lookup


def _build_membership(exclude_keys: np.ndarray):
    if len(exclude_keys) == 0:
        return lambda keys: np.zeros(np.shape(keys), dtype=bool)
    top = int(exclude_keys[-1]) + 1
    if top <= _BITMAP_MAX_BITS:
        byte = exclude_keys >> 3
        first = np.flatnonzero(np.r_[True, byte[1:] != byte[:-1]])
        packed = np.zeros((top + 7) // 8, dtype=np.uint8)
        # keys are unique, so the bits of one byte are distinct and their sum is their OR
        packed[byte[first]] = np.add.reduceat((1 << (exclude_keys & 7)).astype(np.uint8), first, dtype=np.uint8)

        def lookup(keys: np.ndarray) -> np.ndarray:
            inside = keys < top
            k = np.where(inside, keys, 0)
            return inside & ((packed[k >> 3] >> (k & 7).astype(np.uint8)) & 1).astype(bool)

        return lookup

    def search(keys: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(exclude_keys, keys)
        return exclude_keys[np.minimum(pos, len(exclude_keys) - 1)] == keys

    return search


def _repeats(cand: np.ndarray) -> np.ndarray:
    """Every repeat of an item after its first (leftmost) occurrence in its row."""
    n_cols = cand.shape[1]
    dup_at = np.zeros(cand.shape, dtype=bool)
    if n_cols < 2:
        return dup_at
    # sorting ``item * n_cols + column`` orders each row by item, then by column: equal items sit
    # side by side, leftmost first (what a stable argsort gives, several times faster)
    key = np.sort(cand * n_cols + np.arange(n_cols), axis=1)
    item = key // n_cols
    rows, pos = np.nonzero(item[:, 1:] == item[:, :-1])
    dup_at[rows, key[rows, pos + 1] % n_cols] = True
    return dup_at


def add_sampled_candidates(split: Split, n_negatives: int, *, seed: int | None = None, parts: tuple[str, ...] = ("valid", "test")) -> Split:
    """Fill ``split.candidates[part]`` with ``[rows, 1 + n_negatives]`` item ids, positive in column 0."""
    data = split.data
    require(n_negatives >= 1, f"n_negatives must be >= 1, got {n_negatives}")
    require(data.item_offsets is not None, f"{data.name}: sampled candidates need items owned by domains")
    sizes = np.diff(data.item_offsets)
    exclude = user_item_keys(data)
    touched = np.bincount(data.users * data.n_domains + data.domain.astype(np.int64), minlength=data.n_users * data.n_domains)
    rng = np.random.default_rng(split.seed if seed is None else seed)
    for part in parts:
        rows = split.rows(part)
        if len(rows) == 0:
            split.candidates[part] = np.zeros((0, 1 + n_negatives), dtype=np.int64)
            continue
        users = data.users[rows]
        doms = data.domain[rows].astype(np.int64)
        free = sizes[doms] - touched[users * data.n_domains + doms]
        short = free < n_negatives
        if short.any():
            d = int(doms[short][0])
            raise CdrecError(f"{data.name}: domain {data.domains[d]!r} has too few items ({int(sizes[d])}) to sample {n_negatives} negatives for every user; lower split.n_negatives")
        neg = sample_in_domain(users, doms, n_negatives, item_offsets=data.item_offsets, exclude_keys=exclude, n_items=data.n_items, rng=rng)
        split.candidates[part] = np.concatenate([data.items[rows][:, None], neg], axis=1)
    return split
