"""CD-SASRec (Alharbi & Caragea, "Cross-domain self-attentive sequential recommendations", ICDSA
2021, Springer 2022; MERIT's reference [2]): an ST-CDSR baseline of MERIT's Table 2. "It leverages
self-attention to encode source-domain sequences and integrates the aggregated representation into
encoding target-domain sequences" (MERIT 5.2).

The paper's text is not in ``/work/shared/papers`` and no public code of it was found, so the model
below is written from MERIT's description; the choices are ours and named here.

Scope (MERIT 5.2, ST-CDSR). One model per target domain D (``single_target``), trained on the mixed
sequence (``mixed_input``) with the loss on the positions whose next event lies in D only, and
evaluated on D's rows of the mixed leave-one-out; the other domain is the source S. Exactly two
domains.

Source representation (``source``). At every slot j of the mixed window, ``s_j`` aggregates the
source events at or before j (causal: no later event is read):

* ``sequence`` (default): a SASRec encoder (:class:`~cdrec.models.sequential.sasrec.SequenceEncoder`,
  its own item embeddings and layers) over the S stream (the mixed window with D's slots empty);
  ``s_j`` is its output at the latest S event at or before j;
* ``items``: the mean of the embeddings of the S items at or before j (no encoder).

``s_j`` is zero before the first source event.

Fusion into the target encoding. The target SASRec encoder reads the D stream with input
``E_item + W s_j + E_pos`` at each D slot j (``W`` a linear map, the "integration" of the aggregated
source representation into the target sequence's encoding). The prediction at mixed position i is
the encoder's output at the latest D event at or before i; with no D event yet, ``W s_i`` (so a user
new to D is ranked from the source alone). An item's score is ``<h, e_item>``; the loss is SASRec's
(sampled InfoNCE with negatives from D, or ``loss: full``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cdrec.config import require_choice
from cdrec.models import registry
from cdrec.models.registry import register
from cdrec.models.sequential.abxi import latest_at_or_before
from cdrec.models.sequential.base import SequentialModel
from cdrec.models.sequential.sasrec import SASRecParams, SequenceEncoder, check_params

SOURCES = ("sequence", "items")


@dataclass
class CDSASRecParams(SASRecParams):
    """SASRec's sizes, loss and schedule, plus ``source``: how the source domain is aggregated
    (``sequence``: a SASRec encoder over the source events; ``items``: the mean of their embeddings)."""

    source: str = "sequence"


def cumulative_mean(vectors: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``vectors [B, L, d]`` over the ``valid`` slots at or before each position (zero before the first)."""
    total = (vectors * valid[..., None]).cumsum(dim=1)
    count = valid.long().cumsum(dim=1)
    return total / count.clamp(min=1)[..., None]


class TargetDomainModel(SequentialModel):
    """Base of the ST-CDSR models (CD-SASRec, CD-ASR): one model per target domain on the mixed
    sequence, exactly two domains, a SASRec ``encoder`` whose item table scores the candidates.
    Subclasses give ``represent``: ``h`` at every mixed position for predicting an item of a domain."""

    single_target = True
    mixed_input = True

    def __init__(self, n_items: int, item_offsets: np.ndarray, params: SASRecParams) -> None:
        registry.get(self.registry_name).require_domains(len(item_offsets) - 1)
        check_params(params)
        super().__init__(n_items, item_offsets, params)
        self.encoder = SequenceEncoder(n_items + 1, params, causal=True)

    def represent(self, items: torch.Tensor, domains: torch.Tensor, target: int) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} must implement represent")

    def target_stream(self, items: torch.Tensor, domains: torch.Tensor, target: int, extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The target SASRec over the ``target`` domain's stream (input vectors plus ``extra`` at its
        slots): its output at the latest target event at or before each position (zero before the
        first) and whether there is one (``[B, L, d]``, ``[B, L]``)."""
        own = domains == target
        vectors = self.encoder.item_emb(items * own)
        h = self.encoder.encode(vectors if extra is None else vectors + extra, own)
        return latest_at_or_before(h, own), own.long().cummax(dim=1).values.bool()

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """SASRec's loss on the positions with a target (only the model's domain has any in its scope)."""
        items, domains, targets = batch["items"], batch["domains"], batch["targets"]
        tdom = self.item_domain(targets)
        present = [d for d in range(self.n_domains) if bool((tdom == d).any())]
        h = self.encoder.item_emb.weight.new_zeros(*items.shape, self.params.dim)
        for d in present:
            h = torch.where((tdom == d)[..., None], self.represent(items, domains, d), h)
        seen = torch.cat([items, targets], dim=1)
        return self.domain_loss(h, targets, seen, self.encoder.item_emb, present)

    def final(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``h`` after the latest event for each row's ``target_domain`` (``[n, d]``)."""
        items, domains, target = batch["items"], batch["domains"], batch["target_domain"]
        h = self.encoder.item_emb.weight.new_zeros(len(items), self.params.dim)
        for d in range(self.n_domains):
            rows = target == d
            if bool(rows.any()):
                h = torch.where(rows[:, None], self.represent(items, domains, d)[:, -1], h)
        return h

    def score(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.einsum("nd,ncd->nc", self.final(batch), self.encoder.item_emb(batch["candidates"]))


def source_slots(domains: torch.Tensor, target: int) -> torch.Tensor:
    """The source domain's slots (every event not of ``target``)."""
    return (domains >= 0) & (domains != target)


@register("cd-sasrec", family="sequential", params=CDSASRecParams, min_domains=2, max_domains=2,
          needs="a source domain whose representation is transferred to the target domain")
class CDSASRec(TargetDomainModel):
    """Target-domain SASRec whose inputs carry the aggregated source-domain representation."""

    def __init__(self, n_items: int, item_offsets: np.ndarray, params: CDSASRecParams) -> None:
        require_choice(params, "source", SOURCES)
        super().__init__(n_items, item_offsets, params)
        self.source_encoder = SequenceEncoder(n_items + 1, params, causal=True) if params.source == "sequence" else None
        self.fuse = nn.Linear(params.dim, params.dim)

    def source_summary(self, items: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """``W s_j`` at every slot (``[B, L, d]``, zero before the first source event)."""
        if self.source_encoder is not None:
            s = latest_at_or_before(self.source_encoder(items * source), source)
        else:
            s = cumulative_mean(self.encoder.item_emb(items), source)
        seen = source.long().cummax(dim=1).values.bool()
        return self.fuse(s) * seen[..., None]

    def represent(self, items: torch.Tensor, domains: torch.Tensor, target: int) -> torch.Tensor:
        """``h`` at every mixed position for predicting an item of domain ``target`` (``[B, L, d]``)."""
        transferred = self.source_summary(items, source_slots(domains, target))
        h, has_own = self.target_stream(items, domains, target, transferred)
        return torch.where(has_own[..., None], h, transferred)


__all__ = ["CDSASRec", "CDSASRecParams", "TargetDomainModel", "cumulative_mean", "source_slots"]
