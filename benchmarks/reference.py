"""The foundation's evaluation-sampling code as it was before the performance work (commit d68452f),
kept verbatim as the in-run baseline of the throughput benchmark: rejection sampling that re-checks
every row every round, with a stable argsort per row for repeats and a binary search for exclusions.
"""

from __future__ import annotations

import numpy as np


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

