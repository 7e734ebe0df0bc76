"""AdaTT (Li et al., KDD 2023): adaptive task-to-task fusion network.

Every head (a task, or a (domain, task) objective in the MDMT mode) owns ``n_specific`` experts;
``n_shared`` experts serve all heads. The fusion unit of head ``g`` adds a gated mixture of all
experts (softmax gate on the input) and a learnable linear combination of its native experts (the
residual "self" path): ``f_g = sum_j w_gj(x) E_j(x) + sum_i v_gi E_gi(x)``, followed by head ``g``'s
tower.

``adatt-sp`` is AdaTT without its shared module, as the M3oE paper's section 3.2 defines the
AdaTT-sp baseline: the same network with ``n_shared`` fixed at 0, so the gates mix the heads'
own experts only."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cdrec.config import bounded
from cdrec.models.ctr.layers import CTRModel, CTRParams, CTRSchema, ExpertBank, Gates, Towers, mix, own_domain
from cdrec.models.registry import register


@dataclass
class AdaTTParams(CTRParams):
    mode: str = "mtl"
    n_specific: int = bounded(1, 1)
    n_shared: int = bounded(1, 0)


@dataclass
class AdaTTSpParams(AdaTTParams):
    """AdaTT-sp: no shared experts (``n_shared`` may only be 0)."""

    n_shared: int = bounded(0, 0, 0)


@register("adatt", family="ctr", params=AdaTTParams)
class AdaTT(CTRModel):
    modes = ("mtl", "mdmt")

    def __init__(self, schema: CTRSchema, params: AdaTTParams) -> None:
        super().__init__(schema, params)
        self.g = self.n_domains * self.n_tasks
        self.k = params.n_specific
        n_all = self.g * self.k + params.n_shared
        self.experts = ExpertBank(n_all, self.in_dim, params.hidden)
        self.gates = Gates(self.g, self.in_dim, n_all)
        self.self_weight = nn.Parameter(torch.ones(self.g, self.k))
        self.towers = Towers(self.n_domains, self.n_tasks, params.hidden, params.tower_hidden)

    def logits(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        experts = self.experts(x)  # [B, G*k + ns, H]
        fused = mix(self.gates(x), experts)
        native = experts[:, : self.g * self.k].view(b, self.g, self.k, -1)
        fused = fused + torch.einsum("gk,bgkh->bgh", self.self_weight, native)
        return self.towers(own_domain(fused.view(b, self.n_domains, self.n_tasks, -1), domain), domain)


@register("adatt-sp", family="ctr", params=AdaTTSpParams)
class AdaTTSp(AdaTT):
    """AdaTT-sp (M3oE section 3.2): AdaTT with ``n_shared = 0``."""
