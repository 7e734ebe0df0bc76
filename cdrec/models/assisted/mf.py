"""Matrix factorisation (Rendle et al. 2020, the MF of the AAE/DMTCDR tables): embedding size 128,
``r_hat = <p_u, q_i> + b_u + b_i + b_g`` (one global bias per organization head for MTCDR)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cdrec.config import ModelParams, bounded
from cdrec.models.assisted.blocks import PairModel
from cdrec.models.registry import register


@dataclass
class MFParams(ModelParams):
    dim: int = bounded(128, 1)


@register("assisted-mf", family="assisted", params=MFParams)
class MF(PairModel):
    row_tables = ("row_emb", "row_bias")

    def __init__(self, n_rows: int, n_cols: int, params: MFParams, *, n_groups: int = 1, d_row_side: int = 0, d_col_side: int = 0) -> None:
        super().__init__(n_rows, n_cols, params.dim, d_row_side=d_row_side, d_col_side=d_col_side)
        self.row_bias = nn.Embedding(n_rows, 1)
        self.col_bias = nn.Embedding(n_cols, 1)
        nn.init.zeros_(self.row_bias.weight)
        nn.init.zeros_(self.col_bias.weight)
        self.group_bias = nn.Parameter(torch.zeros(n_groups))

    def init_output_bias(self, value: float) -> None:
        with torch.no_grad():
            self.group_bias.fill_(value)

    def forward(
        self, rows: torch.Tensor, cols: torch.Tensor, groups: torch.Tensor,
        row_side: torch.Tensor | None = None, col_side: torch.Tensor | None = None,
    ) -> torch.Tensor:
        u, v = self.embed(rows, cols, row_side, col_side)
        return (u * v).sum(-1) + self.row_bias(rows).squeeze(-1) + self.col_bias(cols).squeeze(-1) + self.group_bias[groups]
