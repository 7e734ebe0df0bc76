"""Evaluation candidates: 1 positive + N negatives sampled from the positive's domain.

Negatives exclude every item the user touched anywhere in the data (train, validation and test),
are distinct within a row, and are fixed by the seed; they are stored with the :class:`Split` so
every model ranks the same candidates. Sampling is vectorized rejection sampling over all rows at
once (no Python loop per user).
"""

from __future__ import annotations

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
    bad = _rejected(out, users, exclude_keys, n_items, distinct)
    for _ in range(max_rounds):
        count = int(bad.sum())
        if count == 0:
            return out
        rows = np.nonzero(bad)[0]
        out[bad] = start[rows, 0] + np.floor(rng.random(count) * size[rows, 0]).astype(np.int64)
        bad = _rejected(out, users, exclude_keys, n_items, distinct)
    raise RuntimeError("negative sampling did not converge; a domain has too few items the user has not touched")


def _rejected(cand: np.ndarray, users: np.ndarray, exclude_keys: np.ndarray, n_items: int, distinct: bool) -> np.ndarray:
    keys = users[:, None] * n_items + cand
    pos = np.searchsorted(exclude_keys, keys)
    bad = exclude_keys[np.minimum(pos, len(exclude_keys) - 1)] == keys
    if distinct and cand.shape[1] > 1:
        order = np.argsort(cand, axis=1, kind="stable")
        sorted_c = np.take_along_axis(cand, order, axis=1)
        dup_sorted = np.zeros_like(sorted_c, dtype=bool)
        dup_sorted[:, 1:] = sorted_c[:, 1:] == sorted_c[:, :-1]
        dup = np.zeros_like(dup_sorted)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        bad |= dup
    return bad


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
