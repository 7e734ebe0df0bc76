"""MERIT (Bian et al., ACM MM 2025): interwoven residual transfer for dual-target cross-domain
sequential recommendation. Reads top to bottom like section 4.

4.2 Inputs. The mixed sequence T_M and the two domain sequences T_A, T_B aligned to it (Fig. 4:
T_A is T_M with B's slots padded). E_X = item embedding + positional embedding of the reversed
in-domain position (1 = the domain's latest event).

4.3 Encoders. One self-attention layer per stream (Eqs. 1-2, causal) and one moFFN per stream
(CGC, Eqs. 3-6): moFFN_M -> H_M, H_M2A, H_M2B; moFFN_A -> H_A, H_A2M, H_A2B; moFFN_B -> H_B,
H_B2M, H_B2A.

4.4 Interwoven transfer. H_2M = H_A2M + H_B2M (Eq. 7, token-wise: each slot holds one of them);
H_2A = Concat(H_M2A, H_B2A), H_2B = Concat(H_M2B, H_A2B) along the length (Eqs. 8-9).
CAF_M(H_M, H_2M) is causal cross-attention (Eq. 10, query H_M), followed by the residual norm
(Eq. 11) and a SwiGLU FFN block (Eq. 12); ECAF_A / ECAF_B use the extended causal mask of Fig. 6
(the causal mask cloned along the key length), so no query sees a future event of either part.

4.5 Training. InfoNCE with sampled negatives (Eq. 13); L_M over T_M with N negatives from each
domain (Eq. 14); L_A over T_A with ``h_A^F + SG(h_M^F)`` (Eq. 15, residual learning on the
stop-gradient mixed representation), L_B likewise; Loss = L_M + L_A + L_B (Eq. 16). A slot of T_A
predicts the next event of domain A (the authors' ``gt_ab``). At evaluation a target in domain A
is scored with h_A^F at the latest A slot plus h_M^F at the latest slot.

Negatives are drawn per sequence and shared by its positions by default (``negatives=sequence``;
the authors draw them per position, ``negatives=position``: the same distribution at each position
for far less memory); negatives the user has seen are dropped from the softmax.

Where the authors' public code (github.com/DiMarzioBian/MERIT, ``models/*.py``, ``trainer.py``)
fixes a detail the paper leaves open, the default follows it (``MERITParams``): no dropout on the
attention probabilities (``attn_dropout``), its weight initialization (``init``), and the loss
normalization of ``cal_rec_loss`` (``loss_norm``). Where its code departs from the paper's text,
the default follows the text and ``authors_code`` switches on the authors' behaviour, one named
switch each (:data:`AUTHORS_CODE`, measured in the recipe's ``switches`` section): attention to
empty slots (no key-padding mask), only h_M^F scored at test time (its swapped domain masks),
gradients summed over the epoch (``zero_grad`` once per epoch), ECAF attending to H_M2A only (its
``attn_mask`` dropped by ``is_causal``) and its swapped positional indices. Not copied: the
``get_absolute_pos_idx`` of a commit after 932ebee, which multiplies the masks in place by the reversed
positions (every layer's output is then scaled by 1..47).

Ablations of Table 3 (``ablation``): SF1 drop H_M2A/H_M2B from ECAF; SF2 drop H_B2A/H_A2B from
ECAF; SF3 ECAF -> token-wise H_A + H_M2A; SF4 no ECAF; FF1 moFFN -> plain FFN; MF1 CAF_M ->
token-wise H_M + H_A2M + H_B2M; MF2 no CAF_M; RL1 no stop-gradient; RL2 no H_M^F in A/B tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from cdrec.config import bounded, require_choice
from cdrec.errors import require
from cdrec.models import registry
from cdrec.models.registry import register
from cdrec.models.sequential.base import ScheduleParams, SequentialModel, gather_positions, last_valid_index
from cdrec.models.sequential.blocks import (
    AttentionBlock,
    FFNBlock,
    MoFFN,
    SwiGLU,
    attention_mask,
    extended_causal_mask,
    init_like_authors,
    reversed_positions,
    domain_info_nce,
    draw_negatives,
    embed_together,
    info_nce_sum,
    seen_mask,
)

ABLATIONS = ("none", "SF1", "SF2", "SF3", "SF4", "FF1", "MF1", "MF2", "RL1", "RL2")
GATE_NAMES = ("M", "M2A", "M2B", "A", "A2M", "A2B", "B", "B2M", "B2A")


INITS = ("authors", "torch")
LOSS_NORMS = ("domain", "pooled")
NEGATIVES = ("sequence", "position")

AUTHORS_CODE: dict[str, str] = {
    "no_key_padding_mask": (
        "every attention sees the empty slots of its key stream (left padding, and in T_A / T_B the other "
        "domain's slots) as keys/values from a zero input, i.e. the projection biases: models/attention.py "
        "L28-31, L57-60, L89-92 call nn.MultiheadAttention without key_padding_mask on inputs zeroed at "
        "empty slots (models/MERIT.py L86-88, every block's output `* mask`)"
    ),
    "score_h_m_only": (
        "a test target is scored with h_M^F at the latest slot only: models/MERIT.py L74-75 build mask_a "
        "from domain B's ids (> n_item_a) and mask_b from domain A's, so at evaluation (L118-122) h_a is read "
        "at the latest A slot (models/data/dataloader.py L78), where the B stream is zero, and cal_rank "
        "(MERIT.py L179) adds nothing to h_m[:, -1]; when the history holds no event of the target's domain "
        "get_last_idx (dataloader.py L20-28) falls back to the earliest slot, where the other domain's "
        "stream is added"
    ),
    "epoch_grad_accumulation": (
        "gradients are zeroed once per epoch and summed over its batches, each optimizer step using the "
        "running sum: trainer.py L42 (run_epoch: optimizer.zero_grad() before the loop), L94-96 "
        "(train_batch: backward, step, no zero_grad), in every commit up to 932ebee (the issue: until 1497aafa)"
    ),
    "ecaf_first_part_only": (
        "ECAF_A / ECAF_B attend to the first part of their keys only (H_M2A / H_M2B, causally), never to "
        "H_B2A / H_A2B: models/attention.py L77-92 pass attn_mask (the 3-fold causal mask) with "
        "is_causal=True, need_weights=False and no key_padding_mask, for which "
        "F.multi_head_attention_forward drops attn_mask and SDPA applies its upper-left causal mask to "
        "the L x 2L scores (= ablation SF2)"
    ),
    "swapped_positions": (
        "each stream gets another stream's reversed positions: models/MERIT.py L78-80 add "
        "ep(pos(mask_m)) to the B-items stream, ep(pos(mask_a)) (B's positions, 0 at A's slots) to the "
        "A-items stream and ep(pos(mask_b)) (A's positions, 0 at B's slots) to the mixed one; position 0 "
        "is the padding row, which init_weights (models/utils/initialization.py L15-16) leaves random and "
        "padding_idx keeps untrained"
    ),
}
"""The authors' behaviours that ``model_params.authors_code`` switches on (off: the paper's text), with
where their code (github.com/DiMarzioBian/MERIT, commit 932ebee) does it."""


@dataclass
class MERITParams(ScheduleParams):
    """Defaults of the authors' code: d=256, 2 heads, dropout 0.5, tau=0.75, 128 negatives.

    * ``attn_dropout``: dropout on the attention probabilities; 0 in the authors' code
      (``nn.MultiheadAttention`` built without ``dropout``), where ``dropout`` acts on the
      embeddings and on the attention / FFN / moFFN outputs only. ``-1`` = same as ``dropout``
      (this package before 2026-12-01).
    * ``ffn_dim``: inner width of the SwiGLU experts and FFNs; 0 = ``round(8 d / 3)`` (section
      4.3). The authors' code fixes 680 whatever d (= 8/3 * 256 rounded down to a multiple of 8).
    * ``init``: ``authors`` = their ``init_weights``: every ``nn.Linear`` N(0, 0.02) with zero
      bias, attention in-projections Xavier-uniform over the fused ``[3d, d]`` matrix with zero
      bias (``nn.MultiheadAttention``'s own init; ``init_weights`` does not reach it), embeddings
      truncated N(0, 0.02) on [-0.04, 0.04], LayerNorm 1 / 0. ``torch`` = PyTorch's default
      Linear init with N(0, ``init_std``) embeddings (this package before 2026-12-01).
    * ``loss_norm``: ``domain`` = the authors' ``cal_rec_loss``: L_M (Eq. 14) is the sum over the
      two target domains of a per-sequence mean over the positions whose target lies in that
      domain, and every such mean (also in L_A, L_B, Eq. 15) is averaged over all sequences of
      the batch (``cal_norm_mask``; a sequence without such targets counts 0). ``pooled`` = L_M
      one per-sequence mean over all positions, means over the sequences that have targets
      (this package before 2026-12-01).
    * ``negatives``: ``sequence`` = drawn once per sequence, shared by its positions (default:
      memory ``B x N x d``); ``position`` = drawn per target position like the authors'
      ``TrainDataset`` (memory ``P x N x d`` for the ``P`` target positions; at d=256, batch 256
      this alone is ~3 GB for L_M, which the issue's CPU memory target does not allow).
    * ``authors_code``: names from :data:`AUTHORS_CODE`, each switching on one behaviour of the
      authors' code that departs from the paper's text (default none: the paper's text).
      ``no_key_padding_mask`` lets attentions see empty slots as bias-only keys: their number then
      changes the valid positions' outputs, so left padding no longer leaves the loss unchanged
      (the issue asks that padding contribute nothing). ``epoch_grad_accumulation`` reaches the
      Trainer through :attr:`MERIT.zero_grad_each_step`.
    * ``null_key``: every attention (self-attention and CAF / ECAF) gets one extra key/value slot
      that all queries see, the projection of a zero input (see :class:`MultiHeadAttention`): the
      authors' bias-only empty slots without their dependence on the amount of padding.
    """

    dim: int = bounded(256, 1)
    n_heads: int = bounded(2, 1)
    dropout: float = bounded(0.5, 0, 1, hi_open=True)
    attn_dropout: float = bounded(0.0, -1, 1, hi_open=True)
    ffn_dim: int = bounded(0, 0)
    max_len: int = bounded(50, 2)
    n_negatives: int = bounded(128, 1)
    temperature: float = bounded(0.75, 0, lo_open=True)
    ablation: str = "none"
    loss: str = "sampled"
    init: str = "authors"
    init_std: float = bounded(0.02, 0, lo_open=True)
    loss_norm: str = "domain"
    authors_code: list[str] = field(default_factory=list)
    null_key: bool = False
    negatives: str = "sequence"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in self.authors_code:
            require(name in AUTHORS_CODE, f"model_params.authors_code: unknown switch {name!r}; expected names from {sorted(AUTHORS_CODE)}")

    @staticmethod
    def migrate(values: dict[str, Any]) -> dict[str, Any]:
        """Run folders written before 2026-12-07 record ``attend_padding``, now the switch
        ``authors_code: [no_key_padding_mask]``: their ``config.yaml`` still loads, evaluates and resumes."""
        if "attend_padding" not in values:
            return values
        values = dict(values)
        if values.pop("attend_padding"):
            values["authors_code"] = sorted({*values.get("authors_code", []), "no_key_padding_mask"})
        return values


@register("merit", family="sequential", params=MERITParams, min_domains=2, max_domains=2,
          needs="the mixed sequence and one stream per domain, A and B")
class MERIT(SequentialModel):
    """Three streams (M, A, B), moFFNs, CAF_M / ECAF_A / ECAF_B and residual learning."""

    def __init__(self, n_items: int, item_offsets: np.ndarray, params: MERITParams) -> None:
        registry.get("merit").require_domains(len(item_offsets) - 1)
        require_choice(params, "ablation", ABLATIONS)
        require(params.loss == "sampled", "model_params.loss: merit trains with sampled InfoNCE (Eq. 13) only")
        require(params.dim % params.n_heads == 0, f"model_params.dim ({params.dim}) must be divisible by n_heads ({params.n_heads})")
        require_choice(params, "init", INITS)
        require_choice(params, "loss_norm", LOSS_NORMS)
        require_choice(params, "negatives", NEGATIVES)
        require(params.attn_dropout == -1 or params.attn_dropout >= 0,
                f"model_params.attn_dropout: expected -1 (= dropout) or a share in [0, 1), got {params.attn_dropout}")
        super().__init__(n_items, item_offsets, params)
        p = params
        d = p.dim
        inner = p.ffn_dim or None
        attn_drop = p.dropout if p.attn_dropout < 0 else p.attn_dropout
        # 4.2 embeddings
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(p.max_len + 1, d, padding_idx=0)
        self.drop = nn.Dropout(p.dropout)
        # 4.3 one encoder per stream: self-attention + moFFN
        self.sa = nn.ModuleDict({s: AttentionBlock(d, p.n_heads, p.dropout, attn_drop, p.null_key) for s in "MAB"})
        self.moffn = nn.ModuleDict({s: MoFFN(d, 3, p.dropout, moe=p.ablation != "FF1", inner=inner) for s in "MAB"})
        # 4.4 fusion modules and their FFN blocks (Eqs. 10-12)
        self.caf = nn.ModuleDict({s: AttentionBlock(d, p.n_heads, p.dropout, attn_drop, p.null_key) for s in "MAB"})
        self.ffn = nn.ModuleDict({s: FFNBlock(d, p.dropout, SwiGLU(d, inner)) for s in "MAB"})
        self.init_weights()

    def init_weights(self) -> None:
        """``init`` (see :class:`MERITParams`); padding rows of the embeddings are zero either way
        (the authors' are not, but every padded slot is masked before use), except the positional
        one under ``swapped_positions``: the authors' swapped indices use it at valid slots, so it is
        drawn like the other rows, as their ``init_weights`` leaves it (``padding_idx`` keeps it untrained)."""
        p = self.params
        with torch.no_grad():
            if p.init == "authors":
                init_like_authors(self, p.dim, (self.item_emb, self.pos_emb))
            else:
                for emb in (self.item_emb, self.pos_emb):
                    nn.init.normal_(emb.weight, std=p.init_std)
                    emb.weight[0].zero_()
            if self.authors("swapped_positions") and p.init == "authors":
                nn.init.trunc_normal_(self.pos_emb.weight[0], std=0.02, a=-0.04, b=0.04)
            elif self.authors("swapped_positions"):
                nn.init.normal_(self.pos_emb.weight[0], std=p.init_std)

    def authors(self, switch: str) -> bool:
        """Whether ``authors_code`` switches on the authors' behaviour ``switch`` (:data:`AUTHORS_CODE`)."""
        return switch in self.params.authors_code

    @property
    def zero_grad_each_step(self) -> bool:
        """Trainer hook: False under ``epoch_grad_accumulation`` (gradients zeroed once per epoch)."""
        return not self.authors("epoch_grad_accumulation")

    # ------------------------------------------------------------------ 4.2-4.4 forward
    def forward(self, items: torch.Tensor, domains: torch.Tensor) -> dict[str, torch.Tensor]:
        """Final representations ``H_M^F, H_A^F, H_B^F`` (``[B, L, d]``, zero at empty slots)."""
        ab = self.params.ablation
        valid = {"M": items > 0, "A": domains == 0, "B": domains == 1}
        e = self.item_emb(items)
        positions = self.stream_positions(valid)
        h = {}
        for s in "MAB":
            h[s] = self.drop(e + self.pos_emb(positions[s].clamp(max=self.params.max_len))) * valid[s][..., None]
        # Eqs. 1-2 (causal self-attention per stream) and Eqs. 3-6 (moFFN)
        out = {}
        for s, names in (("M", ("M", "M2A", "M2B")), ("A", ("A", "A2M", "A2B")), ("B", ("B", "B2M", "B2A"))):
            seen, proj = self.key_view(valid[s])
            sa = self.sa[s](h[s], h[s], attention_mask(seen, causal=True), valid[s], proj)
            out.update(zip(names, self.moffn[s](sa, valid[s])))
        # Eqs. 7, 10-12: CAF_M on the token-wise sum of the A->M and B->M transfers
        to_m = out["A2M"] + out["B2M"]
        if ab == "MF1":
            fused_m = self.caf["M"].norm(out["M"] + to_m) * valid["M"][..., None]
        elif ab == "MF2":
            fused_m = out["M"]
        else:
            seen, proj = self.key_view(valid["M"])
            fused_m = self.caf["M"](out["M"], to_m, attention_mask(seen, causal=True), valid["M"], proj)
        final = {"M": self.ffn["M"](fused_m, valid["M"])}
        # Eqs. 8-9 with ECAF_A / ECAF_B (extended causal masks, Fig. 6)
        for s, other in (("A", "B"), ("B", "A")):
            v = valid[s]
            m2s, o2s = out[f"M2{s}"], out[f"{other}2{s}"]
            if ab == "SF3":
                fused = self.caf[s].norm(out[s] + m2s) * v[..., None]
            elif ab == "SF4":
                fused = out[s]
            else:
                parts = [(m2s, valid["M"]), (o2s, valid[other])]
                if ab == "SF1":
                    parts = parts[1:]
                if ab == "SF2" or self.authors("ecaf_first_part_only"):
                    parts = parts[:1]
                kv = torch.cat([x for x, _ in parts], dim=1)
                mask = extended_causal_mask([self.key_view(kv_valid)[0] for _, kv_valid in parts], self_visible=None)
                mask = mask | see_self_if_empty(mask)
                fused = self.caf[s](out[s], kv, mask, v, self.key_view(torch.cat([x for _, x in parts], dim=1))[1])
            final[s] = self.ffn[s](fused, v)
        return final

    def stream_positions(self, valid: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Positional indices of each stream (4.2): reversed within the stream, 1 = its latest event;
        under ``swapped_positions`` the authors' (``models/MERIT.py`` L78-80): M takes A's, A takes
        B's (0 at every A slot), B takes M's."""
        if self.authors("swapped_positions"):
            return {"M": reversed_positions(valid["A"]), "A": reversed_positions(valid["B"]), "B": reversed_positions(valid["M"])}
        return {s: reversed_positions(v) for s, v in valid.items()}

    def key_view(self, key_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Keys an attention may see and the ``key_valid`` its projections run on: the valid slots
        (default), or under ``no_key_padding_mask`` every slot, empty ones entering as bias-only keys
        and values (zero inputs), as in the authors' code."""
        if self.authors("no_key_padding_mask"):
            return torch.ones_like(key_valid), None
        return key_valid, key_valid

    # ------------------------------------------------------------------ 4.5 training
    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        terms = self.loss_terms(batch)
        return terms["M"] + terms["AB"]  # Eq. 16

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"M": L_M, "AB": L_A + L_B}``."""
        items, domains = batch["items"], batch["domains"]
        targets, dom_targets = batch["targets"], batch["domain_targets"]
        f = self.forward(items, domains)
        seen = torch.cat([items, targets, dom_targets], dim=1)
        p = self.params
        # Eq. 14: L_M with N negatives from each domain
        by_domain = p.loss_norm == "domain"
        per_position = p.negatives == "position"
        weights = [self.item_domain(targets) == d for d in range(2)] if by_domain else [targets > 0]
        # Eq. 15: L_A and L_B on h_X^F + SG(h_M^F) at the slots of each domain
        h_ab = f["A"] + f["B"] + self.residual(f["M"])
        if not per_position:
            return self.shared_lookup_losses(f["M"], h_ab, targets, dom_targets, weights, seen)
        loss_m = domain_info_nce(
            f["M"], targets, weights, seen, self.item_emb, self.item_ranges, p.n_negatives, p.temperature, per_position=per_position, all_rows=by_domain
        )
        return {"M": loss_m, "AB": self.domain_loss(h_ab, dom_targets, seen, self.item_emb, all_rows=by_domain, per_position=per_position)}

    def shared_lookup_losses(
        self, h_m: torch.Tensor, h_ab: torch.Tensor, targets: torch.Tensor, dom_targets: torch.Tensor, weights: list[torch.Tensor], seen: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """L_M and L_A + L_B with per-sequence negatives, as ``domain_info_nce`` and ``domain_loss``
        compute them (the same draws in the same order: L_M's from both domains, then each domain
        with targets in the batch), but with one embedding lookup for all targets and negatives
        and L_M's logits computed once for its two target domains (at d=256 these ``B x N x d``
        lookups, their dense gradients and the repeated logits took about a fifth of a training step)."""
        p = self.params
        all_rows = p.loss_norm == "domain"
        n_rows, device = len(h_m), h_m.device
        neg_m = draw_negatives(n_rows, self.item_ranges, p.n_negatives, device)
        tdom = self.item_domain(dom_targets)
        ab_weights = [tdom == d for d in range(2)]
        present = [d for d, w in enumerate(ab_weights) if bool(w.any())]
        neg_ab = [draw_negatives(n_rows, [self.item_ranges[d]], p.n_negatives, device) for d in present]
        e_t, e_dt, e_neg_m, *e_neg_ab = embed_together(self.item_emb, targets, dom_targets, neg_m, *neg_ab)
        loss_m = info_nce_sum(h_m, e_t, e_neg_m, seen_mask(neg_m, seen), weights, p.temperature, all_rows=all_rows)
        loss_ab = h_ab.new_zeros(())
        for d, neg, e_neg in zip(present, neg_ab, e_neg_ab):
            loss_ab = loss_ab + info_nce_sum(h_ab, e_dt, e_neg, seen_mask(neg, seen), [ab_weights[d]], p.temperature, all_rows=all_rows)
        return {"M": loss_m, "AB": loss_ab}

    def residual(self, h_m: torch.Tensor) -> torch.Tensor:
        """The mixed representation added to the domain tasks: stop-gradient (Eq. 15), plain (RL1),
        or none (RL2)."""
        if self.params.ablation == "RL2":
            return torch.zeros_like(h_m)
        return h_m if self.params.ablation == "RL1" else h_m.detach()

    # ------------------------------------------------------------------ evaluation
    def final_for_target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``h_X^F`` at the latest slot of the target's domain X plus ``h_M^F`` at the latest slot;
        under ``score_h_m_only`` ``h_M^F`` alone, unless the history holds no event of X: then the
        other domain's stream at the earliest event is added (what the authors' swapped masks read)."""
        items, domains = batch["items"], batch["domains"]
        f = self.forward(items, domains)
        tdom = batch["target_domain"]
        h = torch.zeros_like(f["M"][:, -1]) if self.params.ablation == "RL2" else f["M"][:, -1]
        for d, s in enumerate("AB"):
            idx, has = last_valid_index(domains == d)
            if self.authors("score_h_m_only"):  # stream s is zero there; the earliest slot when X has no event
                idx, has, s = (items > 0).long().argmax(1), ~has, "BA"[d]
            h = h + gather_positions(f[s], idx) * (has & (tdom == d))[:, None]
        return h

    def score(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.final_for_target(batch)
        return torch.einsum("nd,ncd->nc", h, self.item_emb(batch["candidates"]))

    def gate_weights(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Gate weights ``[n, 2]`` (shared, specific expert) of each moFFN output at the input token
        used for the prediction (latest slot of the stream), for Fig. 7."""
        items, domains = batch["items"], batch["domains"]
        self.forward(items, domains)
        out = {}
        for s, names in (("M", ("M", "M2A", "M2B")), ("A", ("A", "A2M", "A2B")), ("B", ("B", "B2M", "B2A"))):
            gates = self.moffn[s].last_gates
            if gates is None:
                continue
            v = items > 0 if s == "M" else domains == "AB".index(s)
            idx, has = last_valid_index(v)
            for k, name in enumerate(names):
                g = gates[k][torch.arange(len(items), device=items.device), idx]
                out[name] = torch.where(has[:, None], g, torch.full_like(g, float("nan")))
        return out


def see_self_if_empty(mask: torch.Tensor) -> torch.Tensor:
    """Extra visibility for query rows of ``mask [B, 1, L, n L]`` that see nothing (an empty slot,
    or under SF1 an A event with no earlier B event): the row sees its own slot of the first part,
    so the softmax never runs over an empty set. Rows that see something are unchanged."""
    length = mask.shape[2]
    eye = torch.eye(length, mask.shape[3], dtype=torch.bool, device=mask.device)
    return ~mask.any(-1, keepdim=True) & eye
