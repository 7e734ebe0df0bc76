"""BPR-MF (Rendle et al., UAI 2009), as used by UCLR for single-domain baselines and for the
pretrained global embedding (UCLR Eq. 2): ``r_ij = E_i^T I_j``, loss
``-log sigmoid(r_ij - r_ik) + lambda_U ||E_i||^2 + lambda_V (||I_j||^2 + ||I_k||^2)`` over sampled
triples (the regularisation is applied to the embeddings of the batch).

Training takes the closed-form gradients of that loss (Rendle et al., Fig. 4, LearnBPR) instead of
autograd: with ``x = E_i^T (I_j - I_k)`` and ``g = -sigmoid(-x) / n`` the batch gradients are
``g (I_j - I_k) + 2 lambda E_i / n``, ``g E_i + 2 lambda I_j / n`` and ``-g E_i + 2 lambda I_k / n``,
scattered into the tables with ``index_add_`` (the same numbers as ``loss(batch).backward()``, in half
the time). ``sparse=True`` keeps the gradients sparse and steps with lazy Adam (only the batch's rows
move: :class:`cdrec.train.lazy_adam.LazyAdam`, ``SparseAdam``'s numbers with gather/scatter kernels),
so a step costs O(batch) instead of O(table) on very large catalogues."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cdrec.config import ModelParams, TrainConfig, bounded
from cdrec.data.splits import Split
from cdrec.errors import require
from cdrec.models.base import RankingModel
from cdrec.models.cf.blocks import bpr_loss
from cdrec.models.registry import register


@dataclass
class BPRMFParams(ModelParams):
    """Embedding size and L2 weight (UCLR section 4.1: m = 128, lambda_U = lambda_V = 1e-5)."""

    dim: int = bounded(128, 1)
    reg: float = bounded(1e-5, 0)
    init_std: float = bounded(0.1, 0, lo_open=True)
    sparse: bool = False


@register("bprmf", family="cf", params=BPRMFParams)
class BPRMF(RankingModel):
    """Matrix factorisation trained with the BPR pairwise loss."""

    def __init__(self, n_users: int, n_items: int, params: BPRMFParams) -> None:
        super().__init__()
        self.params = params
        self.user_emb = self._table(n_users, params.dim, params.sparse)
        self.item_emb = self._table(n_items, params.dim, params.sparse)
        nn.init.normal_(self.user_emb.weight, std=params.init_std)
        nn.init.normal_(self.item_emb.weight, std=params.init_std)

    @staticmethod
    def _table(n: int, dim: int, sparse: bool) -> nn.Embedding:
        """``nn.Embedding(n, dim, sparse=sparse)``; a sparse (very large) table gets its memory from
        :func:`~cdrec.train.lazy_adam.empty_rows_table` (huge pages for random row access), filled
        with the same N(0, 1) draws as ``nn.Embedding``'s own initialisation (the same random stream)."""
        if not sparse:
            return nn.Embedding(n, dim)
        from cdrec.train.lazy_adam import empty_rows_table

        return nn.Embedding(n, dim, sparse=True, _weight=nn.init.normal_(empty_rows_table((n, dim))))

    @classmethod
    def from_split(cls, split: Split, params: BPRMFParams) -> "BPRMF":
        return cls(split.data.n_users, split.data.n_items, params)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """BPR loss; ``neg`` is ``[B]`` or ``[B, n]`` (n negatives per row, each pair one BPR term)."""
        u = self.user_emb(batch["user"])
        i = self.item_emb(batch["pos"])
        j = self.item_emb(batch["neg"])
        if j.dim() == 3:
            u, i = u[:, None, :], i[:, None, :]
        return bpr_loss(u, i, j, self.params.reg)

    def configure_optimizers(self, cfg: TrainConfig) -> torch.optim.Optimizer:
        """Adam with the fused kernel (one pass over each table per step); lazy Adam (``LazyAdam``,
        the numbers of ``SparseAdam``) when ``sparse``; otherwise the Trainer's optimizer of ``cfg``."""
        from cdrec.train.trainer import make_optimizer

        params = [p for p in self.parameters() if p.requires_grad]
        if self.params.sparse:
            require(cfg.optimizer == "adam" and cfg.weight_decay == 0, "model_params.sparse: needs train.optimizer=adam and train.weight_decay=0 (the L2 term is model_params.reg)")
            from cdrec.train.lazy_adam import LazyAdam

            return LazyAdam(params, lr=cfg.lr)
        return make_optimizer(params, cfg, fused=True)

    @property
    def train_step(self) -> Callable[[dict[str, torch.Tensor], list[torch.optim.Optimizer]], float]:
        """The closed-form step, except in a data-parallel run (``torchrun``): there the Trainer's
        DDP path all-reduces autograd gradients of :meth:`loss`, which a hand-set gradient skips."""
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            raise AttributeError("train_step")
        return self.closed_form_step

    def closed_form_step(self, batch: dict[str, torch.Tensor], optimizers: list[torch.optim.Optimizer]) -> float:
        """One step on a batch of triples with the closed-form gradients (module docstring)."""
        opt = optimizers[0]
        opt.zero_grad(set_to_none=True)
        if type(self).loss is not BPRMF.loss or batch["neg"].dim() != 1:
            loss = self.loss(batch)  # a subclass with its own loss, or several negatives: autograd
            loss.backward()
            opt.step()
            return float(loss.detach())
        users, pos, neg = batch["user"], batch["pos"], batch["neg"]
        U, V = self.user_emb.weight, self.item_emb.weight
        with torch.no_grad():
            u, i, j = U.index_select(0, users), V.index_select(0, pos), V.index_select(0, neg)  # = U[users] ..., without advanced indexing's overhead
            n = u.shape[0]
            diff = i - j
            x = torch.linalg.vecdot(u, diff)
            flat = [t.reshape(-1) for t in (u, i, j)]
            loss = -F.logsigmoid(x).mean() + self.params.reg * sum(torch.dot(t, t) for t in flat) / n
            g = torch.sigmoid(-x).neg_().div_(n)[:, None]
            r = 2.0 * self.params.reg / n
            gu = u * g
            grad_u = diff.mul_(g)
            if r:
                grad_u.add_(u, alpha=r)
                grad_i = torch.add(gu, i, alpha=r)
                grad_j = j.mul_(r).sub_(gu)
            else:
                grad_i, grad_j = gu, gu.neg()
            if self.params.sparse:
                U.grad = torch.sparse_coo_tensor(users[None], grad_u, U.shape, check_invariants=False)
                V.grad = torch.sparse_coo_tensor(torch.cat([pos, neg])[None], torch.cat([grad_i, grad_j]), V.shape, check_invariants=False)
            else:
                U.grad = torch.zeros_like(U).index_add_(0, users, grad_u)
                V.grad = torch.zeros_like(V).index_add_(0, pos, grad_i).index_add_(0, neg, grad_j)
        opt.step()
        return float(loss)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nd,ncd->nc", self.user_emb(users), self.item_emb(items))

    def score_all(self, users: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return self.user_emb(users) @ self.item_emb.weight[start:stop].T
