"""Sequence views for sequential recommendation (MERIT section 4.2, Fig. 4).

Every array is left-padded to ``max_len`` with item id 0 (items are shifted by +1) and domain -1.

* :func:`training_sequences` — per user, the time-ordered *training* events. With ``cloze=False``
  (next-item models) the inputs are every event but the last and ``targets`` the event after each
  input; ``domain_targets`` is the next event *of the input's own domain* (MERIT's A/B streams,
  authors' ``gt_ab``). With ``cloze=True`` (BERT4Rec) the window holds the last ``max_len`` events.
* :func:`next_events` — every event of a set of rows with the user's next event (mixed and same
  domain): the training transitions (also C2DSR's item graphs).
* :func:`histories` — for each evaluation row, what its user did strictly before it (the input of
  the validation/test prediction), optionally only in one domain (single-target baselines).
* :func:`aligned_domain_sequences` — the two domain sequences aligned to the mixed one as in Fig. 4:
  the mixed sequence with the other domain's slots padded.

All functions are vectorized over users (no Python loop per user).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cdrec.data.interactions import Interactions
from cdrec.data.splits import Split


@dataclass
class SequenceBatch:
    """Left-padded windows: ``items`` (+1 shifted, 0 = pad), ``domains`` (-1 = pad), ``users``,
    and for training views ``targets`` / ``domain_targets`` (+1 shifted, 0 = no target)."""

    users: np.ndarray
    items: np.ndarray
    domains: np.ndarray
    targets: np.ndarray | None = None
    domain_targets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.users)


def time_order(inter: Interactions, rows: np.ndarray) -> np.ndarray:
    """``rows`` sorted by user, then timestamp, then the file-position ``seq`` column, then row."""
    rows = np.asarray(rows, dtype=np.int64)
    keys = [rows]
    if "seq" in inter.frame.columns:
        keys.append(inter.column("seq")[rows])
    if inter.has_timestamp:
        keys.append(inter.column("timestamp")[rows])
    keys.append(inter.users[rows])
    return rows[np.lexsort(tuple(keys))]


def right_aligned(users: np.ndarray, keep: np.ndarray, max_len: int, n_rows: int, row_of_user: np.ndarray, values: dict[str, tuple[np.ndarray, int]]) -> dict[str, np.ndarray]:
    """Place the kept events of each user (already in time order, grouped by user) into the last
    ``max_len`` columns of its row; earlier events are dropped."""
    u = users[keep]
    sizes = np.bincount(u, minlength=len(row_of_user))
    ends = np.cumsum(sizes)
    from_end = np.repeat(ends, sizes) - np.arange(len(u)) - 1
    fit = from_end < max_len
    r = row_of_user[u[fit]]
    c = max_len - 1 - from_end[fit]
    out = {}
    for name, (vals, fill) in values.items():
        arr = np.full((n_rows, max_len), fill, dtype=vals.dtype)
        arr[r, c] = vals[keep][fit]
        out[name] = arr
    return out


def pool_windows(inter: Interactions, pool: np.ndarray, start: np.ndarray, end: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Row ``k`` holds ``pool[start[k]:end[k]]``'s last ``max_len`` events, right-aligned: ``items``
    (+1 shifted, 0 = pad) and ``domains`` (-1 = pad), ``[len(start), max_len]``."""
    idx = end[:, None] - max_len + np.arange(max_len)[None, :]
    if len(pool) == 0:
        return np.zeros_like(idx), np.full_like(idx, -1)
    valid = idx >= start[:, None]
    pos = pool[np.clip(idx, 0, len(pool) - 1)]
    items = np.where(valid, inter.items[pos].astype(np.int64) + 1, 0)
    doms = np.where(valid, inter.domain[pos].astype(np.int64), -1)
    return items, doms


def next_events(inter: Interactions, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``rows`` in time order as ``users``, ``items`` (+1 shifted), ``domains``, and for each event the
    user's next event among ``rows`` (``next_items``) and next event of the same domain
    (``next_domain_items``), +1 shifted, 0 when there is none."""
    order = time_order(inter, rows)
    users = inter.users[order]
    items = inter.items[order].astype(np.int64) + 1
    doms = inter.domain[order].astype(np.int64)
    n = len(order)
    same_next = np.r_[users[1:] == users[:-1], False]
    nxt = np.where(same_next, np.r_[items[1:], 0], 0)
    # next event of the same user in the same domain (stable sort keeps time order inside a group)
    by_dom = np.lexsort((np.arange(n), doms, users))
    same_group = np.r_[(users[by_dom][1:] == users[by_dom][:-1]) & (doms[by_dom][1:] == doms[by_dom][:-1]), False]
    nxt_dom = np.zeros(n, dtype=np.int64)
    nxt_dom[by_dom] = np.where(same_group, np.r_[items[by_dom][1:], 0], 0)
    return users, items, doms, nxt, nxt_dom


def training_sequences(split: Split, max_len: int, *, domain: int | None = None, cloze: bool = False) -> SequenceBatch:
    """Per-user windows over the training rows (of one ``domain`` when given); users with fewer than
    two training events (one for ``cloze``) are left out."""
    inter = split.data
    rows = split.train_rows if domain is None else split.train_rows[inter.domain[split.train_rows] == domain]
    users, items, doms, nxt, nxt_dom = next_events(inter, rows)
    keep = np.ones(len(users), dtype=bool) if cloze else nxt > 0  # inputs: every event that has a successor
    counts = np.bincount(users[keep], minlength=inter.n_users)
    kept_users = np.flatnonzero(counts > 0)
    row_of_user = np.full(inter.n_users, -1, dtype=np.int64)
    row_of_user[kept_users] = np.arange(len(kept_users))
    arrays = right_aligned(
        users, keep, max_len, len(kept_users), row_of_user,
        {"items": (items, 0), "domains": (doms, -1), "targets": (nxt, 0), "domain_targets": (nxt_dom, 0)},
    )
    return SequenceBatch(kept_users, arrays["items"], arrays["domains"], arrays["targets"], arrays["domain_targets"])


def histories(inter: Interactions, target_rows: np.ndarray, max_len: int, *, domain: int | None = None) -> SequenceBatch:
    """For each target row, the last ``max_len`` events of its user strictly before it in time
    order (only events of ``domain`` when given)."""
    target_rows = np.asarray(target_rows, dtype=np.int64)
    full = time_order(inter, np.arange(len(inter)))
    rank = np.empty(len(inter), dtype=np.int64)
    rank[full] = np.arange(len(inter))
    pool = full if domain is None else full[inter.domain[full] == domain]
    pool_rank = rank[pool]  # increasing: pool is a subsequence of the full order
    pool_users = inter.users[pool]
    end = np.searchsorted(pool_rank, rank[target_rows], side="left")
    start = np.searchsorted(pool_users, inter.users[target_rows], side="left")
    items, doms = pool_windows(inter, pool, start, end, max_len)
    return SequenceBatch(inter.users[target_rows], items, doms)


def aligned_domain_sequences(items: np.ndarray, domains: np.ndarray, n_domains: int) -> list[np.ndarray]:
    """Fig. 4: domain ``d``'s sequence aligned to the mixed one (other slots padded with 0)."""
    return [np.where(domains == d, items, 0) for d in range(n_domains)]
