"""Splitters: leave-one-out (per user per domain, or on the mixed sequence) and ratio splits.

A :class:`Split` holds row positions into one :class:`Interactions` plus the fixed evaluation
candidates (see :mod:`cdrec.data.candidates`), so every model in a comparison is measured on the
same rows and the same candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from cdrec.data.interactions import Interactions
from cdrec.errors import CdrecError, require

PARTS = ("train", "valid", "test")


@dataclass
class Split:
    """Train/validation/test row positions into ``data`` and the evaluation candidates per part."""

    data: Interactions
    train_rows: np.ndarray
    valid_rows: np.ndarray
    test_rows: np.ndarray
    protocol: str
    seed: int
    candidates: dict[str, np.ndarray] = field(default_factory=dict)

    def rows(self, part: str) -> np.ndarray:
        if part not in PARTS:
            raise CdrecError(f"unknown split part {part!r}; expected one of {PARTS}")
        return getattr(self, f"{part}_rows")

    def part(self, part: str) -> Interactions:
        return self.data.subset(self.rows(part))

    @property
    def train(self) -> Interactions:
        return self.part("train")

    @property
    def valid(self) -> Interactions:
        return self.part("valid")

    @property
    def test(self) -> Interactions:
        return self.part("test")

    def train_counts(self) -> np.ndarray:
        """Training interactions per (user, domain): array ``[n_users, n_domains]``."""
        data = self.data
        users = data.users[self.train_rows]
        doms = data.domain[self.train_rows].astype(np.int64)
        counts = np.bincount(users * data.n_domains + doms, minlength=data.n_users * data.n_domains)
        return counts.reshape(data.n_users, data.n_domains)

    def train_item_counts(self) -> np.ndarray:
        """Training interactions per item: array ``[n_items]`` (a repeated interaction counts each time)."""
        return np.bincount(self.data.items[self.train_rows], minlength=self.data.n_items)

    def restrict(self, domain: int, parts: Sequence[str] = PARTS) -> "Split":
        """The same split and candidates, only the rows of one domain in ``parts`` (all: single-domain
        baselines; ``("valid", "test")``: a single-target model evaluated on its target domain alone)."""
        keep = {p: (self.data.domain[self.rows(p)] == domain) if p in parts else np.ones(len(self.rows(p)), dtype=bool) for p in PARTS}
        return Split(
            self.data,
            self.train_rows[keep["train"]],
            self.valid_rows[keep["valid"]],
            self.test_rows[keep["test"]],
            self.protocol,
            self.seed,
            {p: c[keep[p]] for p, c in self.candidates.items()},
        )

    def save(self, path: str | Path) -> None:
        arrays = {f"{p}_rows": self.rows(p) for p in PARTS}
        arrays.update({f"cand_{k}": v for k, v in self.candidates.items()})
        from cdrec.results.schema import atomic_path

        path = Path(path)
        if path.suffix != ".npz":  # what np.savez would do; the temporary name must not get it twice
            path = path.with_name(path.name + ".npz")
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, protocol=self.protocol, seed=self.seed, **arrays)

    @classmethod
    def load(cls, path: str | Path, data: Interactions) -> "Split":
        with np.load(path, allow_pickle=False) as z:
            cands = {k[5:]: z[k] for k in z.files if k.startswith("cand_")}
            return cls(data, z["train_rows"], z["valid_rows"], z["test_rows"], str(z["protocol"]), int(z["seed"]), cands)


def _order_within(inter: Interactions, group: np.ndarray, seed: int) -> np.ndarray:
    """Row positions sorted by group, then time (file order breaks ties), or randomly without time."""
    n = len(inter)
    if inter.has_timestamp:
        tie = inter.column("seq") if "seq" in inter.frame.columns else np.arange(n)
        return np.lexsort((tie, inter.column("timestamp"), group))
    rng = np.random.default_rng(seed)
    return np.lexsort((rng.random(n), group))


def leave_one_out(inter: Interactions, *, mixed: bool = False, seed: int = 0, min_train: int = 1) -> Split:
    """Last interaction = test, penultimate = validation, per user per domain (``mixed=False``) or per
    user over the mixed-domain sequence (``mixed=True``, MERIT). A group keeps at least ``min_train``
    training rows: groups of size <= min_train stay in train, size min_train + 1 give a test row only.
    """
    group = inter.users if mixed else inter.users * inter.n_domains + inter.domain.astype(np.int64)
    order = _order_within(inter, group, seed)
    g_sorted = group[order]
    is_last = np.r_[g_sorted[1:] != g_sorted[:-1], True]
    sizes = np.bincount(np.unique(g_sorted, return_inverse=True)[1])
    size_of_row = np.repeat(sizes, sizes)
    from_end = np.repeat(np.flatnonzero(is_last), sizes) - np.arange(len(order))
    test_mask = (from_end == 0) & (size_of_row > min_train)
    valid_mask = (from_end == 1) & (size_of_row > min_train + 1)
    train_mask = ~(test_mask | valid_mask)
    return Split(
        inter,
        np.sort(order[train_mask]),
        np.sort(order[valid_mask]),
        np.sort(order[test_mask]),
        protocol="loo-mixed" if mixed else "loo",
        seed=seed,
    )


SPLIT_ORDERS = ("random", "row", "merge", "time")


def _first_seen_rank(keys: np.ndarray) -> np.ndarray:
    """Rank of each key's first appearance in ``keys`` (0 for the first distinct key seen)."""
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    rank_of_sorted = np.empty(len(uniq), dtype=np.int64)
    rank_of_sorted[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    return rank_of_sorted[inverse]


def chronological_order(inter: Interactions) -> np.ndarray:
    """Row positions sorted by timestamp (file order breaks ties)."""
    return np.argsort(inter.column("timestamp"), kind="stable")


def merge_order(inter: Interactions) -> np.ndarray:
    """Row order of ``pd.merge(pd.merge(ratings, items), users)`` under pandas < 2.2.

    That inner merge grouped the result by join key in order of first appearance (pandas 2.2
    changed it to keep the left order). torch-rechub's ``ml-1m.csv``, which the M3oE code splits
    8:1:1 without shuffling, was written that way: rows grouped by item first, then by user. The
    test part is thus a set of users never seen in training, spread over the whole id range.
    """
    by_item = np.argsort(_first_seen_rank(inter.items), kind="stable")
    by_user = np.argsort(_first_seen_rank(inter.users[by_item]), kind="stable")
    return by_item[by_user]


def ratio_split(
    inter: Interactions,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    order: str = "random",
    by_user: bool = False,
    seed: int = 0,
) -> Split:
    """Split rows by ratios (train, valid, test). ``order="random"`` shuffles with ``seed``;
    ``"row"`` keeps the table's order; ``"merge"`` uses :func:`merge_order`, the row order of the
    table the M3oE authors split 8:1:1 without shuffling; ``"time"`` sorts by timestamp (file order
    breaks ties), so the test part is the latest rows. ``by_user=True`` applies the ratios within
    every user's rows (the MTAL 90/10 per-user split; with ``"time"``, each user's latest rows)."""
    ratios = list(ratios)
    if len(ratios) == 2:
        ratios = [ratios[0], 0.0, ratios[1]]
    require(len(ratios) == 3 and all(r >= 0 for r in ratios) and abs(sum(ratios) - 1) < 1e-6, f"split ratios must be 2 or 3 non-negative numbers summing to 1, got {ratios}")
    require(order in SPLIT_ORDERS, f"split order must be one of {', '.join(SPLIT_ORDERS)}, got {order!r}")
    require(order != "time" or inter.has_timestamp, f"{inter.name}: split order 'time' needs a timestamp column")
    n = len(inter)
    rng = np.random.default_rng(seed)
    if by_user:
        keys = rng.random(n) if order == "random" else inter.column("timestamp") if order == "time" else np.arange(n)
        perm = np.lexsort((keys, inter.users))
        users = inter.users[perm]
        sizes = np.bincount(users, minlength=inter.n_users)
        start = np.repeat(np.cumsum(sizes) - sizes, sizes)
        pos = np.arange(n) - start
        frac = pos / np.repeat(sizes, sizes)
    else:
        if order == "random":
            perm = rng.permutation(n)
        elif order == "merge":
            perm = merge_order(inter)
        elif order == "time":
            perm = chronological_order(inter)
        else:
            perm = np.arange(n)
        frac = np.arange(n) / n
    cut1, cut2 = ratios[0], ratios[0] + ratios[1]
    train = np.sort(perm[frac < cut1])
    valid = np.sort(perm[(frac >= cut1) & (frac < cut2)])
    test = np.sort(perm[frac >= cut2])
    require(len(train) > 0 and len(test) > 0, f"{inter.name}: split ratios {ratios} leave an empty train or test part")
    return Split(inter, train, valid, test, protocol=f"ratio-{order}", seed=seed)
