"""BPR-MF (Rendle et al., UAI 2009), as used by UCLR for single-domain baselines and for the
pretrained global embedding (UCLR Eq. 2): ``r_ij = E_i^T I_j``, loss
``-log sigmoid(r_ij - r_ik) + lambda_U ||E_i||^2 + lambda_V (||I_j||^2 + ||I_k||^2)`` over sampled
triples (the regularisation is applied to the embeddings of the batch)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cdrec.config import bounded, check_ranges
from cdrec.data.splits import Split
from cdrec.models.base import RankingModel
from cdrec.models.registry import register


@dataclass
class BPRMFParams:
    """Embedding size and L2 weight (UCLR section 4.1: m = 128, lambda_U = lambda_V = 1e-5)."""

    dim: int = bounded(128, 1)
    reg: float = bounded(1e-5, 0)
    init_std: float = bounded(0.1, 0, lo_open=True)

    def __post_init__(self) -> None:
        check_ranges(self, "model_params (bprmf)")


@register("bprmf", family="cf", params=BPRMFParams)
class BPRMF(RankingModel):
    """Matrix factorisation trained with the BPR pairwise loss."""

    def __init__(self, n_users: int, n_items: int, params: BPRMFParams) -> None:
        super().__init__()
        self.params = params
        self.user_emb = nn.Embedding(n_users, params.dim)
        self.item_emb = nn.Embedding(n_items, params.dim)
        nn.init.normal_(self.user_emb.weight, std=params.init_std)
        nn.init.normal_(self.item_emb.weight, std=params.init_std)

    @classmethod
    def from_split(cls, split: Split, params: BPRMFParams) -> "BPRMF":
        return cls(split.data.n_users, split.data.n_items, params)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        u = self.user_emb(batch["user"])
        i = self.item_emb(batch["pos"])
        j = self.item_emb(batch["neg"])
        diff = (u * (i - j)).sum(-1)
        reg = self.params.reg * (u.pow(2).sum(-1) + i.pow(2).sum(-1) + j.pow(2).sum(-1)).mean()
        return -F.logsigmoid(diff).mean() + reg

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nd,ncd->nc", self.user_emb(users), self.item_emb(items))

    def score_all(self, users: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return self.user_emb(users) @ self.item_emb.weight[start:stop].T
