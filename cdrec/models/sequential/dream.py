"""DREAM (Ye, Li, Yao: "DREAM: Decoupled Representation via Extraction Attention Module and
Supervised Contrastive Learning for Cross-Domain Sequential Recommender", RecSys 2023), a DT-CDSR
baseline of MERIT's Table 2 (section 5.2: DREAM "extracts specific-domain sequential
representations and adaptively injects them into cross-domain sequential modeling"). Reads top to
bottom like the method: decoupled encoders, the extraction attention module (EAM), the dual-target
prediction and the two losses.

Only DREAM's abstract and MERIT's one-line summary could be read here (no full text, no public code
was found), so equation numbers are not cited and every detail below that the abstract leaves open
is a choice, named as such, with the other reading as an option where it is a real alternative.

Inputs. Three streams over one item table: the mixed (cross-domain) sequence X and the two domain
sequences A, B aligned to it (the mixed window with the other domain's slots empty, as MERIT,
ABXI and C2DSR here). ``E_S = Dropout(LayerNorm(E_item + E_pos))`` with learned positions counted
backwards within the stream (1 = the stream's latest event).

Decoupled encoders. Each stream has its own stack of ``n_layers`` causal Transformer layers
(post-norm self-attention + GELU feed-forward, padding masked): ``H_X``, ``H_A``, ``H_B``. The
domain-specific representations never see the other domain (decoupled); X sees both.

Extraction attention module. ``extraction=inject`` (default, MERIT's summary): the cross-domain
stream queries the concatenation of the two domain-specific ones, causally in both parts (MERIT
Fig. 6's cloned mask), so the attention weights decide how much of each domain is injected:
``C = FFN(LayerNorm(H_X + Dropout(MHA(H_X, [H_A; H_B]))))``, and the domain parts are
``S_D = H_D``. ``extraction=extract`` (the other reading of "extraction"): each domain stream
queries the cross-domain one, ``S_D = FFN(LayerNorm(H_D + Dropout(MHA(H_D, H_X))))``, and
``C = H_X``.

Prediction. A target of domain D at mixed position i is scored with
``h_i = C_i + S_D[latest D slot at or before i]`` (zero when D has no event yet; the alignment of
:func:`~cdrec.models.sequential.abxi.latest_at_or_before`), ``score = <h_i, e_item>`` with the
input item table (choice: the sum; the decoupled representations enter both the prediction and
the contrastive loss).

Losses. ``L = L_rec + cl_weight * L_scl``. ``L_rec``: per target domain, InfoNCE with ``n_negatives``
negatives from that domain at every position whose target lies there (cdrec's dual-target loss,
:meth:`~cdrec.models.sequential.base.SequentialModel.domain_loss`; ``loss=full``: softmax over all
items). ``L_scl``: supervised contrastive learning (SupCon, Khosla et al. 2020) over the batch at
each window's latest prediction; every sequence gives two views, its cross-domain ``C`` and its
domain-specific ``S_D`` for the target's domain D, L2-normalized; the label is the target item, so
positives of an anchor are its other view and every view of another sequence with the same next
item (the "supervised" part: inter-sequence relations), all other views are negatives, temperature
``cl_temperature``. Choices: the latest position only (all positions would cost ``(B L)^2``
similarities), in-batch negatives, views without any event of the target's domain left out.

Defaults: the paper's are not known here; MERIT aligns unmentioned hyperparameters with ABXI, so
d=256, 2 heads, dropout 0.5, 128 negatives per domain, tau=0.75, and the ABXI/MERIT schedule; one
layer per encoder (choice; ``n_layers``), embeddings N(0, ``init_std``) as cdrec's SASRec.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cdrec.config import bounded
from cdrec.errors import require
from cdrec.models import registry
from cdrec.models.registry import register
from cdrec.models.sequential.abxi import NEGATIVES, latest_at_or_before
from cdrec.models.sequential.base import SequentialModel, last_valid_index
from cdrec.models.sequential.blocks import (
    AttentionBlock,
    FFNBlock,
    PointwiseFFN,
    TransformerLayer,
    attention_mask,
    extended_causal_mask,
    reversed_positions,
)
from cdrec.models.sequential.sasrec import SASRecParams, check_params

EXTRACTIONS = ("inject", "extract")
STREAMS = ("X", "A", "B")


@dataclass
class DREAMParams(SASRecParams):
    """SASRec's sizes, loss and schedule plus (defaults: see the module docstring):

    * ``n_layers``: Transformer layers of each stream's encoder (X, A, B each their own); 1 here.
    * ``inner_size``: width of every feed-forward (encoders and EAM); 0 = ``4 d``.
    * ``extraction``: ``inject`` = X attends to [A; B] (MERIT's summary of DREAM); ``extract`` =
      A and B each attend to X.
    * ``negatives``: ``sequence`` = drawn once per sequence; ``position`` = per target position.
    * ``cl_weight``: weight of the supervised contrastive loss (0 = off); ``cl_temperature`` its
      temperature.
    """

    n_layers: int = bounded(1, 1)
    extraction: str = "inject"
    negatives: str = "sequence"
    cl_weight: float = bounded(0.1, 0)
    cl_temperature: float = bounded(0.1, 0, lo_open=True)


@register("dream", family="sequential", params=DREAMParams, min_domains=2, max_domains=2,
          needs="the mixed sequence and one sequence per domain, A and B")
class DREAM(SequentialModel):
    """Decoupled X / A / B encoders, the extraction attention module, dual-target InfoNCE + SupCon."""

    def __init__(self, n_items: int, item_offsets: np.ndarray, params: DREAMParams) -> None:
        registry.get("dream").require_domains(len(item_offsets) - 1)
        p = params
        check_params(p)
        require(p.negatives in NEGATIVES, f"model_params.negatives: expected one of {NEGATIVES}, got {p.negatives!r}")
        require(p.extraction in EXTRACTIONS, f"model_params.extraction: expected one of {EXTRACTIONS}, got {p.extraction!r}")
        super().__init__(n_items, item_offsets, params)
        d, inner = p.dim, p.inner_size or 4 * p.dim
        # inputs: one item table and one positional table for the three streams
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(p.max_len + 1, d, padding_idx=0)
        self.input_norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(p.dropout)
        # decoupled encoders: one causal stack per stream
        self.encoders = nn.ModuleDict(
            {s: nn.ModuleList(TransformerLayer(d, p.n_heads, inner, p.dropout) for _ in range(p.n_layers)) for s in STREAMS}
        )
        # extraction attention: one module (X queries A, B) or one per domain (A, B query X)
        n_modules = 1 if p.extraction == "inject" else 2
        self.eam_attn = nn.ModuleList(AttentionBlock(d, p.n_heads, p.dropout) for _ in range(n_modules))
        self.eam_ffn = nn.ModuleList(FFNBlock(d, p.dropout, PointwiseFFN(d, inner, p.dropout)) for _ in range(n_modules))
        for emb in (self.item_emb, self.pos_emb):  # SASRec's init; the layers keep torch's
            nn.init.normal_(emb.weight, std=p.init_std)
            with torch.no_grad():
                emb.weight[0].zero_()

    # ------------------------------------------------------------------ decoupled encoders
    def encode(self, items: torch.Tensor, domains: torch.Tensor) -> dict[str, torch.Tensor]:
        """``H_X, H_A, H_B`` (``[B, L, d]``, zero at the stream's empty slots)."""
        valid = {"X": items > 0, "A": domains == 0, "B": domains == 1}
        e = self.item_emb(items)
        out = {}
        for s in STREAMS:
            v = valid[s]
            pos = self.pos_emb(reversed_positions(v).clamp(max=self.params.max_len))
            h = self.drop(self.input_norm(e + pos)) * v[..., None]
            mask = attention_mask(v, causal=True)
            for layer in self.encoders[s]:
                h = layer(h, mask, v)
            out[s] = h
        return out

    # ------------------------------------------------------------------ extraction attention
    def views(self, items: torch.Tensor, domains: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """The cross-domain representation ``C [B, L, d]``, per domain D the domain-specific one
        aligned to the mixed positions (``S_D`` at D's latest slot at or before each position) and
        whether D has such a slot (``[B, L]``)."""
        h = self.encode(items, domains)
        mixed = items > 0
        own = [domains == d for d in range(2)]
        if self.params.extraction == "inject":
            # a padded query sees every key (its output is dropped): no row without a key
            mask = extended_causal_mask(own, self_visible=None) | ~mixed[:, None, :, None]
            attended = self.eam_attn[0](h["X"], torch.cat([h["A"], h["B"]], 1), mask, mixed, torch.cat(own, 1))
            cross, specific = self.eam_ffn[0](attended, mixed), [h["A"], h["B"]]
        else:
            mask = attention_mask(mixed, causal=True)  # a D slot is also a mixed slot: never empty
            cross = h["X"]
            specific = [self.eam_ffn[d](self.eam_attn[d](h[s], h["X"], mask, own[d], mixed), own[d]) for d, s in enumerate("AB")]
        aligned = [latest_at_or_before(x, v) for x, v in zip(specific, own)]
        return cross, aligned, [v.cumsum(1) > 0 for v in own]

    @staticmethod
    def combine(cross: torch.Tensor, aligned: list[torch.Tensor], target_domain: torch.Tensor) -> torch.Tensor:
        """``h = C + S_D`` at the positions whose target lies in domain D (``target_domain [B, L]``,
        -1 = no prediction there: zero)."""
        out = cross * (target_domain >= 0)[..., None]
        for d, s in enumerate(aligned):
            out = out + s * (target_domain == d)[..., None]
        return out

    def represent(self, items: torch.Tensor, domains: torch.Tensor, target_domain: torch.Tensor) -> torch.Tensor:
        cross, aligned, _ = self.views(items, domains)
        return self.combine(cross, aligned, target_domain)

    # ------------------------------------------------------------------ training
    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        terms = self.loss_terms(batch)
        return terms["rec"] + self.params.cl_weight * terms["scl"]

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"rec": L_rec, "scl": L_scl}`` (``scl`` is zero with ``cl_weight=0``, not computed)."""
        items, targets = batch["items"], batch["targets"]
        tdom = self.item_domain(targets)
        cross, aligned, has = self.views(items, batch["domains"])
        h = self.combine(cross, aligned, tdom)
        seen = torch.cat([items, targets], dim=1)
        rec = self.domain_loss(h, targets, seen, self.item_emb, per_position=self.params.negatives == "position")
        scl = self.supervised_contrastive(cross, aligned, has, targets, tdom) if self.params.cl_weight > 0 else h.new_zeros(())
        return {"rec": rec, "scl": scl}

    def supervised_contrastive(
        self, cross: torch.Tensor, aligned: list[torch.Tensor], has: list[torch.Tensor], targets: torch.Tensor, tdom: torch.Tensor
    ) -> torch.Tensor:
        """SupCon over the two views (``C`` and ``S_D``) of each window's latest prediction, labelled
        with its target item."""
        idx, any_target = last_valid_index(targets > 0)
        rows = torch.arange(len(targets), device=targets.device)
        dom = tdom[rows, idx].clamp(min=0)
        specific = torch.stack(aligned)[dom, rows, idx]
        has_specific = torch.stack(has)[dom, rows, idx]
        z = torch.cat([cross[rows, idx], specific])
        labels = targets[rows, idx].repeat(2)
        keep = torch.cat([any_target, any_target & has_specific])
        return supcon_loss(F.normalize(z[keep], dim=-1), labels[keep], self.params.cl_temperature)

    # ------------------------------------------------------------------ evaluation
    def final_for_target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``h`` at the latest slot for the row's target domain (``[n, d]``)."""
        items = batch["items"]
        where = torch.full_like(items, -1)
        where[:, -1] = batch["target_domain"]
        return self.represent(items, batch["domains"], where)[:, -1]

    def score(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.final_for_target(batch)
        return torch.einsum("nd,ncd->nc", h, self.item_emb(batch["candidates"]))


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L_out) of L2-normalized ``z [n, d]``: for
    each anchor, minus the mean log-softmax (over all other rows) of the rows with its label;
    averaged over the anchors that have any such row (zero when none has)."""
    n = len(z)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    positive = (labels[:, None] == labels[None, :]) & ~eye
    anchors = positive.any(1)
    if n < 2 or not bool(anchors.any()):
        return z.sum() * 0.0
    logits = (z @ z.T / temperature).masked_fill(eye, float("-inf"))
    log_prob = logits - logits.logsumexp(1, keepdim=True)
    per_anchor = -log_prob.masked_fill(~positive, 0.0).sum(1) / positive.sum(1).clamp(min=1)
    return per_anchor[anchors].mean()
