"""EMCDR: Embedding and Mapping for Cross-Domain Recommendation (Man, Shen, Jin, Cheng, IJCAI 2017),
single-target.

Three steps (paper section 3): **latent factor modelling** learns each domain's user and item
factors separately (MF, Eq. 1, or BPR, Eq. 2); **latent space mapping** fits a function ``f`` from a
user's source factors to its target factors on the overlapping users (Eq. 5,
``min sum_u ||f(U_s u) - U_t u||^2``, ``f`` linear, Eq. 6, or an MLP with one hidden layer, Eq. 7);
**cross-domain recommendation** scores the target domain with ``f(U_s u)``.

Choices (:mod:`cdrec.models.cf.two_domain` for the pair and the target-only evaluation):

* **Latent factors** by BPR (the paper's Eq. 2 option) on each domain's rows: one user table per
  domain, one item table; L2 ``reg`` on the batch's rows.
* **One run instead of two stages**: the mapping's loss is added to the BPR losses with its input and
  output detached, so it never moves the factors (the stage separation of the paper) and it fits the
  factors of the current step; when the factors converge the mapping chases a fixed target, which
  is the paper's second stage. ``map_weight`` scales it.
* **Who gets the mapped vector** (``mapped_users``): ``overlap`` (default, RecBole-CDR's choice)
  scores every overlapping user's target items with ``f(U_s u)``; ``cold`` (the paper's cold-start
  setting) only users with no target training row, the rest keep their own ``U_t u``. Under
  leave-one-out every evaluated user has a target training row, so ``cold`` transfers nothing there.
* ``mapping``: ``mlp`` (Eq. 7; ``mapping_hidden`` units, default ``2 * dim``, ReLU where the paper
  uses tanh) or ``linear`` (Eq. 6).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, Iterator

import torch
from torch import nn

from cdrec.config import bounded
from cdrec.data.splits import Split
from cdrec.errors import require
from cdrec.models.cf.blocks import MLP
from cdrec.models.cf.two_domain import PAIR_NEEDS, TwoDomainModel, TwoDomainParams, inner_products
from cdrec.models.registry import register

MAPPINGS = ("mlp", "linear")


@dataclass
class EMCDRParams(TwoDomainParams):
    """The pair, factor size and L2, the mapping function and who is scored with it."""

    mapping: str = "mlp"
    mapping_hidden: int | None = bounded(None, 1)
    map_weight: float = bounded(1.0, 0, lo_open=True)
    mapped_users: str = "overlap"
    MAPPED_USERS: ClassVar[tuple[str, ...]] = ("overlap", "cold")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.mapping in MAPPINGS, f"model_params.mapping: expected mlp or linear, got {self.mapping!r}")
        require(self.mapped_users in self.MAPPED_USERS,
                f"model_params.mapped_users: expected {' or '.join(self.MAPPED_USERS)}, got {self.mapped_users!r}")


@register("emcdr", family="cf", params=EMCDRParams, min_domains=2, max_domains=2, needs=PAIR_NEEDS)
class EMCDR(TwoDomainModel):
    """Per-domain BPR factors and a source-to-target mapping of the overlapping users' factors."""

    target_only = True

    def __init__(self, split: Split, params: EMCDRParams) -> None:
        super().__init__()
        self._init_pair(split, params)
        self.domain_user_emb = nn.Embedding(2 * self.n_users, params.dim, sparse=True)  # U_d u at row d * n_users + u
        self.item_emb = nn.Embedding(self.n_items, params.dim, sparse=True)
        self.init_tables(self.domain_user_emb, self.item_emb)
        hidden = params.mapping_hidden or 2 * params.dim
        self.mapping = MLP([params.dim, hidden, params.dim]) if params.mapping == "mlp" else nn.Linear(params.dim, params.dim, bias=False)
        who = {"overlap": self.overlap, "cold": self.present[self.source] & ~self.present[self.target], "all": torch.ones_like(self.overlap)}
        self.register_buffer("mapped", who[params.mapped_users], persistent=False)
        self._own_factors = False

    @contextmanager
    def own_factors(self) -> Iterator[None]:
        """Score with each domain's own factors (the latent factor modelling step)."""
        self._own_factors = True
        try:
            yield
        finally:
            self._own_factors = False

    def user_factors(self, users: torch.Tensor, domain: int) -> torch.Tensor:
        own = self.domain_user_emb(domain * self.n_users + users)
        if domain != self.target or self._own_factors:
            return own
        mapped = self.mapping(self.domain_user_emb(self.source * self.n_users + users))
        return torch.where(self.mapped[users][:, None], mapped, own)

    def domain_scores(self, users: torch.Tensor, items: torch.Tensor, domain: int) -> torch.Tensor:
        return inner_products(self.user_factors(users, domain), self.item_emb(items))

    def row_scores(self, users: torch.Tensor, items: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        """With each domain's own factors (training), both domains' rows in one product; else per domain."""
        if not self._own_factors:
            return super().row_scores(users, items, domains)
        return inner_products(self.domain_user_emb(domains * self.n_users + users), self.item_emb(items))

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with self.own_factors():
            return super().loss(batch)

    def batch_l2(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        domains = self.item_domain[batch["pos"]]
        tables = (self.domain_user_emb(domains * self.n_users + batch["user"]), self.item_emb(batch["pos"]), self.item_emb(batch["neg"]))
        return sum(t.pow(2).sum(-1) for t in tables)

    def extra_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Eq. 5 on the batch's overlapping users (their factors detached): mean squared error."""
        users = batch["user"][self.overlap[batch["user"]]]
        if users.numel() == 0:
            return self.mapping(torch.zeros(1, self.params.dim, device=users.device)).sum() * 0.0
        source = self.domain_user_emb(self.source * self.n_users + users).detach()
        target = self.domain_user_emb(self.target * self.n_users + users).detach()
        return self.params.map_weight * (self.mapping(source) - target).pow(2).sum(-1).mean()
