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

Negatives are drawn per sequence and shared by its positions (the authors draw per position; the
distribution per position is the same and it needs far less memory); negatives the user has seen
are dropped from the softmax.

Ablations of Table 3 (``ablation``): SF1 drop H_M2A/H_M2B from ECAF; SF2 drop H_B2A/H_A2B from
ECAF; SF3 ECAF -> token-wise H_A + H_M2A; SF4 no ECAF; FF1 moFFN -> plain FFN; MF1 CAF_M ->
token-wise H_M + H_A2M + H_B2M; MF2 no CAF_M; RL1 no stop-gradient; RL2 no H_M^F in A/B tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cdrec.errors import require
from cdrec.models.registry import register
from cdrec.models.sequential.base import ScheduleParams, SequentialModel, gather_positions, last_valid_index
from cdrec.models.sequential.blocks import (
    AttentionBlock,
    FFNBlock,
    MoFFN,
    attention_mask,
    extended_causal_mask,
    reversed_positions,
    sample_domain_negatives,
    sampled_info_nce,
    seen_mask,
)

ABLATIONS = ("none", "SF1", "SF2", "SF3", "SF4", "FF1", "MF1", "MF2", "RL1", "RL2")
GATE_NAMES = ("M", "M2A", "M2B", "A", "A2M", "A2B", "B", "B2M", "B2A")


@dataclass
class MERITParams(ScheduleParams):
    """Defaults of the authors' code: d=256, 2 heads, dropout 0.5, tau=0.75, 128 negatives."""

    dim: int = 256
    n_heads: int = 2
    dropout: float = 0.5
    max_len: int = 50
    n_negatives: int = 128
    temperature: float = 0.75
    ablation: str = "none"
    loss: str = "sampled"
    init_std: float = 0.02


@register("merit", family="sequential", params=MERITParams)
class MERIT(SequentialModel):
    """Three streams (M, A, B), moFFNs, CAF_M / ECAF_A / ECAF_B and residual learning."""

    def __init__(self, n_items: int, item_offsets: np.ndarray, params: MERITParams) -> None:
        require(len(item_offsets) == 3, f"merit: needs exactly two domains, got {len(item_offsets) - 1}")
        require(params.ablation in ABLATIONS, f"model_params.ablation: expected one of {ABLATIONS}, got {params.ablation!r}")
        require(params.loss == "sampled", "model_params.loss: merit trains with sampled InfoNCE (Eq. 13) only")
        require(params.dim % params.n_heads == 0, f"model_params.dim ({params.dim}) must be divisible by n_heads ({params.n_heads})")
        super().__init__(n_items, item_offsets, params)
        p = params
        d = p.dim
        # 4.2 embeddings
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(p.max_len + 1, d, padding_idx=0)
        self.drop = nn.Dropout(p.dropout)
        # 4.3 one encoder per stream: self-attention + moFFN
        self.sa = nn.ModuleDict({s: AttentionBlock(d, p.n_heads, p.dropout) for s in "MAB"})
        self.moffn = nn.ModuleDict({s: MoFFN(d, 3, p.dropout, moe=p.ablation != "FF1") for s in "MAB"})
        # 4.4 fusion modules and their FFN blocks (Eqs. 10-12)
        self.caf = nn.ModuleDict({s: AttentionBlock(d, p.n_heads, p.dropout) for s in "MAB"})
        self.ffn = nn.ModuleDict({s: FFNBlock(d, p.dropout) for s in "MAB"})
        for emb in (self.item_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=p.init_std)
            with torch.no_grad():
                emb.weight[0].zero_()

    # ------------------------------------------------------------------ 4.2-4.4 forward
    def forward(self, items: torch.Tensor, domains: torch.Tensor) -> dict[str, torch.Tensor]:
        """Final representations ``H_M^F, H_A^F, H_B^F`` (``[B, L, d]``, zero at empty slots)."""
        ab = self.params.ablation
        valid = {"M": items > 0, "A": domains == 0, "B": domains == 1}
        e = self.item_emb(items)
        h = {}
        for s in "MAB":
            v = valid[s]
            h[s] = self.drop(e + self.pos_emb(reversed_positions(v).clamp(max=self.params.max_len))) * v[..., None]
        # Eqs. 1-2 (causal self-attention per stream) and Eqs. 3-6 (moFFN)
        out = {}
        for s, names in (("M", ("M", "M2A", "M2B")), ("A", ("A", "A2M", "A2B")), ("B", ("B", "B2M", "B2A"))):
            sa = self.sa[s](h[s], h[s], attention_mask(valid[s], causal=True), valid[s], valid[s])
            out.update(zip(names, self.moffn[s](sa, valid[s])))
        # Eqs. 7, 10-12: CAF_M on the token-wise sum of the A->M and B->M transfers
        to_m = out["A2M"] + out["B2M"]
        if ab == "MF1":
            fused_m = self.caf["M"].norm(out["M"] + to_m) * valid["M"][..., None]
        elif ab == "MF2":
            fused_m = out["M"]
        else:
            fused_m = self.caf["M"](out["M"], to_m, attention_mask(valid["M"], causal=True), valid["M"], valid["M"])
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
                elif ab == "SF2":
                    parts = parts[:1]
                kv = torch.cat([x for x, _ in parts], dim=1)
                mask = extended_causal_mask([kv_valid for _, kv_valid in parts], self_visible=None)
                mask = mask | see_self_if_empty(mask)
                kv_valid = torch.cat([x for _, x in parts], dim=1)
                fused = self.caf[s](out[s], kv, mask, v, kv_valid)
            final[s] = self.ffn[s](fused, v)
        return final

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
        negs = [sample_domain_negatives(len(items), p.n_negatives, int(self.offsets[d]), int(self.offsets[d + 1]), items.device) for d in range(2)]
        neg = torch.cat(negs, dim=1)
        loss_m = sampled_info_nce(f["M"], self.item_emb(targets), self.item_emb(neg), seen_mask(neg, seen), targets > 0, p.temperature)
        # Eq. 15: L_A and L_B on h_X^F + SG(h_M^F) at the slots of each domain
        h_ab = f["A"] + f["B"] + self.residual(f["M"])
        return {"M": loss_m, "AB": self.domain_loss(h_ab, dom_targets, seen, self.item_emb)}

    def residual(self, h_m: torch.Tensor) -> torch.Tensor:
        """The mixed representation added to the domain tasks: stop-gradient (Eq. 15), plain (RL1),
        or none (RL2)."""
        if self.params.ablation == "RL2":
            return torch.zeros_like(h_m)
        return h_m if self.params.ablation == "RL1" else h_m.detach()

    # ------------------------------------------------------------------ evaluation
    def final_for_target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``h_X^F`` at the latest slot of the target's domain X plus ``h_M^F`` at the latest slot."""
        items, domains = batch["items"], batch["domains"]
        f = self.forward(items, domains)
        tdom = batch["target_domain"]
        h = torch.zeros_like(f["M"][:, -1]) if self.params.ablation == "RL2" else f["M"][:, -1]
        for d, s in enumerate("AB"):
            idx, has = last_valid_index(domains == d)
            add = gather_positions(f[s], idx) * (has & (tdom == d))[:, None]
            h = h + add
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
