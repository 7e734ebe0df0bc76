"""Views derived from :class:`Interactions` for each family.

* :func:`interaction_matrix` / :func:`domain_matrix` — SciPy CSR user x item matrices.
* :func:`padded_sequences` — per-user time-ordered item sequences (mixed, or one domain), left-padded.
* :func:`feature_codes` — integer codes of categorical features (the CTR view builds on it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cdrec.data.interactions import Interactions


def interaction_matrix(inter: Interactions, *, values: str | None = None, domain: int | None = None) -> sp.csr_matrix:
    """``[n_users, n_items]`` CSR over global item ids; entries are 1 or the ``values`` column."""
    rows = np.arange(len(inter)) if domain is None else np.flatnonzero(inter.domain == domain)
    data = np.ones(len(rows), dtype=np.float32) if values is None else inter.column(values)[rows].astype(np.float32)
    mat = sp.csr_matrix((data, (inter.users[rows], inter.items[rows])), shape=(inter.n_users, inter.n_items))
    mat.sum_duplicates()
    if values is None:
        mat.data[:] = 1.0
    return mat


def domain_matrix(inter: Interactions, domain: int, *, values: str | None = None) -> sp.csr_matrix:
    """``[n_users, n_items_in_domain]`` CSR with domain-local item columns (item-owned layout)."""
    start, stop = inter.domain_item_range(domain)
    return interaction_matrix(inter, values=values, domain=domain)[:, start:stop].tocsr()


def padded_sequences(
    inter: Interactions,
    max_len: int,
    *,
    domain: int | None = None,
    columns: tuple[str, ...] = ("item",),
) -> dict[str, np.ndarray]:
    """Per-user chronological sequences, the last ``max_len`` events, left-padded.

    Returns ``{column: [n_users, max_len]}``; item ids are shifted by +1 so that 0 is padding (the
    ``domain`` column, if asked, is padded with -1). Order: timestamp, then the ``seq`` column if
    present, then row order.
    """
    rows = np.arange(len(inter)) if domain is None else np.flatnonzero(inter.domain == domain)
    users = inter.users[rows]
    keys = [np.arange(len(rows))]
    if "seq" in inter.frame.columns:
        keys.append(inter.column("seq")[rows])
    if inter.has_timestamp:
        keys.append(inter.column("timestamp")[rows])
    keys.append(users)
    order = rows[np.lexsort(tuple(keys))]
    users = inter.users[order]
    sizes = np.bincount(users, minlength=inter.n_users)
    ends = np.cumsum(sizes)
    from_end = np.repeat(ends, sizes) - np.arange(len(order)) - 1
    keep = from_end < max_len
    col_pos = max_len - 1 - from_end[keep]
    out = {}
    for col in columns:
        if col == "item":
            arr = np.zeros((inter.n_users, max_len), dtype=np.int64)
            arr[users[keep], col_pos] = inter.items[order[keep]] + 1
        elif col == "domain":
            arr = np.full((inter.n_users, max_len), -1, dtype=np.int64)
            arr[users[keep], col_pos] = inter.domain[order[keep]]
        else:
            arr = np.zeros((inter.n_users, max_len), dtype=inter.frame[col].dtype)
            arr[users[keep], col_pos] = inter.column(col)[order[keep]]
        out[col] = arr
    return out


def feature_codes(values: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (0 = missing/unknown, 1.. = values) and the vocabulary of a categorical column."""
    codes, vocab = pd.factorize(pd.Series(values), sort=True)
    return (codes + 1).astype(np.int64), np.asarray(vocab)
