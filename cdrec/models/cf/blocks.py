"""Building blocks shared by the collaborative-filtering family.

* :func:`bpr_loss` — the BPR pairwise loss with L2 on the batch's embeddings (UCLR Eqs. 2 and 6).
* :func:`user_aware_contrastive_loss` — UCLR Eq. 3 with one temperature per anchor user.
* :func:`info_nce_loss` — the symmetric in-batch InfoNCE of CAT-ART's contrastive autoencoder.
* :func:`clip_temperatures` — the clipping of every temperature into ``[tau_min, tau_max]``.
* :class:`MLP` — a plain ReLU multilayer perceptron (encoder / decoder / NeuMF tower).
* :func:`concat_linear` — a linear layer on ``[row part ; candidate part]`` without building the concatenation.
* :class:`LoRAEmbedding` — ``W = W0 + B A`` over a frozen embedding table (UCLR section 3.5).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def bpr_loss(user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, reg: float) -> torch.Tensor:
    """``-mean log sigmoid(u.i - u.j) + reg * mean(||u||^2 + ||i||^2 + ||j||^2)`` over a batch; with
    ``user``, ``pos`` as ``[B, 1, d]`` and ``neg`` as ``[B, n, d]`` each (row, negative) pair is one term."""
    diff = (user * (pos - neg)).sum(-1)
    l2 = user.pow(2).sum(-1) + pos.pow(2).sum(-1) + neg.pow(2).sum(-1)
    return -F.logsigmoid(diff).mean() + reg * l2.mean()


def user_aware_contrastive_loss(
    anchor: torch.Tensor, positive: torch.Tensor, tau: torch.Tensor, rho: float | None = None
) -> torch.Tensor:
    """Per-anchor loss of UCLR Eq. 3 (cosine similarity), shape ``[n]``.

    ``L_i = -tau_i * log( exp(s_ii / tau_i) / sum_{k != i} exp(s_ik / tau_i) )`` with
    ``s_ik = cos(anchor_i, positive_k)``: the same user's generation-stream latent is the positive,
    the other users of the batch are the negatives. ``tau`` is ``[n]`` (per user) or a scalar (one
    global temperature, the PGE+CL-AE ablation).

    The gradient of Eq. 3 in ``tau_i`` is the entropy of the softmax over negatives, which is never
    negative, so Eq. 3 alone drives every temperature to its lower clip. With ``rho`` set, the
    loss gains the term ``tau_i * (rho - log(n - 1))`` of the KL-constrained objective of Qiu et
    al. (2023, iSogCLR, the paper's reference [43]): constant in the network weights, it balances
    the temperature at ``KL(softmax_i || uniform) = rho`` — an individual equilibrium per user.
    """
    n = anchor.shape[0]
    sim = F.normalize(anchor, dim=-1) @ F.normalize(positive, dim=-1).T
    tau = tau.expand(n) if tau.dim() == 0 else tau
    logits = sim / tau[:, None]
    pos = logits.diagonal()
    eye = torch.eye(n, dtype=torch.bool, device=anchor.device)
    lse = torch.logsumexp(logits.masked_fill(eye, float("-inf")), dim=1)
    loss = tau * (lse - pos)
    if rho is not None and n > 1:
        loss = loss + tau * (rho - math.log(n - 1))
    return loss


def info_nce_loss(anchor: torch.Tensor, positive: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric in-batch InfoNCE with cosine similarity, averaged over the batch (a scalar).

    ``s_ik = cos(anchor_i, positive_k) / tau``; the loss is the mean of the cross-entropies of row
    ``i`` of ``s`` and of ``s^T`` against target ``i``: each view's own partner is the positive, the
    batch's other users the negatives (the positive stays in the denominator, unlike UCLR Eq. 3)."""
    sim = F.normalize(anchor, dim=-1) @ F.normalize(positive, dim=-1).T / tau
    target = torch.arange(anchor.shape[0], device=anchor.device)
    return 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))


def clip_temperatures(tau: torch.Tensor, tau_min: float, tau_max: float) -> None:
    """Clip temperatures in place into ``[tau_min, tau_max]`` (UCLR section 4.2)."""
    with torch.no_grad():
        tau.clamp_(tau_min, tau_max)


def concat_linear(layer: nn.Linear, x: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``layer(x)``; for a pair ``(first, second)``, ``layer`` of their concatenation ``[first ; second]``
    as the sum of its two column blocks' products, never building it (``first`` ``[n, 1, k]``, one per
    row, is multiplied once, not once per candidate of ``second`` ``[n, c, k']``)."""
    if isinstance(x, torch.Tensor):
        return layer(x)
    first, second = x
    k = first.shape[-1]
    return F.linear(first, layer.weight[:, :k]) + F.linear(second, layer.weight[:, k:], layer.bias)


class MLP(nn.Sequential):
    """``sizes[0] -> sizes[1] -> ... -> sizes[-1]`` with ReLU between layers (none after the last
    unless ``last_activation``)."""

    def __init__(self, sizes: Sequence[int], *, last_activation: bool = False, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2 or last_activation:
                layers.append(nn.ReLU())
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class LoRAEmbedding(nn.Module):
    """Low-rank adaptation of a frozen embedding table (UCLR section 3.5, Hu et al. 2022).

    ``W = W0 + B A`` with ``W0 [n, m]`` a frozen buffer, ``B [n, r]`` initialised to zero and
    ``A [r, m]`` random, so training starts exactly from ``W0`` and only ``A`` and ``B`` move.
    """

    def __init__(self, weight: torch.Tensor, rank: int, *, init_std: float = 0.01) -> None:
        super().__init__()
        n, m = weight.shape
        self.register_buffer("weight0", weight.detach().clone())
        self.lora_B = nn.Parameter(torch.zeros(n, rank))
        self.lora_A = nn.Parameter(torch.randn(rank, m) * init_std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.weight0[idx] + self.lora_B[idx] @ self.lora_A

    def merged(self) -> torch.Tensor:
        """The full adapted table ``W0 + B A``."""
        return self.weight0 + self.lora_B @ self.lora_A
