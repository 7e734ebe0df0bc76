"""Building blocks shared by the sequential family (SASRec, BERT4Rec, MERIT, ABXI).

* masks: :func:`causal_mask`, :func:`attention_mask` (causal or bidirectional, key padding, every
  query may always see itself so padded rows never produce NaN), :func:`extended_causal_mask`
  (MERIT Fig. 6: the causal mask cloned along the key length for concatenated sequences);
* :class:`MultiHeadAttention` on :func:`torch.nn.functional.scaled_dot_product_attention`;
* :class:`AttentionBlock` (post-norm residual, MERIT Eqs. 1-2 and 10-11), :class:`FFNBlock`
  (Eq. 12), :class:`SwiGLU` (the Llama expert of Eq. 3), :class:`PointwiseFFN` (GELU, SASRec);
* :class:`MoFFN` — the multi-output CGC feed-forward of MERIT (Eqs. 3-6);
* :func:`init_like_authors` — the MERIT / ABXI authors' weight initialization;
* :func:`reversed_positions` — in-sequence positions counted from the end (1 = latest event);
  :func:`forward_positions` — counted from the start of the window;
* :func:`sampled_info_nce` (Eq. 13 with sampled negatives), :func:`domain_info_nce` (negatives
  drawn from item ranges, per sequence or per position) and :func:`full_softmax_ce`;
* :func:`sample_domain_negatives` — uniform negatives from one domain's item range, per sequence.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn


# ------------------------------------------------------------------------------------ masks
def causal_mask(length: int, device: torch.device | None = None) -> torch.Tensor:
    """``[L, L]`` bool, True where query ``i`` may see key ``j`` (``j <= i``)."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def attention_mask(key_valid: torch.Tensor, *, causal: bool) -> torch.Tensor:
    """``[B, 1, L, L]`` bool mask: keys that exist (``key_valid [B, L]``), not in the future when
    ``causal``; the diagonal is always visible so that a padded query attends to itself (its
    output is masked afterwards) instead of producing NaN."""
    length = key_valid.shape[1]
    eye = torch.eye(length, dtype=torch.bool, device=key_valid.device)
    mask = key_valid[:, None, :] | eye[None]
    if causal:
        mask = mask & causal_mask(length, key_valid.device)[None]
    return mask[:, None]


def extended_causal_mask(key_valid: list[torch.Tensor], *, self_visible: int | None = 0) -> torch.Tensor:
    """MERIT Fig. 6 (right): queries of one length-``L`` sequence attend to the length-wise
    concatenation of ``len(key_valid)`` aligned sequences; the causal mask is cloned once per
    concatenated sequence, so query ``i`` sees key ``j`` of every part only when ``j <= i``.
    ``self_visible`` names the part whose diagonal is always visible (padded queries stay finite)."""
    parts = []
    for p, valid in enumerate(key_valid):
        length = valid.shape[1]
        allowed = valid[:, None, :]
        if p == self_visible:
            allowed = allowed | torch.eye(length, dtype=torch.bool, device=valid.device)[None]
        parts.append(allowed & causal_mask(length, valid.device)[None])
    return torch.cat(parts, dim=-1)[:, None]


def reversed_positions(valid: torch.Tensor) -> torch.Tensor:
    """Positions counted backwards within the valid events of each row (1 = latest), 0 elsewhere
    (MERIT 4.2: positional indices in reversed chronological order, per domain sequence)."""
    v = valid.long()
    return v * v.flip(1).cumsum(1).flip(1)


def forward_positions(valid: torch.Tensor) -> torch.Tensor:
    """Positions counted forwards within the valid events of each row (1 = earliest in the
    window), 0 elsewhere (C2DSR's authors' ``position`` / ``x_position``): unlike
    :func:`reversed_positions`, a slot's position never depends on later events."""
    v = valid.long()
    return v * v.cumsum(1)


# ------------------------------------------------------------------------------------ layers
def unpack(packed: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Scatter ``packed [n_valid, ...]`` (rows of ``h[valid]``) back to ``[B, L, ...]``, zeros elsewhere."""
    out = packed.new_zeros((*valid.shape, *packed.shape[1:]))
    return out.index_put_(tuple(valid.nonzero().T), packed)  # in place on a fresh tensor: no copy of the zeros


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query and key/value inputs (scaled dot-product).

    ``null_key`` appends one key/value slot that every query sees: the key/value projection of a
    zero input (the projection biases). It is what one empty slot is in an attention without a
    key-padding mask (the MERIT authors' code), but a single one, so the outputs do not depend on
    how much padding a row has."""

    def __init__(self, dim: int, n_heads: int, dropout: float, null_key: bool = False) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"hidden size {dim} is not divisible by {n_heads} heads")
        self.n_heads = n_heads
        self.dropout = dropout
        self.null_key = null_key
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(
        self,
        query: torch.Tensor,
        key_value: torch.Tensor,
        mask: torch.Tensor,
        query_valid: torch.Tensor | None = None,
        key_valid: torch.Tensor | None = None,
        *,
        packed_output: bool = False,
    ) -> torch.Tensor:
        """With ``query_valid`` / ``key_valid`` the projections run on the valid tokens only
        (empty slots get zero queries/keys/values; the mask already hides them); with
        ``packed_output`` too the output is the rows of the valid queries (``[n_valid, d]``), not
        scattered back to ``[B, L, d]``."""
        b, lq, d = query.shape
        lk = key_value.shape[1]
        h = self.n_heads
        q = self.q(query) if query_valid is None else unpack(self.q(query[query_valid]), query_valid)
        kv = self.kv(key_value) if key_valid is None else unpack(self.kv(key_value[key_valid]), key_valid)
        q = q.view(b, lq, h, d // h).transpose(1, 2)
        if self.null_key:
            kv = torch.cat([kv, self.kv.bias.expand(b, 1, 2 * d)], dim=1)
            mask = torch.cat([mask.expand(b, -1, lq, lk), mask.new_ones(b, mask.shape[1], lq, 1)], dim=-1)
            lk += 1
        k, v = kv.view(b, lk, 2, h, d // h).permute(2, 0, 3, 1, 4)
        drop = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop).transpose(1, 2).reshape(b, lq, d)
        if query_valid is None:
            return self.out(out)
        packed = self.out(out[query_valid])
        return packed if packed_output else unpack(packed, query_valid)


class AttentionBlock(nn.Module):
    """``LayerNorm(Q + Dropout(MHA(Q, KV, KV)))`` masked to the valid query positions (Eqs. 1-2, 10-11).

    ``dropout`` drops the attention output (the residual branch); ``attn_dropout`` (default: the
    same rate) drops the attention probabilities inside the MHA. The MERIT authors' code builds
    ``nn.MultiheadAttention`` without its ``dropout`` argument, i.e. ``attn_dropout = 0``."""

    def __init__(self, dim: int, n_heads: int, dropout: float, attn_dropout: float | None = None, null_key: bool = False) -> None:
        super().__init__()
        self.mha = MultiHeadAttention(dim, n_heads, dropout if attn_dropout is None else attn_dropout, null_key)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, query: torch.Tensor, key_value: torch.Tensor, mask: torch.Tensor, query_valid: torch.Tensor, key_valid: torch.Tensor | None = None) -> torch.Tensor:
        x = query[query_valid]
        att = self.mha(query, key_value, mask, query_valid, key_valid, packed_output=True)
        return unpack(self.norm(x + self.drop(att)), query_valid)


class SwiGLU(nn.Module):
    """Eq. 3: ``(Swish(H W1) * H W2) W3`` with inner width ``8/3 d`` (Llama's expert)."""

    def __init__(self, dim: int, inner: int | None = None) -> None:
        super().__init__()
        inner = inner or int(round(8 * dim / 3))
        self.w1 = nn.Linear(dim, inner, bias=False)
        self.w2 = nn.Linear(dim, inner, bias=False)
        self.w3 = nn.Linear(inner, dim, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.w3(F.silu(self.w1(h)) * self.w2(h))


class PointwiseFFN(nn.Module):
    """SASRec/BERT4Rec point-wise feed-forward: ``GELU(H W1 + b1) W2 + b2``."""

    def __init__(self, dim: int, inner: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, inner), nn.GELU(), nn.Dropout(dropout), nn.Linear(inner, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class FFNBlock(nn.Module):
    """``LayerNorm(H + Dropout(FFN(H)))`` masked to valid positions (Eq. 12). Position-wise layers
    run on the valid tokens only (packed), which skips the padding that fills most slots of the
    aligned domain sequences."""

    def __init__(self, dim: int, dropout: float, ffn: nn.Module | None = None) -> None:
        super().__init__()
        self.ffn = ffn if ffn is not None else SwiGLU(dim)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def packed(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.drop(self.ffn(x)))

    def forward(self, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return unpack(self.packed(h[valid]), valid)


class TransformerLayer(nn.Module):
    """Self-attention block + feed-forward block (SASRec / BERT4Rec encoder layer)."""

    def __init__(self, dim: int, n_heads: int, inner: int, dropout: float) -> None:
        super().__init__()
        self.attn = AttentionBlock(dim, n_heads, dropout)
        self.ffn = FFNBlock(dim, dropout, PointwiseFFN(dim, inner, dropout))

    def forward(self, h: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.attn(h, h, mask, valid, valid), valid)


class MoFFN(nn.Module):
    """Multi-output MoE feed-forward as a CGC network (MERIT Eqs. 3-6).

    One shared expert plus one specific expert per output (SwiGLU, Eq. 3); output ``k`` mixes
    ``S_k = [Expert_s, Expert_k]`` (Eq. 4) with ``Gate_k(H) = Softmax(W_k H)`` (Eq. 5) and
    ``H_k = LayerNorm(H + Dropout(Gate_k(H) S_k(H)))`` (Eq. 6). With ``moe=False`` (ablation FF1)
    every output is the same plain FFN block. ``last_gates`` keeps the gate weights of the latest
    call (``[K, B, L, 2]``, column 0 = shared expert) for the expert-utilization figure (Fig. 7).
    """

    def __init__(self, dim: int, n_outputs: int, dropout: float, *, moe: bool = True, inner: int | None = None) -> None:
        super().__init__()
        self.n_outputs = n_outputs
        self.moe = moe
        self.drop = nn.Dropout(dropout)
        if moe:
            self.shared = SwiGLU(dim, inner)
            self.experts = nn.ModuleList(SwiGLU(dim, inner) for _ in range(n_outputs))
            self.gates = nn.Linear(dim, 2 * n_outputs, bias=False)
            self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(n_outputs))
        else:
            self.block = FFNBlock(dim, dropout, SwiGLU(dim, inner))
        self.last_gates: torch.Tensor | None = None

    def forward(self, h: torch.Tensor, valid: torch.Tensor) -> list[torch.Tensor]:
        x = h[valid]  # experts and gates run on the valid tokens only
        if not self.moe:
            out = unpack(self.block.packed(x), valid)
            return [out] * self.n_outputs
        shared = self.shared(x)
        gates = F.softmax(self.gates(x).view(len(x), self.n_outputs, 2), dim=-1)
        self.last_gates = unpack(gates.detach(), valid).movedim(-2, 0)
        outs = []
        for k, (expert, norm) in enumerate(zip(self.experts, self.norms)):
            mixed = gates[:, k, 0:1] * shared + gates[:, k, 1:2] * expert(x)
            outs.append(unpack(norm(x + self.drop(mixed)), valid))
        return outs


def init_like_authors(model: nn.Module, dim: int, embeddings: Iterable[nn.Embedding]) -> None:
    """The MERIT / ABXI authors' ``init_weights``: every ``nn.Linear`` N(0, 0.02) with zero bias, the
    attention in-projections Xavier-uniform over the fused ``[3d, d]`` matrix with zero bias
    (``nn.MultiheadAttention``'s own init, which ``init_weights`` does not reach), LayerNorm 1 / 0, the
    ``embeddings`` truncated N(0, 0.02) on [-0.04, 0.04] with a zero padding row."""
    with torch.no_grad():
        in_proj = {id(lin) for m in model.modules() if isinstance(m, MultiHeadAttention) for lin in (m.q, m.kv)}
        bound = math.sqrt(6.0 / (4 * dim))  # xavier_uniform_ of a fused [3d, d] in_proj_weight
        for m in model.modules():
            if isinstance(m, nn.Linear):
                if id(m) in in_proj:
                    nn.init.uniform_(m.weight, -bound, bound)
                else:
                    nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for emb in embeddings:
            nn.init.trunc_normal_(emb.weight, std=0.02, a=-0.04, b=0.04)
            emb.weight[0].zero_()


# ------------------------------------------------------------------------------------ losses
def sample_domain_negatives(n_rows: int, n: int, start: int, stop: int, device: torch.device) -> torch.Tensor:
    """``[n_rows, n]`` uniform item ids (+1 shifted) from the global range ``[start, stop)``."""
    return torch.randint(start + 1, stop + 1, (n_rows, n), device=device)


def seen_mask(candidates: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """Bool ``[B, N]``: which ``candidates [B, N]`` occur in the row's ``seen [B, S]`` items."""
    srt = seen.sort(dim=1).values.contiguous()
    pos = torch.searchsorted(srt, candidates.contiguous()).clamp(max=srt.shape[1] - 1)
    return srt.gather(1, pos) == candidates


def sampled_info_nce(
    h: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    neg_invalid: torch.Tensor,
    weight: torch.Tensor,
    temperature: float,
    *,
    all_rows: bool = False,
) -> torch.Tensor:
    """Eq. 13 per position, averaged per sequence over its weighted positions, then over sequences
    that have any (Eqs. 14-15: padding contributes nothing); with ``all_rows`` over every sequence
    of the batch, one without weighted positions counting 0 (see :func:`masked_sequence_mean`).

    ``h [B, L, d]``, positive embeddings ``pos [B, L, d]``, negatives per sequence ``neg [B, N, d]``
    (shared by the sequence's positions), ``neg_invalid [B, N]`` (negatives the user has seen are
    dropped from the softmax), ``weight [B, L]`` (1 for positions with a target, 0 elsewhere).
    """
    return masked_sequence_mean(info_nce_per_position(h, pos, neg, neg_invalid, temperature), weight, all_rows=all_rows)


def info_nce_per_position(h: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, neg_invalid: torch.Tensor, temperature: float) -> torch.Tensor:
    """Eq. 13 at every position, ``[B, L]``: ``-log softmax`` of the positive among the row's
    negatives (``neg [B, N, d]`` shared by the row's ``L`` positions; seen ones masked out)."""
    pos_logit = (h * pos).sum(-1, keepdim=True)
    neg_logit = torch.einsum("bld,bnd->bln", h, neg).masked_fill(neg_invalid[:, None, :], float("-inf"))
    logits = torch.cat([pos_logit, neg_logit], dim=-1) / temperature
    return -F.log_softmax(logits, dim=-1)[..., 0]


def domain_info_nce(
    h: torch.Tensor,
    targets: torch.Tensor,
    weights: list[torch.Tensor],
    seen: torch.Tensor,
    item_emb: nn.Embedding,
    ranges: list[tuple[int, int]],
    n: int,
    temperature: float,
    *,
    per_position: bool = False,
    all_rows: bool = False,
) -> torch.Tensor:
    """Eq. 13 with ``n`` uniform negatives from each global item range in ``ranges`` (one domain,
    or both for MERIT's L_M, Eq. 14), summed over the position sets ``weights`` (each a ``[B, L]``
    mask, normalized as in :func:`masked_sequence_mean`); ``targets [B, L]`` are +1 shifted ids,
    ``seen [B, S]`` the user's items (dropped from the softmax).

    The negatives are drawn once per sequence and shared by its positions, or with
    ``per_position`` once per target position, as the MERIT authors' ``TrainDataset`` does
    (``get_m_neg`` / ``get_ab_neg``: 128 per position, per domain). Per position costs memory
    ``P x N x d`` for the ``P`` target positions of the batch (logits are computed there only)."""
    if not per_position:  # separate lookups and losses: the committed baseline runs' exact sums (MERIT's own loss shares them)
        neg = draw_negatives(len(h), ranges, n, h.device)
        e_pos, e_neg, invalid = item_emb(targets), item_emb(neg), seen_mask(neg, seen)
        return sum(sampled_info_nce(h, e_pos, e_neg, invalid, w, temperature, all_rows=all_rows) for w in weights)
    keep = torch.stack(weights).any(0)
    rows, cols = keep.nonzero(as_tuple=True)
    neg = draw_negatives(len(rows), ranges, n, h.device)
    # every kept position is a one-position row with negatives of its own
    hk, e_pos = h[rows, cols][:, None], item_emb(targets[rows, cols])[:, None]
    per = info_nce_per_position(hk, e_pos, item_emb(neg), seen_mask(neg, seen[rows]), temperature)[:, 0]
    loss = h.new_zeros(keep.shape).index_put((rows, cols), per)
    return sum(masked_sequence_mean(loss, w, all_rows=all_rows) for w in weights)


def draw_negatives(n_rows: int, ranges: list[tuple[int, int]], n: int, device: torch.device) -> torch.Tensor:
    """``[n_rows, n * len(ranges)]``: ``n`` uniform negatives per row from each global item range, in
    the order of ``ranges`` (:func:`sample_domain_negatives`, one draw per range)."""
    return torch.cat([sample_domain_negatives(n_rows, n, a, b, device) for a, b in ranges], dim=1)


def embed_together(item_emb: nn.Embedding, *ids: torch.Tensor) -> list[torch.Tensor]:
    """``item_emb(x)`` for every ``x`` in ``ids`` from a single lookup: the backward pass then builds
    one dense ``[n_items, d]`` gradient instead of one per lookup (the same values; on CPU each dense
    embedding gradient costs a fill and a scatter over the whole table)."""
    rows = item_emb(torch.cat([x.reshape(-1) for x in ids]))
    return [part.view(*x.shape, rows.shape[-1]) for part, x in zip(rows.split([x.numel() for x in ids]), ids)]


def info_nce_sum(
    h: torch.Tensor,
    e_pos: torch.Tensor,
    e_neg: torch.Tensor,
    neg_invalid: torch.Tensor,
    weights: list[torch.Tensor],
    temperature: float,
    *,
    all_rows: bool = False,
) -> torch.Tensor:
    """``sum(sampled_info_nce(h, e_pos, e_neg, neg_invalid, w, ...) for w in weights)`` with the
    logits over the negatives computed once for all position sets (Eq. 14's two target domains
    share ``h_M^F`` and the negatives)."""
    per = info_nce_per_position(h, e_pos, e_neg, neg_invalid, temperature)
    return sum(masked_sequence_mean(per, w, all_rows=all_rows) for w in weights)


def full_softmax_ce(h: torch.Tensor, item_weight: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Cross-entropy over all items (RecBole's ``loss_type=CE``); ``targets`` are +1 shifted ids.
    Logits are computed only at the weighted positions (padding costs nothing)."""
    keep = weight > 0
    logits = h[keep] @ item_weight[1:].T / temperature
    loss = torch.zeros(weight.shape, dtype=h.dtype, device=h.device)
    loss = loss.index_put(tuple(keep.nonzero().T), F.cross_entropy(logits, targets[keep] - 1, reduction="none"))
    return masked_sequence_mean(loss, weight)


def masked_sequence_mean(loss: torch.Tensor, weight: torch.Tensor, *, all_rows: bool = False) -> torch.Tensor:
    """Mean over each sequence's weighted positions, then over the sequences with any weight, or
    with ``all_rows`` over all sequences (a sequence without weight counts 0: the MERIT authors'
    ``(loss * cal_norm_mask(mask)).sum(-1).mean()``)."""
    weight = weight.to(loss.dtype)
    count = weight.sum(1)
    has = count > 0
    if not bool(has.any()):
        return loss.sum() * 0.0
    per_seq = (torch.where(weight > 0, loss, torch.zeros_like(loss)) * weight).sum(1) / count.clamp(min=1)
    return per_seq.mean() if all_rows else per_seq[has].mean()
