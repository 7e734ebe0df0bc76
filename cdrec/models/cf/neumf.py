"""NeuMF (He et al., WWW 2017), a single-domain baseline of UCLR's Table 2.

Generalized matrix factorisation ``phi_GMF = p_u^G * q_i^G`` and an MLP tower over
``[p_u^M ; q_i^M]`` are fused by one linear layer: ``y_ui = h^T [phi_GMF ; phi_MLP]`` (NeuMF Eq. 12).
Training uses NeuMF's log loss (Eq. 7): each positive is labelled 1 and its ``negatives`` sampled
items 0 (one binary cross-entropy over the ``[B, 1 + negatives]`` logits), with L2 ``reg`` on the
batch's embeddings. ``negatives`` is NeuMF's sampling ratio: 4 per positive (section 4.1, "Parameter
Settings"; section 4.3 / Figure 7 find 3-6 best and one too few); ``negatives=1`` is the pointwise
pair cdrec trained before.
Embedding size ``dim`` for both paths (UCLR section 4.2: m = 128); the MLP tower halves the width
per layer (``2 dim -> dim -> dim / 2`` by default). The four tables are ``sparse=True`` embeddings (a
step's gradient is the batch's rows) stepped by fused dense Adam (:meth:`NeuMF.configure_optimizers`):
the update of dense tables, cheaper per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cdrec.config import ModelParams, TrainConfig, bounded
from cdrec.data.splits import Split
from cdrec.models.base import RankingModel
from cdrec.models.cf.blocks import MLP, concat_linear
from cdrec.models.registry import register
from cdrec.train.trainer import make_optimizer


@dataclass
class NeuMFParams(ModelParams):
    """Embedding size, MLP tower widths after the input (default ``[dim, dim // 2]``), L2 weight,
    negatives sampled per positive (NeuMF section 4.1: 4)."""

    dim: int = bounded(128, 1)
    layers: list[int] = bounded(lo=1, default_factory=list)
    reg: float = bounded(1e-5, 0)
    dropout: float = bounded(0.0, 0, 1, hi_open=True)
    init_std: float = bounded(0.01, 0, lo_open=True)
    negatives: int = bounded(4, 1)


@register("neumf", family="cf", params=NeuMFParams)
class NeuMF(RankingModel):
    """GMF + MLP fused by a linear prediction layer."""

    def __init__(self, n_users: int, n_items: int, params: NeuMFParams) -> None:
        super().__init__()
        self.params = params
        d = params.dim
        layers = params.layers or [d, d // 2]
        # sparse: a lookup's gradient is the batch's rows, made dense before the step (configure_optimizers)
        self.user_gmf = nn.Embedding(n_users, d, sparse=True)
        self.item_gmf = nn.Embedding(n_items, d, sparse=True)
        self.user_mlp = nn.Embedding(n_users, d, sparse=True)
        self.item_mlp = nn.Embedding(n_items, d, sparse=True)
        for emb in (self.user_gmf, self.item_gmf, self.user_mlp, self.item_mlp):
            nn.init.normal_(emb.weight, std=params.init_std)
        self.tower = MLP([2 * d, *layers], last_activation=True, dropout=params.dropout)
        self.predict = nn.Linear(d + layers[-1], 1)

    @classmethod
    def from_split(cls, split: Split, params: NeuMFParams) -> "NeuMF":
        return cls(split.data.n_users, split.data.n_items, params)

    @property
    def train_negatives(self) -> int:
        return self.params.negatives

    def configure_optimizers(self, cfg: TrainConfig) -> torch.optim.Optimizer:
        """The Trainer's optimizer of ``cfg``, Adam with its fused kernel; the tables' row-sparse gradients
        are made dense before each step (the same update as dense tables)."""
        return make_optimizer(self.parameters(), cfg, fused=True, sparse_gradients=True)

    def _logits(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``users[n]``, ``items[n, c]`` -> logits ``[n, c]`` and the L2 of the embeddings used."""
        ug, um = self.user_gmf(users)[:, None, :], self.user_mlp(users)[:, None, :]
        ig, im = self.item_gmf(items), self.item_mlp(items)
        gmf = ug * ig
        mlp = concat_linear(self.tower[0], (um, im))  # the tower's first layer on [p_u^M ; q_i^M], the user's half once per row
        for layer in list(self.tower)[1:]:
            mlp = layer(mlp)
        logits = self.predict(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)
        l2 = ug.pow(2).sum(-1) + um.pow(2).sum(-1) + ig.pow(2).sum(-1) + im.pow(2).sum(-1)
        return logits, l2

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Log loss (NeuMF Eq. 7) over the positive and its negatives (``neg`` ``[B]`` or ``[B, n]``)."""
        pos, neg = batch["pos"], batch["neg"]
        items = torch.cat([pos[:, None], neg.reshape(len(pos), -1)], dim=1)
        logits, l2 = self._logits(batch["user"], items)
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(logits, labels) + self.params.reg * l2.mean()

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self._logits(users, items)[0]
