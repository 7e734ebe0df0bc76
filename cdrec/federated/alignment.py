"""Turn one dataset + split into K organizations' private holdings (the simulation's data owner).

* user-aligned: organizations hold different items (domains own items) and share users; rows are
  users, an organization's columns are its items.
* item-aligned: the transpose; organizations hold different users (``uniform-users:K``) and share
  items; rows are items, an organization's columns are its users.
* partial alignment (``align_ratio``): a random share of the row ids is common; the others are
  private to each organization (never announced, never exchanged).
* cold start (``cold_start``): one organization keeps only a ``ratio`` of its users for training; the
  rest are new users, all of whose ratings in that organization are evaluated (test) and none trained.

Each :class:`OrgHoldings` holds only that organization's entries. The global ids of rows are the
aligned ids (in a deployment they come from private set intersection); column ids never leave.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cdrec.data.interactions import Interactions
from cdrec.data.splits import Split
from cdrec.errors import CdrecError, require


@dataclass
class Entries:
    """Rating-matrix entries: aligned row id, organization-local column, target, and the (user, item)
    they are about (for metrics)."""

    rows: np.ndarray
    cols: np.ndarray
    y: np.ndarray
    users: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, mask: np.ndarray) -> "Entries":
        return Entries(self.rows[mask], self.cols[mask], self.y[mask], self.users[mask], self.items[mask])

    @staticmethod
    def concat(parts: list["Entries"]) -> "Entries":
        return Entries(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("rows", "cols", "y", "users", "items")))


@dataclass
class OrgHoldings:
    """What organization ``name`` owns: its entries per part and its side information."""

    name: str
    n_rows: int
    n_cols: int
    col_ids: np.ndarray  # global column id (item or user) of each local column, for metrics only
    train: Entries
    valid: Entries
    test: Entries
    shareable: np.ndarray  # row ids it may align on (partial alignment)
    row_side: np.ndarray | None = None
    col_side: np.ndarray | None = None

    @property
    def known_rows(self) -> np.ndarray:
        return np.unique(np.concatenate([self.train.rows, self.valid.rows, self.test.rows]))


@dataclass
class Federation:
    orgs: list[OrgHoldings]
    alignment: str
    feedback: str
    n_rows: int
    meta: dict = field(default_factory=dict)


def side_features(data: Interactions) -> tuple[np.ndarray | None, np.ndarray | None]:
    """User profile one-hots (gender, occupation, age in the 7 ML-1M bins) and item genre multi-hots."""
    user = item = None
    uf = data.user_features
    if uf is not None:
        blocks = []
        for col in ("gender", "occupation"):
            if col in uf.columns:
                blocks.append(pd.get_dummies(uf[col].astype(str)).to_numpy(dtype=np.float32))
        if "age" in uf.columns:
            bins = np.digitize(uf["age"].to_numpy(dtype=float), [18, 25, 35, 45, 50, 56])
            blocks.append(np.eye(7, dtype=np.float32)[bins])
        user = np.concatenate(blocks, axis=1) if blocks else None
    itf = data.item_features
    if itf is not None and "genres" in itf.columns:
        exploded = itf["genres"].explode().dropna()
        vocab = sorted(set(exploded.tolist()))
        item = np.zeros((data.n_items, len(vocab)), dtype=np.float32)
        item[exploded.index.to_numpy(dtype=np.int64), pd.Index(vocab).get_indexer(exploded.to_numpy())] = 1.0
    return user, item


def rows_known(side: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    """``side`` with every row outside ``rows`` zeroed: an organization holds the profiles of the ids it
    knows only (paper 002: ``S_u^k`` has its own ``m_k`` rows), not those of other organizations' users."""
    if side is None:
        return None
    out = np.zeros_like(side)
    out[rows] = side[rows]
    return out


def build_federation(
    data: Interactions,
    split: Split,
    *,
    alignment: str = "user",
    feedback: str = "explicit",
    side_info: bool = False,
    align_ratio: float = 1.0,
    cold_start_ratio: float | None = None,
    cold_start_org: str | int = 0,
    seed: int = 0,
) -> Federation:
    """Organizations = the domains of ``data``; entries come from ``split``'s train/valid/test rows."""
    require(alignment in ("user", "item"), f"setting.alignment: expected 'user' or 'item', got {alignment!r}")
    require(feedback in ("explicit", "implicit"), f"setting.feedback: expected 'explicit' or 'implicit', got {feedback!r}")
    require(0.0 <= align_ratio <= 1.0, f"setting.align_ratio: expected a number in [0, 1], got {align_ratio}")
    require(data.has_rating, f"{data.name}: MTAL needs a rating column")
    if alignment == "user":
        require(data.items_by_domain, f"{data.name}: user-aligned organizations need item-owned domains (use uniform-items:K or genre)")
    else:
        user_dom = np.full(data.n_users, -1)
        user_dom[data.users] = data.domain
        require(bool(np.all(user_dom[data.users] == data.domain)), f"setting.alignment=item: {data.name}'s organizations share users, but item-aligned organizations need user-owned domains (data.domains=uniform-users:K)")
    if feedback == "implicit":
        y_all = data.column("label").astype(np.float64) if "label" in data.frame.columns else (data.column("rating") >= 3.5).astype(np.float64)
    else:
        y_all = data.column("rating").astype(np.float64)
    rng = np.random.default_rng(seed + 7919)
    n_rows = data.n_users if alignment == "user" else data.n_items
    shared = rng.random(n_rows) < align_ratio
    part_of = np.full(len(data), -1)
    for p, name in enumerate(("train", "valid", "test")):
        part_of[split.rows(name)] = p
    doms = data.domain.astype(np.int64)
    cold = None
    if cold_start_ratio is not None:
        require(0.0 < cold_start_ratio < 1.0, f"setting.cold_start_ratio: expected a number in (0, 1), got {cold_start_ratio}")
        require(alignment == "user", "cold start is defined for user-aligned organizations")
        require(not isinstance(cold_start_org, str) or cold_start_org in data.domains,
                f"setting.cold_start_org: unknown organization {cold_start_org!r}; expected one of {data.domains}")
        cold = data.domain_index(cold_start_org) if isinstance(cold_start_org, str) else int(cold_start_org)
        users_c = np.unique(data.users[doms == cold])
        new = rng.permutation(users_c)[: int(round(len(users_c) * (1 - cold_start_ratio)))]
        is_new = np.zeros(data.n_users, dtype=bool)
        is_new[new] = True
        in_cold = doms == cold
        part_of = np.where(in_cold & is_new[data.users], 2, part_of)
        part_of = np.where(in_cold & ~is_new[data.users] & (part_of == 2), -1, part_of)  # evaluate the new users only
    user_side, item_side = side_features(data) if side_info else (None, None)
    if side_info:
        require(user_side is not None or item_side is not None, f"setting.side_info=true: {data.name} has no user or item features")
    orgs = []
    for d, name in enumerate(data.domains):
        sel = np.flatnonzero(doms == d)
        users, items = data.users[sel], data.items[sel]
        if alignment == "user":
            start, stop = data.domain_item_range(d)
            col_ids = np.arange(start, stop)
            rows, cols = users, items - start
            row_side, col_side = user_side, (item_side[start:stop] if item_side is not None else None)
        else:
            col_ids = np.unique(users)
            rows, cols = items, np.searchsorted(col_ids, users)
            row_side, col_side = item_side, (user_side[col_ids] if user_side is not None else None)
        ent = Entries(rows.astype(np.int64), cols.astype(np.int64), y_all[sel], users.astype(np.int64), items.astype(np.int64))
        parts = [ent.take(part_of[sel] == p) for p in range(3)]
        known = np.unique(np.concatenate([part.rows for part in parts]))
        holdings = OrgHoldings(
            name=name, n_rows=n_rows, n_cols=len(col_ids), col_ids=col_ids,
            train=parts[0], valid=parts[1], test=parts[2], shareable=np.flatnonzero(shared),
            row_side=rows_known(row_side, known), col_side=col_side,
        )
        orgs.append(holdings)
    if not any(len(o.test) for o in orgs):
        raise CdrecError(f"{data.name}: no organization has test entries")
    meta = {"align_ratio": align_ratio, "cold_start_ratio": cold_start_ratio, "cold_start_org": data.domains[cold] if cold is not None else None}
    return Federation(orgs, alignment, feedback, n_rows, meta)
