"""MLP collaborative filtering (He et al. 2017, the MLP of the AAE/DMTCDR tables): the concatenated
embeddings (2 x 64) go through layers ``[128, 64, 32, 16]`` (ReLU) and a linear output. With
``n_groups > 1`` every organization has its own tower over the shared embeddings (MTCDR)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cdrec.config import ModelParams, bounded
from cdrec.models.assisted.blocks import PairModel, mlp
from cdrec.models.registry import register


@dataclass
class MLPParams(ModelParams):
    layers: list[int] = bounded(lo=1, default_factory=lambda: [128, 64, 32, 16])


class Towers(nn.Module):
    """One MLP tower + linear output per group; rows of a batch use their group's tower."""

    def __init__(self, sizes: list[int], n_groups: int) -> None:
        super().__init__()
        self.towers = nn.ModuleList([nn.Sequential(mlp(sizes), nn.Linear(sizes[-1], 1)) for _ in range(n_groups)])

    def forward(self, x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        if len(self.towers) == 1:
            return self.towers[0](x).squeeze(-1)
        out = x.new_empty(len(x))
        for g, tower in enumerate(self.towers):
            mask = groups == g
            if bool(mask.any()):
                out[mask] = tower(x[mask]).squeeze(-1)
        return out


@register("assisted-mlp", family="assisted", params=MLPParams)
class MLP(PairModel):
    def __init__(self, n_rows: int, n_cols: int, params: MLPParams, *, n_groups: int = 1, d_row_side: int = 0, d_col_side: int = 0) -> None:
        super().__init__(n_rows, n_cols, params.layers[0] // 2, d_row_side=d_row_side, d_col_side=d_col_side)
        self.towers = Towers(list(params.layers), n_groups)

    def init_output_bias(self, value: float) -> None:
        with torch.no_grad():
            for tower in self.towers.towers:
                tower[-1].bias.fill_(value)

    def forward(
        self, rows: torch.Tensor, cols: torch.Tensor, groups: torch.Tensor,
        row_side: torch.Tensor | None = None, col_side: torch.Tensor | None = None,
    ) -> torch.Tensor:
        u, v = self.embed(rows, cols, row_side, col_side)
        return self.towers(torch.cat([u, v], -1), groups)
