"""MLP baseline of M3oE Table 2 (a): one network per (domain, task), trained separately.

Each (domain, task) head has its own one-layer expert ``ReLU(LayerNorm(W x + b))`` (M3oE 3.2:
"a linear operation with a ReLU activation function and layer normalization") and its own tower.
It runs in mode ``single`` (the task trains one model per (domain, task) scope)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cdrec.models.ctr.layers import CTRModel, CTRParams, CTRSchema, ExpertBank, Towers, own_domain
from cdrec.models.registry import register


@dataclass
class MLPParams(CTRParams):
    mode: str = "single"


@register("mlp", family="ctr", params=MLPParams)
class MLP(CTRModel):
    modes = ("single",)

    def __init__(self, schema: CTRSchema, params: MLPParams) -> None:
        super().__init__(schema, params)
        self.bottoms = ExpertBank(self.n_domains * self.n_tasks, self.in_dim, params.hidden)
        self.towers = Towers(self.n_domains, self.n_tasks, params.hidden, params.tower_hidden)

    def logits(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        h = self.bottoms(x).view(x.shape[0], self.n_domains, self.n_tasks, -1)
        return self.towers(own_domain(h, domain), domain)
