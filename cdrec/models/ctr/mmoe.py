"""MMoE (Ma et al., KDD 2018): ``N`` shared experts and one softmax gate per head.

A head is a (domain, task) objective: with ``D`` domains and ``T`` tasks there are ``D x T`` gates
and towers, so the same model covers the MTL, MDL and MDMT modes of M3oE Table 2."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cdrec.config import bounded
from cdrec.models.ctr.layers import CTRModel, CTRParams, CTRSchema, ExpertBank, Gates, Towers, mix, own_domain
from cdrec.models.registry import register


@dataclass
class MMoEParams(CTRParams):
    n_experts: int = bounded(4, 1)


@register("mmoe", family="ctr", params=MMoEParams)
class MMoE(CTRModel):
    def __init__(self, schema: CTRSchema, params: MMoEParams) -> None:
        super().__init__(schema, params)
        self.experts = ExpertBank(params.n_experts, self.in_dim, params.hidden)
        self.gates = Gates(self.n_domains * self.n_tasks, self.in_dim, params.n_experts)
        self.towers = Towers(self.n_domains, self.n_tasks, params.hidden, params.tower_hidden)

    def logits(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        mixed = mix(self.gates(x), self.experts(x)).view(x.shape[0], self.n_domains, self.n_tasks, -1)
        return self.towers(own_domain(mixed, domain), domain)
