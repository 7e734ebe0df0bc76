"""Neural collaborative filtering / NeuMF (He et al. 2017, the NCF of the AAE/DMTCDR tables): a GMF
branch (embedding 128, element-wise product) and an MLP branch (``[128, 64, 32, 16]``) whose last
layers are concatenated into a linear output; per-organization output heads give MTCDR."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cdrec.config import ModelParams, bounded
from cdrec.models.assisted.blocks import PairModel, mlp
from cdrec.models.registry import register


@dataclass
class NCFParams(ModelParams):
    dim: int = bounded(128, 1)
    layers: list[int] = bounded(lo=1, default_factory=lambda: [128, 64, 32, 16])


@register("assisted-ncf", family="assisted", params=NCFParams)
class NCF(PairModel):
    row_tables = ("row_emb", "mlp_row")

    def __init__(self, n_rows: int, n_cols: int, params: NCFParams, *, n_groups: int = 1, d_row_side: int = 0, d_col_side: int = 0) -> None:
        super().__init__(n_rows, n_cols, params.dim, d_row_side=d_row_side, d_col_side=d_col_side)
        half = params.layers[0] // 2
        self.mlp_row = nn.Embedding(n_rows, half)
        self.mlp_col = nn.Embedding(n_cols, half)
        nn.init.normal_(self.mlp_row.weight, std=0.01)
        nn.init.normal_(self.mlp_col.weight, std=0.01)
        self.mlp_side_row = nn.Linear(d_row_side, half, bias=False) if d_row_side else None
        self.mlp_side_col = nn.Linear(d_col_side, half, bias=False) if d_col_side else None
        self.tower = mlp(list(params.layers))
        self.heads = nn.ModuleList([nn.Linear(params.dim + params.layers[-1], 1) for _ in range(n_groups)])

    def init_output_bias(self, value: float) -> None:
        with torch.no_grad():
            for head in self.heads:
                head.bias.fill_(value)

    def forward(
        self, rows: torch.Tensor, cols: torch.Tensor, groups: torch.Tensor,
        row_side: torch.Tensor | None = None, col_side: torch.Tensor | None = None,
    ) -> torch.Tensor:
        u, v = self.embed(rows, cols, row_side, col_side)
        a, b = self.mlp_row(rows), self.mlp_col(cols)
        if self.mlp_side_row is not None and row_side is not None:
            a = a + self.mlp_side_row(row_side)
        if self.mlp_side_col is not None and col_side is not None:
            b = b + self.mlp_side_col(col_side)
        x = torch.cat([u * v, self.tower(torch.cat([a, b], -1))], -1)
        if len(self.heads) == 1:
            return self.heads[0](x).squeeze(-1)
        w = torch.stack([h.weight.squeeze(0) for h in self.heads])[groups]
        bias = torch.cat([h.bias for h in self.heads])[groups]
        return (x * w).sum(-1) + bias
