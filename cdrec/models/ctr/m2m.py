"""M2M (Zhang et al., WSDM 2022, "Leaving No One Behind"): multi-scenario multi-task meta learning.

Read top to bottom like the paper's method section (its *scenarios* are our domains):

1. Backbone network.
   * Shared bottom embedding: the CTR view's field embeddings (``FeatureEmbedding``).
   * Transformer layer: ``MH(X) = concat(head_1, ..., head_h) W^H`` with
     ``head_i = Attention(X W_i^Q, X W_i^K, X W_i^V)``, followed by the position-wise feed-forward
     layer. The paper runs it over advertisers' behaviour sequences; CTR rows have no sequence, so we
     let the fields attend to each other (a choice; ``transformer_layers = 0`` feeds the flat
     embedding straight to the experts). Dense features join after it: ``F = [MH(X), dense]``.
   * Expert view: ``E_i = f_i(F)``, ``i = 1..n_experts`` (one-layer experts, the family's
     :class:`ExpertBank`).
   * Task view: ``T_t = MLP(e_t)`` of a learnt task embedding ``e_t``.
   * Scenario knowledge: ``S_d = MLP(e_d)`` of a learnt domain embedding ``e_d`` (the paper also
     feeds scenario attributes; our domains carry only their identity), of size ``embed_dim`` (a
     choice: it keeps the weight generators ``V_w``, ``knowledge x (in * out)``, small).
2. Meta unit: an MLP whose weights are generated from the scenario knowledge,
   ``W^(k) = reshape(V_w^(k) S + b_w^(k))``, ``b^(k) = V_b^(k) S + b_b^(k)``,
   ``h^(k) = sigma(W^(k) h^(k-1) + b^(k))``. ``S`` depends on the domain only, so each batch
   generates one set of weights per domain. We scale the generated ``W`` by ``1 / sqrt(fan_in)`` so a
   generated layer starts at the size of a default-initialised one (a re-parametrisation of
   ``V_w``; the paper states no initialisation).
3. Meta attention module: ``a_{t,i} = v^T Meta([E_i || T_t])``,
   ``alpha_{t,i} = softmax_i(a_{t,i})``, ``R_t = sum_i alpha_{t,i} E_i`` (one meta unit for every
   task: the task enters through ``T_t``).
4. Meta tower module: residual meta layers ``L_t^(j) = sigma(W^(j)(S) L_t^(j-1) + b^(j)(S) + L_t^(j-1))``
   from ``L_t^(0) = R_t``; each task owns its tower's weight generators (``tower_per_task``, a
   choice: the paper draws one meta tower per task; ``false`` shares one).
5. Prediction: one two-layer tower per task, shared by the domains (the meta tower already made the
   representation domain-specific), and a sigmoid. The paper fits counts with a Poisson loss; click
   and like are binary, so the family's per-head BCE (M3oE Eq. 12) replaces it.

The M3oE authors' public code has no M2M, so their Table 2 row cannot be matched line by line; their
lab's Scenario-Wise-Rec has a single-task M2M whose sizes we follow (4 experts, one meta layer in the
attention and in the tower). We do not follow two of its details: its Transformer takes the whole
batch as one sequence (samples attend to each other), and its task view is computed from the domain
embedding (we learn one code per task, as the paper's task view).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cdrec.config import bounded
from cdrec.errors import CdrecError
from cdrec.models.ctr.layers import CTRModel, CTRParams, CTRSchema, ExpertBank, Towers, _uniform_
from cdrec.models.registry import register


@dataclass
class M2MParams(CTRParams):
    """``n_experts`` 4 and one meta layer in the attention and the tower (the M3oE authors' lab's
    Scenario-Wise-Rec defaults); ``n_heads`` of the field Transformer must divide ``embed_dim``."""

    mode: str = "mdmt"
    n_experts: int = bounded(4, 1)
    transformer_layers: int = bounded(1, 0)
    n_heads: int = bounded(2, 1)
    attention_layers: int = bounded(1, 1)
    tower_layers: int = bounded(1, 1)
    tower_per_task: bool = True


def _learnt_code(n: int, embed_dim: int, out_dim: int) -> nn.Sequential:
    """``MLP(e_k)`` of a learnt embedding per index ``k`` (the task view and the scenario knowledge)."""
    return nn.Sequential(nn.Embedding(n, embed_dim), nn.Linear(embed_dim, out_dim), nn.ReLU())


def per_domain(h: torch.Tensor, domain: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``h W_d + b_d`` with each sample's own domain ``d``: ``h [B, G, M, in]``, ``weight [D, G, in, out]``,
    ``bias [D, G, out]`` -> ``[B, G, M, out]``. Rows are grouped by domain (one product per domain)."""
    order = torch.argsort(domain, stable=True)
    counts = torch.bincount(domain, minlength=weight.shape[0]).tolist()
    chunks = torch.split(h[order], counts)
    out = torch.cat([torch.einsum("bgmi,gio->bgmo", c, weight[d]) + bias[d].unsqueeze(1) for d, c in enumerate(chunks)])
    return out[torch.argsort(order)]


class MetaLayer(nn.Module):
    """One generated layer of ``groups`` independent weight sets: ``W = reshape(V_w S + b_w) / sqrt(in)``,
    ``b = V_b S + b_b``, from the knowledge ``S [D, k]`` of every domain."""

    def __init__(self, knowledge_dim: int, in_dim: int, out_dim: int, groups: int = 1) -> None:
        super().__init__()
        self.shape = (groups, in_dim, out_dim)
        self.gen_weight = nn.Linear(knowledge_dim, groups * in_dim * out_dim)
        self.gen_bias = nn.Linear(knowledge_dim, groups * out_dim)

    def forward(self, h: torch.Tensor, domain: torch.Tensor, knowledge: torch.Tensor) -> torch.Tensor:
        g, i, o = self.shape
        weight = self.gen_weight(knowledge).view(-1, g, i, o) / math.sqrt(i)
        bias = self.gen_bias(knowledge).view(-1, g, o)
        return per_domain(h, domain, weight, bias)


class MetaUnit(nn.Module):
    """``h^(k) = sigma(W^(k)(S) h^(k-1) + b^(k)(S))`` for ``k = 1..K`` (the paper's meta unit)."""

    def __init__(self, knowledge_dim: int, dims: list[int]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MetaLayer(knowledge_dim, i, o) for i, o in zip(dims[:-1], dims[1:]))

    def forward(self, h: torch.Tensor, domain: torch.Tensor, knowledge: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            h = F.relu(layer(h, domain, knowledge))
        return h


@register("m2m", family="ctr", params=M2MParams)
class M2M(CTRModel):
    def __init__(self, schema: CTRSchema, params: M2MParams) -> None:
        if params.embed_dim % params.n_heads:
            raise CdrecError(f"model_params.n_heads (m2m): expected a divisor of embed_dim = {params.embed_dim}, got {params.n_heads}")
        super().__init__(schema, params)
        D, T, H = self.n_domains, self.n_tasks, params.hidden
        self.n_fields, self.n_dense = len(schema.vocab_sizes), schema.n_dense
        # --- backbone: Transformer layer over the fields, expert view, task view, scenario knowledge
        layer = nn.TransformerEncoderLayer(params.embed_dim, params.n_heads, dim_feedforward=H, dropout=0.0, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, params.transformer_layers, enable_nested_tensor=False) if params.transformer_layers else None
        self.experts = ExpertBank(params.n_experts, self.in_dim, H)
        self.task_view = _learnt_code(T, params.embed_dim, H)
        self.scenario = _learnt_code(D, params.embed_dim, params.embed_dim)
        # --- meta attention: v^T Meta([E_i || T_t])
        self.attention = MetaUnit(params.embed_dim, [2 * H] + [H] * params.attention_layers)
        self.v = nn.Parameter(_uniform_(torch.empty(H), H))
        # --- meta tower: residual meta layers, one generator set per task (or one shared)
        self.tower_groups = T if params.tower_per_task else 1
        self.meta_tower = nn.ModuleList(MetaLayer(params.embed_dim, H, H, self.tower_groups) for _ in range(params.tower_layers))
        # --- prediction: one tower per task, shared by the domains
        self.towers = Towers(1, T, H, params.tower_hidden)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``F = [MH(X), dense]``: the Transformer layer over the field embeddings."""
        if self.transformer is None:
            return x
        b = x.shape[0]
        fields = x[:, : x.shape[1] - self.n_dense].view(b, self.n_fields, -1)
        return torch.cat([self.transformer(fields).flatten(1), x[:, x.shape[1] - self.n_dense :]], dim=1)

    def meta_attention(self, experts: torch.Tensor, domain: torch.Tensor, knowledge: torch.Tensor) -> torch.Tensor:
        """``R_t = sum_i softmax_i(v^T Meta([E_i || T_t])) E_i``: experts ``[B, E, H]`` -> ``[B, T, H]``."""
        b, n_exp, h = experts.shape
        tasks = self.task_view(torch.arange(self.n_tasks, device=experts.device))  # [T, H]
        pairs = torch.cat([experts.unsqueeze(1).expand(-1, self.n_tasks, -1, -1), tasks.view(1, -1, 1, h).expand(b, -1, n_exp, -1)], dim=-1)
        scores = self.attention(pairs.view(b, 1, self.n_tasks * n_exp, 2 * h), domain, knowledge) @ self.v
        alpha = torch.softmax(scores.view(b, self.n_tasks, n_exp), dim=-1)
        return alpha @ experts

    def tower_input(self, r: torch.Tensor, domain: torch.Tensor, knowledge: torch.Tensor) -> torch.Tensor:
        """``L^(j) = sigma(W^(j)(S) L^(j-1) + b^(j)(S) + L^(j-1))`` from ``L^(0) = R``: ``[B, T, H]``."""
        b, t, h = r.shape
        groups = r.view(b, t, 1, h) if self.tower_groups == t else r.view(b, 1, t, h)
        for layer in self.meta_tower:
            groups = F.relu(layer(groups, domain, knowledge) + groups)
        return groups.reshape(b, t, h)

    def logits(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        knowledge = self.scenario(torch.arange(self.n_domains, device=x.device))  # S_d for every domain [D, embed_dim]
        experts = self.experts(self.features(x))  # [B, E, H]
        r = self.meta_attention(experts, domain, knowledge)
        return self.towers(self.tower_input(r, domain, knowledge), torch.zeros_like(domain))
