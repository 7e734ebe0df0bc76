"""Item-based k-nearest-neighbours (Sarwar et al., WWW 2001; the ItemKNN of RecBole, after Aiolli,
RecSys 2013), a memory-based baseline.

With ``R`` the binary user x item matrix of the training interactions and ``r_i`` its column of item
``i``, the similarity of two items is the cosine with shrinkage, as RecBole computes it::

    sim(i, j) = <r_i, r_j> / (||r_i|| ||r_j|| + shrink + 1e-6),   sim(i, i) = 0

Each item keeps its ``k`` most similar items (``S[i, j] = sim(i, j)`` for ``j`` in ``topk(i)``, 0
elsewhere; equal similarities: lower item index first; items with no co-occurring item keep fewer),
and a user's score for an item sums its similarities to the user's training items:
``score(u, i) = sum_j R[u, j] S[i, j]``, i.e. ``R S^T``.

Domains: with ``scope=single`` each domain's model sees only that domain's interactions, so
neighbours stay in the domain. With ``scope=joint``, ``cross_domain=true`` (the default) lets an item's
neighbours come from any domain (two items are similar when the same users took both), so a user's
history in one domain scores items of another; ``cross_domain=false`` keeps each item's neighbours in
its own domain, which gives the scores of ``scope=single`` from one joint model.

Everything is SciPy sparse and vectorized: similarities are computed for blocks of items at a time
(a block's co-occurrences never hold more than :data:`BLOCK_CELLS` entries, so no dense items x items
matrix exists even with 10^5 items), the top ``k`` of a block is one lexicographic sort, and scoring is
one sparse product per batch of users. Nothing is optimised: the ranking task fits the model in one
pass (:meth:`ItemKNN.fit_interactions`). Scores are computed on the CPU and returned on the device of
the users asked for; the neighbour matrix is saved in ``model.pt`` as the module's extra state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from cdrec.config import ModelParams, bounded
from cdrec.data.splits import Split
from cdrec.data.views import interaction_matrix
from cdrec.models.base import RankingModel
from cdrec.models.registry import register

BLOCK_CELLS = 1 << 21
"""Most (item, neighbour) dot products one similarity block may store (beyond one item's row), and
the most cells of one dense score block when scoring sampled candidates."""

EPS = 1e-6
"""Added to the cosine's denominator (RecBole's guard against empty items)."""


@dataclass
class ItemKNNParams(ModelParams):
    """Neighbours kept per item (RecBole's default 100), shrinkage of the cosine (RecBole's default 0),
    and whether neighbours may come from other domains (``scope=joint`` only)."""

    k: int = bounded(100, 1)
    shrink: float = bounded(0.0, 0)
    cross_domain: bool = True


def cosine_top_k(interactions: sp.spmatrix, k: int, shrink: float = 0.0, pools: Sequence[tuple[int, int]] | None = None,
                 block_cells: int = BLOCK_CELLS) -> sp.csr_matrix:
    """``[n_items, n_items]`` CSR whose row ``i`` holds the ``k`` items ``j != i`` most similar to ``i``
    (module docstring), among the items of ``i``'s pool (``pools``: disjoint ``[start, stop)`` item
    ranges covering every item; default one pool of all items). Only pairs with a common user are stored."""
    users_items = sp.csr_matrix(interactions, dtype=np.float32)
    n_items = users_items.shape[1]
    norms = np.sqrt(np.asarray(users_items.multiply(users_items).sum(axis=0), dtype=np.float64).ravel())
    items_users = users_items.T.tocsr()
    rows, cols, vals = [np.empty(0, np.int64)], [np.empty(0, np.int64)], [np.empty(0, np.float32)]
    for lo, hi in pools or [(0, n_items)]:
        pool = users_items[:, lo:hi]
        # most stored dot products of each item's row: its users' items in the pool (at most the pool)
        bound = np.minimum(items_users[lo:hi] @ np.diff(pool.indptr).astype(np.int64), hi - lo)
        for start, stop in _blocks(bound, block_cells, lo):
            common = (items_users[start:stop] @ pool).tocoo()  # [block, pool] dot products
            item, neighbour = common.row.astype(np.int64) + start, common.col.astype(np.int64) + lo
            other = neighbour != item
            neighbour, item, dot = neighbour[other], item[other], common.data[other].astype(np.float64)
            sim = dot / (norms[item] * norms[neighbour] + shrink + EPS)
            order = np.lexsort((neighbour, -sim, item))  # by item, similarity descending, neighbour index
            item, neighbour, sim = item[order], neighbour[order], sim[order]
            rank = np.arange(len(item)) - np.searchsorted(item, item)  # position within the item's group
            top = rank < k
            rows.append(item[top])
            cols.append(neighbour[top])
            vals.append(sim[top].astype(np.float32))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_items, n_items))


def _blocks(cells: np.ndarray, budget: int, offset: int = 0) -> list[tuple[int, int]]:
    """Consecutive ``[start, stop)`` ranges (shifted by ``offset``) of rows whose ``cells`` add up to at
    most ``budget`` plus one row's cells (a row larger than the budget is a block of its own)."""
    ends = np.cumsum(cells)
    block = (ends - cells) // max(1, budget)  # the budget window each row starts in
    cuts = np.flatnonzero(np.diff(block)) + 1
    bounds = [0, *cuts.tolist(), len(cells)]
    return [(offset + a, offset + b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


@register("itemknn", family="cf", params=ItemKNNParams)
class ItemKNN(RankingModel):
    """Item-item cosine neighbourhoods (top k per item) scoring the user's training items."""

    optimised = False

    def __init__(self, history: sp.csr_matrix, item_offsets: Sequence[int], params: ItemKNNParams) -> None:
        super().__init__()
        self.params = params
        self.history = history.tocsr()
        self.item_offsets = list(item_offsets)
        n_items = history.shape[1]
        self.neighbours = sp.csr_matrix((n_items, n_items), dtype=np.float32)

    @classmethod
    def from_split(cls, split: Split, params: ItemKNNParams) -> "ItemKNN":
        return cls(interaction_matrix(split.train), split.data.item_offsets, params)

    def fit_interactions(self, split: Split) -> None:
        offsets = self.item_offsets
        pools = None if self.params.cross_domain else list(zip(offsets[:-1], offsets[1:]))
        self.neighbours = cosine_top_k(self.history, self.params.k, self.params.shrink, pools)

    def get_extra_state(self) -> dict[str, Any]:
        s = self.neighbours
        return {"shape": list(s.shape), "indptr": torch.from_numpy(s.indptr.astype(np.int64)),
                "indices": torch.from_numpy(s.indices.astype(np.int64)), "data": torch.from_numpy(s.data.astype(np.float32))}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if list(state["shape"]) != list(self.neighbours.shape):
            raise RuntimeError(f"itemknn: saved neighbours for {state['shape']} items, the data has {list(self.neighbours.shape)}")
        arrays = [state[key].cpu().numpy() for key in ("data", "indices", "indptr")]
        self.neighbours = sp.csr_matrix(tuple(arrays), shape=tuple(state["shape"]))

    def _scores(self, users: torch.Tensor, items: sp.spmatrix) -> np.ndarray:
        """Dense ``[len(users), items.shape[1]]`` scores ``R[users] @ items`` (``items``: columns of ``S^T``)."""
        return (self.history[users.cpu().numpy()] @ items).toarray()

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of ``items[n, c]``: one sparse product over the batch's distinct candidates, in row
        chunks of at most :data:`BLOCK_CELLS` dense cells."""
        wanted, where = np.unique(items.cpu().numpy(), return_inverse=True)
        where = where.reshape(items.shape)
        columns = self.neighbours[wanted].T.tocsc()
        out = np.empty(tuple(items.shape), dtype=np.float32)
        step = max(1, BLOCK_CELLS // max(1, len(wanted)))
        for a in range(0, len(users), step):
            out[a : a + step] = np.take_along_axis(self._scores(users[a : a + step], columns), where[a : a + step], axis=1)
        return torch.from_numpy(out).to(users.device)

    def score_all(self, users: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        scores = self._scores(users, self.neighbours[start:stop].T)
        return torch.from_numpy(scores.astype(np.float32, copy=False)).to(users.device)
