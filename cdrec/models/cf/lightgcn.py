"""LightGCN (He et al., SIGIR 2020), a single-domain baseline of UCLR's Table 2 and, joint over
all domains, the pretraining of ``pge-lightgcn`` / ``uclr-lightgcn`` (:mod:`cdrec.models.cf.uclr`).

Light graph convolution on the user-item bipartite graph of the training interactions:
``E^(k+1) = D^-1/2 A D^-1/2 E^(k)`` (LightGCN Eq. 7, no feature transform, no non-linearity),
final embeddings are the layer mean ``E = 1/(K+1) sum_k E^(k)`` (Eq. 8), scores are inner products
(Eq. 5), trained with BPR and L2 on the batch's layer-0 (ego) embeddings (Eq. 15). The normalised
adjacency is one ``torch.sparse`` COO matrix over ``n_users + n_items`` nodes, multiplied in CSR layout
(:func:`sparse_product`); one propagation per training step (the loss's gradient flows through it, as in
the paper), cached between evaluation calls. The ego tables are ``sparse=True`` embeddings (the L2
lookups' gradients are the batch's rows) stepped by fused dense Adam
(:meth:`GraphPropagation.configure_optimizers`): the same update, cheaper per step; HeroGraph and
GA-MTCDR (:mod:`cdrec.models.cf.domain_graph`) train the same way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cdrec.config import ModelParams, TrainConfig, bounded
from cdrec.data.candidates import sorted_unique
from cdrec.data.splits import Split
from cdrec.models.base import RankingModel
from cdrec.models.cf.blocks import bpr_loss
from cdrec.models.registry import register
from cdrec.train.trainer import make_optimizer


@dataclass
class LightGCNParams(ModelParams):
    """Embedding size, number of propagation layers K, L2 weight."""

    dim: int = bounded(128, 1)
    layers: int = bounded(3, 0)
    reg: float = bounded(1e-5, 0)
    init_std: float = bounded(0.1, 0, lo_open=True)


def normalized_adjacency(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> torch.Tensor:
    """Symmetric-normalised bipartite adjacency ``D^-1/2 A D^-1/2`` as a coalesced sparse COO tensor."""
    pairs = sorted_unique(users.astype(np.int64) * n_items + items.astype(np.int64))
    u, i = pairs // n_items, pairs % n_items + n_users
    rows = np.concatenate([u, i])
    cols = np.concatenate([i, u])
    n = n_users + n_items
    deg = np.bincount(rows, minlength=n).astype(np.float64)
    inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1.0)), 0.0)
    vals = inv_sqrt[rows] * inv_sqrt[cols]
    index = torch.as_tensor(np.stack([rows, cols]), dtype=torch.long)
    return torch.sparse_coo_tensor(index, torch.as_tensor(vals, dtype=torch.float32), (n, n), check_invariants=False).coalesce()


class _SparseMatmul(torch.autograd.Function):
    """``A @ X`` for a fixed sparse ``A`` whose transpose ``A^T`` is given: the backward pass is
    ``A^T @ G`` (no transpose built per step; a symmetric ``A`` is its own). With ``rows`` it also
    returns ``X[rows]``, whose gradient is added into the same dense one: ``X`` gets one gradient."""

    @staticmethod
    def forward(ctx: Any, matrix: torch.Tensor, transposed: torch.Tensor, x: torch.Tensor, rows: torch.Tensor | None = None) -> Any:
        ctx.transposed = transposed
        product = sparse_product(matrix, x)
        if rows is None:
            return product
        ctx.save_for_backward(rows)
        return product, x.index_select(0, rows.reshape(-1)).view(*rows.shape, x.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, *row_grad: torch.Tensor) -> tuple[None, None, torch.Tensor, None]:
        out = sparse_product(ctx.transposed, grad)
        if row_grad:
            (rows,) = ctx.saved_tensors
            out.index_add_(0, rows.reshape(-1), row_grad[0].reshape(-1, out.shape[-1]))
        return None, None, out, None


def sparse_product(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``matrix @ x`` for a sparse ``matrix``. A CSR one on the CPU goes through ``addmm`` onto a broadcast
    zero: the same kernel and the same numbers as ``@`` (whose path zero-fills and copies a result of
    ``x``'s width first), in about half the time."""
    if matrix.layout == torch.sparse_csr and matrix.device.type == "cpu":
        return torch.addmm(x.new_zeros(()), matrix, x)
    return matrix @ x


def sparse_matmul(matrix: torch.Tensor, x: torch.Tensor, transposed: torch.Tensor | None = None) -> torch.Tensor:
    """``matrix @ x`` differentiable in ``x``, the backward pass reading ``transposed`` (``matrix^T``,
    prepared once; ``None`` for a symmetric ``matrix``)."""
    return _SparseMatmul.apply(matrix, matrix if transposed is None else transposed, x)


def sparse_matmul_and_rows(matrix: torch.Tensor, x: torch.Tensor, transposed: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(matrix @ x, x[rows])`` (``x[rows]`` shaped ``[*rows.shape, k]``) as one autograd node: ``x``
    gets a single dense gradient, ``transposed @ G`` plus the rows' gradients added in place (no
    row-sparse gradient beside a dense one, whose sum would copy the whole of ``x``)."""
    return _SparseMatmul.apply(matrix, transposed, x, rows)


def light_convolution(adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One hop ``A @ x`` of light graph convolution for a symmetric sparse ``A`` (LightGCN Eq. 7)."""
    return sparse_matmul(adjacency, x)


def to_csr(matrix: torch.Tensor) -> torch.Tensor:
    """A sparse COO ``matrix`` in CSR layout (whose products run several times faster on CPU)."""
    with warnings.catch_warnings():  # torch's "sparse CSR support is in beta" notice is not the user's concern
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        return matrix.to_sparse_csr()


def layer_mean(adjacency: torch.Tensor, ego: torch.Tensor, layers: int) -> torch.Tensor:
    """``1/(K+1) sum_k A^k ego`` for a symmetric sparse ``A`` (LightGCN Eqs. 7-8): light graph
    convolution without transforms or non-linearity, layer outputs averaged."""
    total, layer = ego, ego
    for _ in range(layers):
        layer = light_convolution(adjacency, layer)
        total = total + layer
    return total / (layers + 1)


class GraphPropagation(RankingModel):
    """A ranking model whose scoring embeddings come from :meth:`propagate` over a fixed sparse graph
    (the ``adjacency`` buffer): training propagates at every step, evaluation propagates once and
    caches the result until the next :meth:`train` call."""

    def _init_graph(self, adjacency: torch.Tensor) -> None:
        self.register_buffer("adjacency", adjacency, persistent=False)
        self._cache: Any = None
        self._adj_csr: torch.Tensor | None = None

    def propagate(self) -> Any:
        raise TypeError(f"{type(self).__name__} must implement propagate")

    def _csr(self) -> torch.Tensor:
        """The adjacency in CSR layout on the model's device (converted once per device)."""
        if self._adj_csr is None or self._adj_csr.device != self.adjacency.device:
            self._adj_csr = to_csr(self.adjacency)
        return self._adj_csr

    def configure_optimizers(self, cfg: TrainConfig) -> torch.optim.Optimizer:
        """The Trainer's optimizer of ``cfg``, Adam with its fused kernel; the row-sparse gradients of
        ``sparse=True`` embedding lookups (the L2 term's) are made dense before each step (the same update)."""
        return make_optimizer(self.parameters(), cfg, fused=True, sparse_gradients=True)

    def train(self, mode: bool = True) -> "GraphPropagation":
        self._cache = None
        return super().train(mode)

    def _final(self) -> Any:
        if self.training:
            return self.propagate()
        if self._cache is None:
            with torch.no_grad():
                self._cache = self.propagate()
        return self._cache


@register("lightgcn", family="cf", params=LightGCNParams)
class LightGCN(GraphPropagation):
    """Layer-averaged light graph convolution over the training graph."""

    def __init__(self, n_users: int, n_items: int, adjacency: torch.Tensor, params: LightGCNParams) -> None:
        super().__init__()
        self.params = params
        self.n_users = n_users
        self.user_emb = nn.Embedding(n_users, params.dim, sparse=True)  # sparse: the L2 lookups' gradients are the batch's rows
        self.item_emb = nn.Embedding(n_items, params.dim, sparse=True)
        nn.init.normal_(self.user_emb.weight, std=params.init_std)
        nn.init.normal_(self.item_emb.weight, std=params.init_std)
        self._init_graph(adjacency)

    @classmethod
    def from_split(cls, split: Split, params: LightGCNParams) -> "LightGCN":
        train = split.train
        adj = normalized_adjacency(train.users, train.items, split.data.n_users, split.data.n_items)
        return cls(split.data.n_users, split.data.n_items, adj, params)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user and item embeddings (LightGCN Eqs. 7-8)."""
        final = layer_mean(self._csr(), torch.cat([self.user_emb.weight, self.item_emb.weight]), self.params.layers)
        return final[: self.n_users], final[self.n_users :]

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        users, items = self.propagate()
        u, p, n = batch["user"], batch["pos"], batch["neg"]
        loss = bpr_loss(users[u], items[p], items[n], 0.0)
        l2 = self.user_emb(u).pow(2).sum(-1) + self.item_emb(p).pow(2).sum(-1) + self.item_emb(n).pow(2).sum(-1)
        return loss + self.params.reg * l2.mean()

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        u, i = self._final()
        return torch.einsum("nd,ncd->nc", u[users], i[items])

    def score_all(self, users: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        u, i = self._final()
        return u[users] @ i[start:stop].T
