"""STAR (Sheng et al., CIKM 2021): star topology adaptive recommender for multi-domain CTR.

* Partitioned normalization: ``(gamma * gamma_d) (z - E_d) / sqrt(Var_d + eps) + (beta + beta_d)``
  with statistics per domain;
* star topology FC layers: weight ``W_d (element-wise) W`` and bias ``b_d + b`` (shared centre times
  domain-specific weights);
* an auxiliary network on the domain indicator whose logit is added to the main one.

STAR is a multi-domain model (M3oE Table 2 (c)); in the MDL mode it runs once per task, with
several tasks its last layer outputs one logit per task."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cdrec.config import bounded
from cdrec.models.ctr.layers import CTRModel, CTRParams, CTRSchema, _uniform_, own_domain
from cdrec.models.registry import register


@dataclass
class STARParams(CTRParams):
    mode: str = "mdl"
    momentum: float = bounded(0.1, 0, 1, lo_open=True)


class PartitionedNorm(nn.Module):
    """Batch normalization with statistics and affine terms per domain (STAR section 4.3)."""

    def __init__(self, n_domains: int, dim: int, momentum: float, eps: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.gamma_d = nn.Parameter(torch.ones(n_domains, dim))
        self.beta_d = nn.Parameter(torch.zeros(n_domains, dim))
        self.register_buffer("running_mean", torch.zeros(n_domains, dim))
        self.register_buffer("running_var", torch.ones(n_domains, dim))
        self.momentum, self.eps, self.n_domains = momentum, eps, n_domains

    def forward(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        if self.training:
            onehot = F.one_hot(domain, self.n_domains).to(x.dtype)  # [B, D]
            counts = onehot.sum(0)
            present = counts > 1
            mean = (onehot.T @ x) / counts.clamp_min(1).unsqueeze(1)
            var = (onehot.T @ (x - mean[domain]) ** 2) / counts.clamp_min(1).unsqueeze(1)
            with torch.no_grad():
                m = self.momentum * present.to(x.dtype).unsqueeze(1)
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach())
            mean = torch.where(present.unsqueeze(1), mean, self.running_mean)
            var = torch.where(present.unsqueeze(1), var, self.running_var)
        else:
            mean, var = self.running_mean, self.running_var
        z = (x - mean[domain]) / torch.sqrt(var[domain] + self.eps)
        return z * (self.gamma * self.gamma_d[domain]) + (self.beta + self.beta_d[domain])


class StarLinear(nn.Module):
    """``(W_d * W)^T x + b_d + b`` (STAR Eq. 3): shared centre and per-domain weights."""

    def __init__(self, n_domains: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.w = nn.Parameter(_uniform_(torch.empty(in_dim, out_dim), in_dim))
        self.b = nn.Parameter(torch.zeros(out_dim))
        self.w_d = nn.Parameter(torch.ones(n_domains, in_dim, out_dim))
        self.b_d = nn.Parameter(torch.zeros(n_domains, out_dim))

    def forward(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("bi,dio->bdo", x, self.w_d * self.w)
        return own_domain(out, domain) + self.b_d[domain] + self.b


@register("star", family="ctr", params=STARParams)
class STAR(CTRModel):
    def __init__(self, schema: CTRSchema, params: STARParams) -> None:
        super().__init__(schema, params)
        self.norm = PartitionedNorm(self.n_domains, self.in_dim, params.momentum)
        self.layers = nn.ModuleList(
            [StarLinear(self.n_domains, self.in_dim, params.hidden), StarLinear(self.n_domains, params.hidden, params.tower_hidden)]
        )
        self.out = StarLinear(self.n_domains, params.tower_hidden, self.n_tasks)
        self.aux_emb = nn.Embedding(self.n_domains, params.embed_dim)
        self.aux = nn.Sequential(nn.Linear(params.embed_dim, params.tower_hidden), nn.ReLU(), nn.Linear(params.tower_hidden, self.n_tasks))

    def logits(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        h = self.norm(x, domain)
        for layer in self.layers:
            h = F.relu(layer(h, domain))
        return self.out(h, domain) + self.aux(self.aux_emb(domain))
