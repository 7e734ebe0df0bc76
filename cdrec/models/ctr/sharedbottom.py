"""Shared-Bottom (Caruana 1997): one bottom network shared by every head, one tower per head.

In the MTL mode the bottom is shared by the tasks of one domain, in MDL by the domains of one
task, in MDMT by all (domain, task) heads (M3oE Table 2, ShBot-*)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cdrec.models.ctr.layers import CTRModel, CTRParams, CTRSchema, ExpertBank, Towers
from cdrec.models.registry import register


@dataclass
class SharedBottomParams(CTRParams):
    pass


@register("sharedbottom", family="ctr", params=SharedBottomParams)
class SharedBottom(CTRModel):
    def __init__(self, schema: CTRSchema, params: SharedBottomParams) -> None:
        super().__init__(schema, params)
        self.bottom = ExpertBank(1, self.in_dim, params.hidden)
        self.towers = Towers(self.n_domains, self.n_tasks, params.hidden, params.tower_hidden)

    def logits(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        return self.towers(self.bottom(x)[:, 0], domain)
