"""ABXI (Bian et al., WWW 2025): invariant interest adaptation for task-guided cross-domain
sequential recommendation; the runner-up of MERIT's Table 2. Reads top to bottom like the paper's
method: inputs and task-guided alignment, the shared encoder with domain LoRAs (dLoRA), the
invariant projector with invariant LoRAs (iLoRA), prediction and training.

Equation numbers are not cited: the paper's text is not in ``/work/shared/papers`` (only its
abstract could be read here), so the formulas below are written from the abstract and the authors'
public code (github.com/DiMarzioBian/ABXI, ``models/ABXI.py``, ``models/data/dataloader.py``);
where they differ from what the abstract says, the docstring says so.

Inputs. The mixed sequence X and the two domain sequences A, B, each an item embedding plus a
learned positional embedding of the reversed in-stream position (1 = the stream's latest event):
``E_S = Dropout(E_item + E_pos)`` for S in {X, A, B}. The domain streams are cdrec's aligned views
(T_A = the mixed window with B's slots empty, as MERIT's), so a stream only holds the events of
the mixed window; the authors' evaluation reads up to ``max_len`` events per domain sequence, which
can reach further back than the mixed window (choice: the shared view, as MERIT and the other
dual-target models here).

Task-guided alignment. The prediction at a mixed position i whose ground truth lies in domain D
reads the D stream at its latest event at or before i (none: a zero vector), so a domain
representation always predicts a target of its own domain; the authors build this by moving the
domain items onto the slots whose targets are in that domain (``get_spe_seq``). Causal attention
over the D stream makes the two identical except for the positional indices: theirs count the
moved items (the last D input of a window whose last target lies in the other domain is dropped),
ours every D event of the window.

Shared encoder with dLoRA. One causal self-attention block (post-norm, padding masked) and one
SwiGLU FFN are shared by the three streams; each stream S adds its own low-rank adapter
``dLoRA_S(H) = H W_down W_up`` (rank ``rank_domain``; ``W_up`` starts at zero) next to the FFN:
``H_S = LayerNorm_S(H + Dropout(FFN(H)) + Dropout(dLoRA_S(H)))`` with ``H = SA(E_S)``.

Invariant projector with iLoRA. A SwiGLU projector ``P_I`` extracts the domain-invariant interest
from the mixed representation and an invariant LoRA per target domain adapts it:
``h_I2D = LayerNorm_I2D(h_X + Dropout(P_I(h_X)) + Dropout(iLoRA_D(h_X)))``; the domain
representation gets its own projector ``h_D2D = LayerNorm_D2D(h_D + Dropout(P_D(h_D)))``; the
prediction for a target in domain D is ``h = h_I2D + h_D2D`` and an item's score is ``<h, e_item>``.

Training. InfoNCE (temperature ``tau``) at every position with a target, against ``n_negatives``
uniform negatives from each domain (seen items dropped from the softmax), L_A over the positions
whose target lies in A and L_B likewise, each a per-sequence mean averaged over all sequences of
the batch (the authors' ``cal_rec_loss``); Loss = L_A + L_B. Negatives are drawn per sequence by
default (``negatives=sequence``, memory ``B x N x d``); the authors draw them per target position
(``negatives=position``, used by ``cdrec reproduce merit``).

Not copied from the authors' code: attention to padding slots (they pass no key-padding mask; here
padding contributes nothing), and at evaluation a domain without any event is the zero vector, as
in training (their evaluation sends the empty slot through the FFN block, i.e. the LayerNorm bias).
Their ``n_attn`` option is not used by their model (one attention layer); neither is it here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cdrec.config import bounded, require_choice
from cdrec.errors import require
from cdrec.models import registry
from cdrec.models.registry import register
from cdrec.models.sequential.base import ScheduleParams, SequentialModel
from cdrec.models.sequential.blocks import (
    AttentionBlock,
    FFNBlock,
    SwiGLU,
    attention_mask,
    domain_info_nce,
    init_like_authors,
    reversed_positions,
    unpack,
)

NEGATIVES = ("sequence", "position")
STREAMS = ("X", "A", "B")


@dataclass
class ABXIParams(ScheduleParams):
    """Defaults of the authors' ``main.py``: d=256, 2 heads, dropout 0.5, tau=0.75, 128 negatives
    per domain, LoRA ranks 8 and 8, one warm-up epoch, plateau factor 0.3162 after 30 epochs.

    * ``rank_domain`` / ``rank_invariant``: ranks of the dLoRAs and iLoRAs; 0 drops them (the
      encoder then has no per-stream adaptation, the projector no per-domain one).
    * ``ffn_dim``: inner width of the SwiGLU FFN and projectors; 0 = ``round(8 d / 3)``; the
      authors' code fixes 680 whatever d.
    * ``attn_dropout``: dropout on the attention probabilities; 0 in the authors' code.
    * ``negatives``: ``sequence`` = drawn once per sequence and shared by its positions;
      ``position`` = per target position as in the authors' ``TrainDataset``.
    """

    dim: int = bounded(256, 1)
    n_heads: int = bounded(2, 1)
    dropout: float = bounded(0.5, 0, 1, hi_open=True)
    attn_dropout: float = bounded(0.0, 0, 1, hi_open=True)
    ffn_dim: int = bounded(0, 0)
    rank_domain: int = bounded(8, 0)
    rank_invariant: int = bounded(8, 0)
    max_len: int = bounded(50, 2)
    n_negatives: int = bounded(128, 1)
    temperature: float = bounded(0.75, 0, lo_open=True)
    negatives: str = "sequence"
    loss: str = "sampled"
    warmup_epochs: int = bounded(1, 0)
    lr_factor: float = bounded(0.3162, 0, 1, lo_open=True)


class LoRA(nn.Module):
    """Low-rank map ``H W_down W_up`` (``W_down`` N(0, 0.02), ``W_up`` zero: the adapter starts silent)."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Parameter(torch.randn(dim, rank) * 0.02)
        self.up = nn.Parameter(torch.zeros(rank, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.down @ self.up


class AdaptedResidual(nn.Module):
    """``LayerNorm(H + Dropout(F(H)) + Dropout(LoRA(H)))`` on the valid tokens, zero elsewhere; ``F``
    is passed in, so one FFN (or projector) serves several adapters (dLoRA, iLoRA)."""

    def __init__(self, dim: int, rank: int, dropout: float) -> None:
        super().__init__()
        self.lora = LoRA(dim, rank) if rank > 0 else None
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, h: torch.Tensor, valid: torch.Tensor, shared: nn.Module) -> torch.Tensor:
        x = h[valid]
        out = x + self.drop(shared(x))
        if self.lora is not None:
            out = out + self.drop(self.lora(x))
        return unpack(self.norm(out), valid)


@register("abxi", family="sequential", params=ABXIParams, min_domains=2, max_domains=2,
          needs="the mixed sequence and one sequence per domain, A and B")
class ABXI(SequentialModel):
    """Shared encoder with dLoRAs over X, A, B; invariant projector with iLoRAs; one prediction per target domain."""

    def __init__(self, n_items: int, item_offsets: np.ndarray, params: ABXIParams) -> None:
        registry.get("abxi").require_domains(len(item_offsets) - 1)
        require(params.loss == "sampled", "model_params.loss: abxi trains with sampled InfoNCE only")
        require(params.dim % params.n_heads == 0, f"model_params.dim ({params.dim}) must be divisible by n_heads ({params.n_heads})")
        require_choice(params, "negatives", NEGATIVES)
        super().__init__(n_items, item_offsets, params)
        p = params
        d = p.dim
        inner = p.ffn_dim or None
        # inputs
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(p.max_len + 1, d, padding_idx=0)
        self.drop = nn.Dropout(p.dropout)
        # shared encoder: one attention block and one FFN for X, A and B; a dLoRA and LayerNorm per stream
        self.attn = AttentionBlock(d, p.n_heads, p.dropout, p.attn_dropout)
        self.ffn = SwiGLU(d, inner)
        self.dlora = nn.ModuleDict({s: AdaptedResidual(d, p.rank_domain, p.dropout) for s in STREAMS})
        # invariant projector with an iLoRA per target domain; a projector per domain representation
        self.proj_invariant = SwiGLU(d, inner)
        self.ilora = nn.ModuleDict({s: AdaptedResidual(d, p.rank_invariant, p.dropout) for s in "AB"})
        self.proj_domain = nn.ModuleDict({s: FFNBlock(d, p.dropout, SwiGLU(d, inner)) for s in "AB"})
        init_like_authors(self, d, (self.item_emb, self.pos_emb))  # LoRA matrices keep their own init

    # ------------------------------------------------------------------ inputs and shared encoder
    def encode(self, items: torch.Tensor, domains: torch.Tensor) -> dict[str, torch.Tensor]:
        """``H_X, H_A, H_B`` (``[B, L, d]``, zero at the stream's empty slots)."""
        valid = {"X": items > 0, "A": domains == 0, "B": domains == 1}
        e = self.item_emb(items)
        out = {}
        for s in STREAMS:
            v = valid[s]
            h = self.drop(e + self.pos_emb(reversed_positions(v).clamp(max=self.params.max_len))) * v[..., None]
            h = self.attn(h, h, attention_mask(v, causal=True), v, v)
            out[s] = self.dlora[s](h, v, self.ffn)
        return out

    # ------------------------------------------------------------------ alignment, projector, prediction
    def represent(self, items: torch.Tensor, domains: torch.Tensor, target_domain: torch.Tensor) -> torch.Tensor:
        """``h = h_I2D + h_D2D`` at every position whose target lies in domain D (``target_domain
        [B, L]``, -1 = no prediction there: zero)."""
        h = self.encode(items, domains)
        out = torch.zeros_like(h["X"])
        for d, s in enumerate("AB"):
            wanted = target_domain == d
            aligned = latest_at_or_before(h[s], domains == d)  # task-guided alignment
            out = out + self.ilora[s](h["X"], wanted, self.proj_invariant) + self.proj_domain[s](aligned, wanted)
        return out

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """L_A + L_B: InfoNCE with negatives from both domains, per-sequence means over the
        positions whose target lies in each domain, averaged over the batch."""
        items, targets = batch["items"], batch["targets"]
        tdom = self.item_domain(targets)
        h = self.represent(items, batch["domains"], tdom)
        p = self.params
        weights = [tdom == d for d in range(2)]
        seen = torch.cat([items, targets], dim=1)
        return domain_info_nce(h, targets, weights, seen, self.item_emb, self.item_ranges, p.n_negatives, p.temperature,
                               per_position=p.negatives == "position", all_rows=True)

    def final_for_target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``h`` at the latest slot for the row's target domain (``[n, d]``)."""
        items = batch["items"]
        where = torch.full_like(items, -1)
        where[:, -1] = batch["target_domain"]
        return self.represent(items, batch["domains"], where)[:, -1]

    def score(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.final_for_target(batch)
        return torch.einsum("nd,ncd->nc", h, self.item_emb(batch["candidates"]))


def latest_at_or_before(h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``h [B, L, d]`` at the latest valid slot at or before each position (zero before the first)."""
    pos = torch.arange(valid.shape[1], device=valid.device).expand_as(valid)
    idx = torch.where(valid, pos, torch.full_like(pos, -1)).cummax(dim=1).values
    picked = h.gather(1, idx.clamp(min=0)[..., None].expand(-1, -1, h.shape[-1]))
    return picked * (idx >= 0)[..., None]
