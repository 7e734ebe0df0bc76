"""HeroGraph (Cui, Wei, Zhang, Zhang: "HeroGRAPH: A Heterogeneous Graph Framework for Multi-Target
Cross-Domain Recommendation", ORSUM @ RecSys 2020), a cross-domain baseline of UCLR's Table 2.

One **shared graph** collects the users and the items of every domain (a user's interactions in all
domains are its edges), so cross-domain information reaches every domain from one model without
pairwise domain relations. Each node has a graph embedding, aggregated from its neighbours in all
domains; each domain keeps its **within-domain embeddings** (a user table per domain, the items'
own table). A user's vector in domain ``d`` combines its within-domain embedding ``w_u^d`` with its
graph embedding ``g_u``, an item's combines ``w_i`` with ``g_i``, the score is their inner product
and training sums every domain's BPR loss (:mod:`cdrec.models.cf.domain_graph`).

Choices where the paper leaves room or where we differ (the authors' code is not public):

* **Neighbour aggregation**: the paper aggregates sampled neighbours with a recurrent attention;
  we propagate with LightGCN's light graph convolution over the whole shared graph
  (``E^(k+1) = D^-1/2 A D^-1/2 E^(k)``, layer mean, ``layers`` hops; LightGCN Eqs. 7-8), which is
  vectorized (one sparse product per hop) and deterministic. The attention aggregator is not done.
* **Combination** (``combine``): ``"sum"`` (default) scores ``(w_u^d + g_u) . (w_i + g_i)``;
  ``"concat"`` scores ``[w_u^d ; g_u] . [w_i ; g_i] = w_u^d . w_i + g_u . g_i`` (the two views
  scored separately and added).
* L2 ``reg`` on the batch's layer-0 embeddings (within-domain and graph), as LightGCN's Eq. 15.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cdrec.data.splits import Split
from cdrec.errors import require
from cdrec.models.cf.domain_graph import DomainGraphModel
from cdrec.models.cf.lightgcn import LightGCNParams, layer_mean, normalized_adjacency
from cdrec.models.registry import register

COMBINE = ("sum", "concat")


@dataclass
class HeroGraphParams(LightGCNParams):
    """LightGCN's options (``layers``: hops on the shared graph) and how graph and within-domain
    embeddings combine."""

    combine: str = "sum"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.combine in COMBINE, f"model_params.combine: expected sum or concat, got {self.combine!r}")


@register("herograph", family="cf", params=HeroGraphParams, min_domains=2,
          needs="its shared graph and per-domain user vectors learn across several domains")
class HeroGraph(DomainGraphModel):
    """Shared-graph embeddings combined with each domain's own embeddings."""

    def __init__(self, split: Split, params: HeroGraphParams) -> None:
        super().__init__()
        self.params = params
        data = split.data
        train = split.train
        self._init_domains(split, normalized_adjacency(train.users, train.items, data.n_users, data.n_items))
        # sparse: a lookup's gradient is the batch's rows (GraphPropagation.configure_optimizers makes it dense)
        self.domain_user_emb = nn.Embedding(data.n_domains * data.n_users, params.dim, sparse=True)  # w_u^d at row d * n_users + u
        self.item_emb = nn.Embedding(data.n_items, params.dim, sparse=True)  # w_i (each item is in one domain)
        self.graph_user_emb = nn.Embedding(data.n_users, params.dim, sparse=True)  # layer-0 node embeddings of the shared graph
        self.graph_item_emb = nn.Embedding(data.n_items, params.dim, sparse=True)
        for table in (self.domain_user_emb, self.item_emb, self.graph_user_emb, self.graph_item_emb):
            nn.init.normal_(table.weight, std=params.init_std)

    def embed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Graph embeddings ``g_u``, ``g_i`` of every user and item on the shared graph."""
        final = layer_mean(self._csr(), torch.cat([self.graph_user_emb.weight, self.graph_item_emb.weight]), self.params.layers)
        return final[: self.n_users], final[self.n_users :]

    def _combine(self, own: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
        return own + graph if self.params.combine == "sum" else torch.cat([own, graph], dim=-1)

    def domain_users(self, embedded: tuple[torch.Tensor, torch.Tensor], users: torch.Tensor, domain: int) -> torch.Tensor:
        return self._combine(self.domain_user_emb(domain * self.n_users + users), embedded[0][users])

    def domain_items(self, embedded: tuple[torch.Tensor, torch.Tensor], items: torch.Tensor, domain: int) -> torch.Tensor:
        return self._combine(self.item_emb(items), embedded[1][items])

    def ego_l2(self, users: torch.Tensor, domains: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        tables = [self.domain_user_emb(domains * self.n_users + users), self.graph_user_emb(users),
                  self.item_emb(pos), self.graph_item_emb(pos), self.item_emb(neg), self.graph_item_emb(neg)]
        return sum(t.pow(2).sum(-1) for t in tables)
