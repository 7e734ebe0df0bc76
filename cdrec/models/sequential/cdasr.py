"""CD-ASR (Alharbi & Caragea, "Cross-domain attentive sequential recommendations based on general
and current user preferences (CD-ASR)", WI-IAT 2021; MERIT's reference [1]): an ST-CDSR baseline of
MERIT's Table 2. It "aggregates source and target domain sequential dynamics using multiplicative
attention and self-attention, respectively, to generate the final representation" (MERIT 5.2).

The paper's text is not in ``/work/shared/papers`` and no public code of it was found, so the model
below is written from MERIT's description and the paper's title; the choices are ours and named here.

Scope: as CD-SASRec (:mod:`cdrec.models.sequential.cdsasrec`): one model per target domain D on the
mixed sequence, the loss on the positions whose next event lies in D, evaluated on D's rows; the
other domain is the source S.

* Current preference (target, self-attention): a causal SASRec encoder over the D stream; ``c_i`` is
  its output at the latest D event at or before mixed position i (zero before the first).
* General preference (source, multiplicative attention): Luong's bilinear attention of ``c_i`` over
  the embeddings ``e_j`` of the S items at or before i: ``a_ij = softmax_j(c_i^T W_a e_j)``,
  ``g_i = sum_j a_ij e_j`` (zero before the first S event; with no D event yet ``c_i = 0`` and the
  weights are uniform: the mean of the source items so far).
* Final representation: ``h_i = W_o [c_i ; g_i] + b_o``; an item's score is ``<h_i, e_item>`` and
  the loss is SASRec's (sampled InfoNCE with negatives from D, or ``loss: full``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cdrec.models.registry import register
from cdrec.models.sequential.blocks import causal_mask
from cdrec.models.sequential.cdsasrec import TargetDomainModel, source_slots
from cdrec.models.sequential.sasrec import SASRecParams


@dataclass
class CDASRParams(SASRecParams):
    """SASRec's sizes (of the target encoder), loss and schedule."""


def multiplicative_attention(query: torch.Tensor, keys: torch.Tensor, bilinear: nn.Linear, key_valid: torch.Tensor) -> torch.Tensor:
    """``sum_j softmax_j(q_i^T W k_j) k_j`` over the valid keys at or before each query position
    (``[B, L, d]``; zero where no key is visible)."""
    visible = key_valid[:, None, :] & causal_mask(keys.shape[1], keys.device)[None]
    logits = torch.einsum("bid,bjd->bij", query, bilinear(keys))
    logits = logits.masked_fill(~visible, torch.finfo(logits.dtype).min)
    weights = torch.softmax(logits, dim=-1) * visible
    return weights @ keys


@register("cd-asr", family="sequential", params=CDASRParams, min_domains=2, max_domains=2,
          needs="a source domain whose general preference is attended to by the target domain's current one")
class CDASR(TargetDomainModel):
    """Target-domain self-attention (current preference) + multiplicative attention over the source items (general preference)."""

    def __init__(self, n_items: int, item_offsets: np.ndarray, params: CDASRParams) -> None:
        super().__init__(n_items, item_offsets, params)
        self.bilinear = nn.Linear(params.dim, params.dim, bias=False)
        self.combine = nn.Linear(2 * params.dim, params.dim)

    def represent(self, items: torch.Tensor, domains: torch.Tensor, target: int) -> torch.Tensor:
        """``h_i = W_o [c_i ; g_i]`` at every mixed position for predicting an item of domain ``target``."""
        current, _ = self.target_stream(items, domains, target)
        source = source_slots(domains, target)
        general = multiplicative_attention(current, self.encoder.item_emb(items * source), self.bilinear, source)
        return self.combine(torch.cat([current, general], dim=-1))


__all__ = ["CDASR", "CDASRParams", "multiplicative_attention"]
