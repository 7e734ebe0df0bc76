"""SASRec (Kang & McAuley, ICDM 2018) as used by MERIT (section 5.2, Fig. 3).

Item embeddings plus learned positional embeddings (counted from the latest event), a stack of
causal self-attention + point-wise feed-forward layers, and the next-item representation at each
position. ``sasrec-st`` is trained per domain on that domain's sequence; ``sasrec-dt`` on the
mixed sequence with one loss per target domain (negatives from that domain), summed. The loss is
InfoNCE with sampled negatives (MERIT Eq. 13) or cross-entropy over all items (``loss: full``,
RecBole's ``CE``). Sizes are configurable for other comparisons (hidden size, layers, heads,
inner size, max_len).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cdrec.config import bounded
from cdrec.errors import require
from cdrec.models.registry import register
from cdrec.models.sequential.base import ScheduleParams, SequentialModel, gather_positions
from cdrec.models.sequential.blocks import TransformerLayer, attention_mask, reversed_positions


@dataclass
class EncoderParams(ScheduleParams):
    """Sizes of :class:`SequenceEncoder` and the schedule (MERIT/ABXI code defaults: d=256, 2 heads,
    dropout 0.5)."""

    dim: int = bounded(256, 1)
    n_layers: int = bounded(2, 1)
    n_heads: int = bounded(2, 1)
    inner_size: int = bounded(0, 0)
    """Feed-forward width; 0 means 4 * dim."""
    dropout: float = bounded(0.5, 0, 1, hi_open=True)
    max_len: int = bounded(50, 2)
    init_std: float = bounded(0.02, 0, lo_open=True)


@dataclass
class SASRecParams(EncoderParams):
    """Encoder sizes, loss and schedule (MERIT/ABXI code defaults: temperature 0.75, 128 negatives)."""

    loss: str = "sampled"
    """``sampled`` (InfoNCE with ``n_negatives`` from the target's domain) or ``full`` (CE over all items)."""
    n_negatives: int = bounded(128, 1)
    temperature: float = bounded(0.75, 0, lo_open=True)


class SequenceEncoder(nn.Module):
    """Embedding + Transformer layers shared by SASRec and BERT4Rec (``causal`` picks the mask)."""

    def __init__(self, n_tokens: int, params: EncoderParams, *, causal: bool) -> None:
        super().__init__()
        p = params
        self.causal = causal
        self.item_emb = nn.Embedding(n_tokens, p.dim, padding_idx=0)
        self.pos_emb = nn.Embedding(p.max_len + 1, p.dim, padding_idx=0)
        self.drop = nn.Dropout(p.dropout)
        self.norm = nn.LayerNorm(p.dim)
        inner = p.inner_size or 4 * p.dim
        self.layers = nn.ModuleList(TransformerLayer(p.dim, p.n_heads, inner, p.dropout) for _ in range(p.n_layers))
        for emb in (self.item_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=p.init_std)
            with torch.no_grad():
                emb.weight[0].zero_()

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.encode(self.item_emb(items), items > 0)

    def encode(self, item_vectors: torch.Tensor, valid: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """The layers on given input vectors ``[B, L, d]`` of the ``valid`` slots (C2DSR feeds its
        graph-enhanced item vectors); ``positions`` default to :func:`reversed_positions`."""
        pos = (reversed_positions(valid) if positions is None else positions).clamp(max=self.pos_emb.num_embeddings - 1)
        h = self.drop(self.norm(item_vectors + self.pos_emb(pos))) * valid[..., None]
        mask = attention_mask(valid, causal=self.causal)
        for layer in self.layers:
            h = layer(h, mask, valid)
        return h


def check_params(p: SASRecParams) -> None:
    require(p.loss in ("sampled", "full"), f"model_params.loss: expected 'sampled' or 'full', got {p.loss!r}")
    require(p.dim % p.n_heads == 0, f"model_params.dim ({p.dim}) must be divisible by n_heads ({p.n_heads})")


class SASRec(SequentialModel):
    """Causal self-attention next-item model (dual-target on the mixed sequence)."""

    def __init__(self, n_items: int, item_offsets: np.ndarray, params: SASRecParams) -> None:
        check_params(params)
        super().__init__(n_items, item_offsets, params)
        self.encoder = SequenceEncoder(n_items + 1, params, causal=True)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items, targets = batch["items"], batch["targets"]
        h = self.encoder(items)
        seen = torch.cat([items, targets], dim=1)
        return self.domain_loss(h, targets, seen, self.encoder.item_emb)

    def score(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.encoder(batch["items"])[:, -1]
        return torch.einsum("nd,ncd->nc", h, self.encoder.item_emb(batch["candidates"]))

    def score_all(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scores of every item (column ``i`` = item ``i``), for full-ranking comparisons."""
        h = self.encoder(batch["items"])[:, -1]
        return h @ self.encoder.item_emb.weight[1 : self.n_items + 1].T


@register("sasrec-dt", family="sequential", params=SASRecParams)
class SASRecDT(SASRec):
    """SASRec on the mixed-domain sequence, per-domain losses summed."""


@register("sasrec-st", family="sequential", params=SASRecParams)
class SASRecST(SASRec):
    """SASRec trained separately on each domain's own sequence."""

    single_target = True


__all__ = ["EncoderParams", "SASRec", "SASRecDT", "SASRecST", "SASRecParams", "SequenceEncoder", "gather_positions"]
