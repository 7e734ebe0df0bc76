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
from cdrec.data.sequences import right_aligned, time_order


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
    present, then row order (:func:`~cdrec.data.sequences.time_order`).
    """
    rows = np.arange(len(inter)) if domain is None else np.flatnonzero(inter.domain == domain)
    order = time_order(inter, rows)
    values = {}
    for col in columns:
        if col == "item":
            values[col] = (inter.items[order].astype(np.int64) + 1, 0)
        elif col == "domain":
            values[col] = (inter.domain[order].astype(np.int64), -1)
        else:
            values[col] = (inter.column(col)[order], 0)
    users = inter.users[order]
    return right_aligned(users, np.ones(len(order), dtype=bool), max_len, inter.n_users, np.arange(inter.n_users), values)


def feature_codes(values: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (0 = missing/unknown, 1.. = values) and the vocabulary of a categorical column."""
    codes, vocab = pd.factorize(pd.Series(values), sort=True)
    return (codes + 1).astype(np.int64), np.asarray(vocab)
