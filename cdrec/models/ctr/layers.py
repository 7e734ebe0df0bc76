"""Shared building blocks of the multi-domain multi-task CTR family.

* :class:`FeatureEmbedding` — one embedding table for all sparse fields (offsets per field),
  concatenated with the dense features;
* :class:`ExpertBank` — ``E`` one-layer experts ``ReLU(LayerNorm(W_e x + b_e))`` (M3oE Eq. 3)
  evaluated in one batched ``einsum``;
* :class:`Gates` — ``G`` softmax gates over ``E`` experts (MMoE / M3oE Eq. 4);
* :class:`Towers` — one two-layer MLP per (domain, task) (M3oE Eq. 8) applied to each sample's own
  domain;
* :class:`CTRModel` — the base class: forward gives the logits of a sample's own domain for every
  task, ``loss`` is the BCE summed over all (domain, task) heads (M3oE Eq. 12);
* :class:`CTRParams` — the hyper-parameters every model shares (embedding 16, section 3.3) and the
  training ``mode`` (Table 2: ``single`` = one model per (domain, task), ``mtl`` = a multi-task
  model per domain, ``mdl`` = a multi-domain model per task, ``mdmt`` = one model for all).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cdrec.config import ModelParams, bounded

MODES = ("single", "mtl", "mdl", "mdmt")


@dataclass
class CTRParams(ModelParams):
    """Shared hyper-parameters: embedding size 16 (M3oE 3.3), expert width, tower hidden width."""

    mode: str = "mdmt"
    embed_dim: int = bounded(16, 1)
    hidden: int = bounded(64, 1)
    tower_hidden: int = bounded(32, 1)


@dataclass
class CTRSchema:
    """Input sizes of one training scope (fields, dense width, numbers of domains and tasks)."""

    vocab_sizes: list[int]
    n_dense: int
    n_domains: int
    n_tasks: int


def _uniform_(tensor: torch.Tensor, fan_in: int) -> torch.Tensor:
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return nn.init.uniform_(tensor, -bound, bound)


class FeatureEmbedding(nn.Module):
    """Sparse codes ``[B, F]`` + dense ``[B, n_dense]`` -> ``[B, F * dim + n_dense]``."""

    def __init__(self, vocab_sizes: list[int], n_dense: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Embedding(int(sum(vocab_sizes)), dim)
        nn.init.normal_(self.table.weight, std=1e-2)
        offsets = torch.tensor([0, *vocab_sizes[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.out_dim = len(vocab_sizes) * dim + n_dense

    def forward(self, sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        emb = self.table(sparse + self.offsets).flatten(1)
        return torch.cat([emb, dense], dim=1) if dense.shape[1] else emb


class ExpertBank(nn.Module):
    """``E`` experts ``ReLU(LayerNorm(W_e x + b_e))`` (M3oE Eq. 3).

    ``x`` is ``[B, in]`` (every expert sees the same input: one matrix product for all experts) or
    ``[B, E, in]`` (one input per expert); the output is ``[B, E, out]``."""

    def __init__(self, n_experts: int, in_dim: int, out_dim: int, *, norm: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(_uniform_(torch.empty(in_dim, n_experts, out_dim), in_dim))
        self.bias = nn.Parameter(_uniform_(torch.empty(n_experts, out_dim), in_dim))
        self.norm = norm
        if norm:
            self.gamma = nn.Parameter(torch.ones(n_experts, out_dim))
            self.beta = nn.Parameter(torch.zeros(n_experts, out_dim))
        self.n_experts, self.out_dim = n_experts, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            z = (x @ self.weight.flatten(1)).view(x.shape[0], self.n_experts, self.out_dim)
        else:
            z = torch.einsum("bei,ieo->beo", x, self.weight)
        z = z + self.bias
        if self.norm:
            z = F.layer_norm(z, (self.out_dim,)) * self.gamma + self.beta
        return F.relu(z)


class Gates(nn.Module):
    """``G`` linear gates with softmax over ``E`` experts: ``[B, in]`` (or ``[B, G, in]``) -> ``[B, G, E]``."""

    def __init__(self, n_gates: int, in_dim: int, n_experts: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(_uniform_(torch.empty(in_dim, n_gates, n_experts), in_dim))
        self.bias = nn.Parameter(torch.zeros(n_gates, n_experts))
        self.n_gates, self.n_experts = n_gates, n_experts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            z = (x @ self.weight.flatten(1)).view(x.shape[0], self.n_gates, self.n_experts)
        else:
            z = torch.einsum("bgi,ige->bge", x, self.weight)
        return torch.softmax(z + self.bias, dim=-1)


def mix(weights: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Gate-weighted sum: weights ``[B, G, E]``, experts ``[B, E, H]`` -> ``[B, G, H]``."""
    return (weights.unsqueeze(-1) * experts.unsqueeze(1)).sum(2)


def own_domain(x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
    """Pick each sample's own domain from ``[B, D, ...]`` -> ``[B, ...]``."""
    return x[torch.arange(x.shape[0], device=x.device), domain]


class Towers(nn.Module):
    """One tower ``W2 ReLU(W1 x + b1) + b2`` per (domain, task) (M3oE Eq. 8).

    ``x`` is ``[B, T, in]`` (a representation per task) or ``[B, in]``; every domain's towers are
    evaluated in one ``einsum`` and each sample keeps its own domain's logits ``[B, T]``."""

    def __init__(self, n_domains: int, n_tasks: int, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.n_tasks = n_tasks
        self.w1 = nn.Parameter(_uniform_(torch.empty(n_domains, n_tasks, in_dim, hidden), in_dim))
        self.b1 = nn.Parameter(_uniform_(torch.empty(n_domains, n_tasks, hidden), in_dim))
        self.w2 = nn.Parameter(_uniform_(torch.empty(n_domains, n_tasks, hidden), hidden))
        self.b2 = nn.Parameter(torch.zeros(n_domains, n_tasks))

    def forward(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            d, t, i, h = self.w1.shape
            z = (x @ self.w1.permute(2, 0, 1, 3).reshape(i, d * t * h)).view(-1, d, t, h)
        else:
            z = torch.einsum("bti,dtih->bdth", x, self.w1)
        hidden = F.relu(z + self.b1)
        logits = torch.einsum("bdth,dth->bdt", hidden, self.w2) + self.b2
        return own_domain(logits, domain)


class CTRModel(nn.Module):
    """Base class: ``forward(batch) -> [B, T]`` logits of each sample's own domain."""

    task = "ctr"
    modes: tuple[str, ...] = ("mtl", "mdl", "mdmt")

    def __init__(self, schema: CTRSchema, params: CTRParams) -> None:
        super().__init__()
        self.schema = schema
        self.params = params
        self.n_domains, self.n_tasks = schema.n_domains, schema.n_tasks
        self.embedding = FeatureEmbedding(schema.vocab_sizes, schema.n_dense, params.embed_dim)
        self.in_dim = self.embedding.out_dim

    @classmethod
    def from_schema(cls, schema: CTRSchema, params: CTRParams) -> "CTRModel":
        return cls(schema, params)

    def logits(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} must implement logits")

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.embedding(batch["sparse"], batch["dense"])
        return self.logits(x, batch["domain"])

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.sigmoid(self(batch))

    def head_loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``sum_d sum_t BCE(y_hat_dt, y_dt)`` (M3oE Eq. 12): each head's mean BCE over its samples."""
        bce = F.binary_cross_entropy_with_logits(logits, batch["label"], reduction="none")
        onehot = F.one_hot(batch["domain"], self.n_domains).to(bce.dtype)
        per_head = onehot.T @ bce  # [D, T]
        counts = onehot.sum(0).clamp_min(1.0).unsqueeze(1)
        return (per_head / counts).sum()

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head_loss(self(batch), batch)
