"""PLE (Tang et al., RecSys 2020): progressive layered extraction with customized gate control.

Each level has ``n_shared`` shared experts and ``n_specific`` experts per head; a head's gate mixes
its own and the shared experts; below the last level a shared gate mixes all experts to give the
next level's shared input. Heads are (domain, task) objectives (M3oE Table 2, PLE-*)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cdrec.config import bounded
from cdrec.models.ctr.layers import CTRModel, CTRParams, CTRSchema, ExpertBank, Gates, Towers, mix, own_domain
from cdrec.models.registry import register


@dataclass
class PLEParams(CTRParams):
    n_levels: int = bounded(2, 1)
    n_shared: int = bounded(2, 1)
    n_specific: int = bounded(1, 1)


class CGCLevel(nn.Module):
    """One extraction level: per-head inputs ``[B, G, in]`` and a shared input ``[B, in]``."""

    def __init__(self, n_heads: int, in_dim: int, hidden: int, n_shared: int, n_specific: int, last: bool) -> None:
        super().__init__()
        self.g, self.ns, self.np = n_heads, n_shared, n_specific
        self.specific = ExpertBank(n_heads * n_specific, in_dim, hidden)
        self.shared = ExpertBank(n_shared, in_dim, hidden)
        self.head_gates = Gates(n_heads, in_dim, n_specific + n_shared)
        self.shared_gate = None if last else Gates(1, in_dim, n_heads * n_specific + n_shared)

    def forward(self, heads: torch.Tensor, shared_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``heads`` is ``[B, G, in]`` or ``[B, in]`` when every head has the same input (first level)."""
        b = heads.shape[0]
        spec = self.specific(heads if heads.dim() == 2 else heads.repeat_interleave(self.np, dim=1))  # [B, G*np, H]
        shared = self.shared(shared_in)  # [B, ns, H]
        gates = self.head_gates(heads)  # [B, G, np + ns]
        out = (gates[..., : self.np].unsqueeze(-1) * spec.view(b, self.g, self.np, -1)).sum(2)
        out = out + mix(gates[..., self.np :], shared)
        if self.shared_gate is None:
            return out, None
        shared_out = mix(self.shared_gate(shared_in), torch.cat([spec, shared], dim=1))[:, 0]
        return out, shared_out


@register("ple", family="ctr", params=PLEParams)
class PLE(CTRModel):
    def __init__(self, schema: CTRSchema, params: PLEParams) -> None:
        super().__init__(schema, params)
        g = self.n_domains * self.n_tasks
        dims = [self.in_dim] + [params.hidden] * params.n_levels
        self.levels = nn.ModuleList(
            CGCLevel(g, dims[i], params.hidden, params.n_shared, params.n_specific, last=i == params.n_levels - 1)
            for i in range(params.n_levels)
        )
        self.towers = Towers(self.n_domains, self.n_tasks, params.hidden, params.tower_hidden)

    def logits(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        heads, shared = x, x
        for level in self.levels:
            heads, shared = level(heads, shared)
        return self.towers(own_domain(heads.view(x.shape[0], self.n_domains, self.n_tasks, -1), domain), domain)
