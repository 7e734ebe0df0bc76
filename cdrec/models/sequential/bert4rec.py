"""BERT4Rec (Sun et al., CIKM 2019) as used by MERIT (section 5.2): a bidirectional Transformer
trained with the Cloze objective — a fraction ``mask_prob`` of the events of each training window
is replaced by a ``[mask]`` token and predicted from both sides. At evaluation the history is
followed by one ``[mask]`` token whose representation scores the candidates. ``bert4rec-st``
trains one model per domain; ``bert4rec-dt`` trains on the mixed sequence with one loss per
domain of the masked item (negatives from that domain), summed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cdrec.config import bounded
from cdrec.models.registry import register
from cdrec.models.sequential.base import SequentialModel
from cdrec.models.sequential.sasrec import SASRecParams, SequenceEncoder, check_params


@dataclass
class BERT4RecParams(SASRecParams):
    """SASRec's sizes plus the Cloze masking probability."""

    mask_prob: float = bounded(0.2, 0, 1, lo_open=True, hi_open=True)


class BERT4Rec(SequentialModel):
    cloze = True

    def __init__(self, n_items: int, item_offsets: np.ndarray, params: BERT4RecParams) -> None:
        check_params(params)
        super().__init__(n_items, item_offsets, params)
        self.mask_token = n_items + 1
        self.encoder = SequenceEncoder(n_items + 2, params, causal=False)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items = batch["items"]
        valid = items > 0
        masked = valid & (torch.rand(items.shape, device=items.device) < self.params.mask_prob)
        # every window predicts at least its latest event (the evaluation situation)
        last = torch.zeros_like(masked)
        last[:, -1] = valid[:, -1]
        masked = masked | last
        inputs = torch.where(masked, torch.full_like(items, self.mask_token), items)
        targets = torch.where(masked, items, torch.zeros_like(items))
        h = self.encoder(inputs)
        return self.domain_loss(h, targets, items, self.encoder.item_emb)

    def _last(self, items: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([items[:, 1:], torch.full_like(items[:, :1], self.mask_token)], dim=1)
        return self.encoder(inputs)[:, -1]

    def score(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.einsum("nd,ncd->nc", self._last(batch["items"]), self.encoder.item_emb(batch["candidates"]))


@register("bert4rec-dt", family="sequential", params=BERT4RecParams)
class BERT4RecDT(BERT4Rec):
    """BERT4Rec on the mixed-domain sequence, per-domain losses summed."""


@register("bert4rec-st", family="sequential", params=BERT4RecParams)
class BERT4RecST(BERT4Rec):
    """BERT4Rec trained separately on each domain's own sequence."""

    single_target = True
