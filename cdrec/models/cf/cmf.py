"""CMF: Collective Matrix Factorization (Singh & Gordon, "Relational Learning via Collective Matrix
Factorization", KDD 2008), the classic two-domain baseline (dual-target).

Two relations that share an entity type are factorised together: the source and the target
interaction matrices ``X ~ U V^T`` and ``Y ~ U Z^T`` share the **user factors** ``U`` (Eq. 1's
``alpha`` weights the two reconstruction losses, ``alpha * D(X || U V^T) + (1 - alpha) D(Y || U Z^T)``
plus L2 on the factors). A user's factors learn from both domains, which is the whole transfer.

Choices (:mod:`cdrec.models.cf.two_domain` for the pair and the evaluation):

* **Loss**: BPR per domain on cdrec's implicit data instead of the paper's Bregman divergences
  (squared loss for ratings); ``alpha`` is ``model_params.source_weight`` (0.5: both domains alike).
* One item table holds ``V`` and ``Z`` (each item belongs to one domain); L2 ``reg`` on the batch's
  rows, as BPR-MF does, taken from the rows the step scores (each table read once per step).
* An epoch walks every training row of both domains once, as the paper's fit visits every observed
  entry of both relations per iteration.
* With ``source_weight = 0.5`` CMF is BPR-MF trained jointly on both domains, one user vector per user:
  the baseline the transfer models must beat.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cdrec.data.splits import Split
from cdrec.models.cf.two_domain import PAIR_NEEDS, TwoDomainModel, TwoDomainParams, inner_products
from cdrec.models.registry import register


@dataclass
class CMFParams(TwoDomainParams):
    """The pair, ``source_weight`` (the paper's ``alpha``), embedding size and L2 weight."""


@register("cmf", family="cf", params=CMFParams, min_domains=2, max_domains=2, needs=PAIR_NEEDS)
class CMF(TwoDomainModel):
    """Shared user factors, one item table, BPR per domain weighted by ``alpha``."""

    def __init__(self, split: Split, params: CMFParams) -> None:
        super().__init__()
        self._init_pair(split, params)
        self.user_emb = nn.Embedding(self.n_users, params.dim, sparse=True)  # U, shared by both domains
        self.item_emb = nn.Embedding(self.n_items, params.dim, sparse=True)  # V (source items) and Z (target items)
        self.init_tables(self.user_emb, self.item_emb)

    def domain_scores(self, users: torch.Tensor, items: torch.Tensor, domain: int) -> torch.Tensor:
        return inner_products(self.user_emb(users), self.item_emb(items))

    def row_scores(self, users: torch.Tensor, items: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        """Both domains' rows in one product (a score is ``U_u . V_i`` in either domain)."""
        return self.domain_scores(users, items, 0)

    def scored_batch(self, batch: dict[str, torch.Tensor], domains: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pair's scores and the L2 term from one read of each table (the rows scored are the rows
        regularised, so each table gets one row-sparse gradient per step)."""
        user = self.user_emb(batch["user"])
        items = self.item_emb(torch.stack([batch["pos"], batch["neg"]], 1))  # [B, 2, k]
        return inner_products(user, items), user.pow(2).sum(-1) + items.pow(2).sum((1, 2))
