"""GA-MTCDR (Zhu, Wang, Zhou, Chen, Li, Liu: "A Unified Framework for Cross-Domain and Cross-System
Recommendations", TKDE 2023; the multi-target form of GA-DTCDR, Zhu et al., IJCAI 2020), a
cross-domain baseline of UCLR's Table 2.

1. **Graph embedding per domain**: each domain has its own user-item graph and its own user
   embeddings ``P_u^k`` (a user has one node in every domain's graph) and item embeddings.
2. **Element-wise attention** combines a user's embeddings of every domain into its embedding for
   target domain ``n``: ``C_u^n = sum_k a_u^{n,k} * P_u^k`` (``*`` element-wise), with
   ``a_u^{n,k} = softmax_k(A_u^{n,k})`` per element, so the weights of every element sum to 1 over
   the domains (GA-DTCDR's ``W_A`` and ``1 - W_A`` for two domains). Only the domains the user has
   training interactions in take part (GA-DTCDR combines the common users' embeddings; others keep
   their own); a user with none keeps the target domain's own embedding.
3. **Prediction per domain**: ``y_ui = f_n(C_u^n) . g_n(Q_i)`` with per-domain towers ``f_n``,
   ``g_n``, trained with each domain's BPR loss (:mod:`cdrec.models.cf.domain_graph`).

Choices where the papers leave room or where we differ:

* **Graph embedding**: the papers embed each domain's heterogeneous graph (ratings plus side
  information: reviews, tags, profiles) with Node2vec, trained beforehand and fixed. We have no side
  information for most data, and a random-walk embedding run outside the model is neither cheap nor
  vectorized on CPU, so each domain's graph is the training user-item bipartite graph and its
  embedding is trained end to end with LightGCN's light graph convolution (``layers`` hops, layer
  mean; LightGCN Eqs. 7-8). All domains' graphs are disjoint blocks of one sparse matrix over
  ``D * n_users + n_items`` nodes, so one sparse product per hop propagates every domain. Node2vec
  is not done.
* **Attention weights** (``attention``): ``"user"`` (default) learns a weight vector per user, target
  and source domain, as the authors' code does (``[n_users, D, D, dim]`` parameters, initialised to
  equal weights); ``"domain"`` shares one per target and source domain (``[D, D, dim]``), for data
  with very many users.
* **Prediction**: the papers' towers are ReLU MLPs ending in a cosine similarity trained with a
  cross-entropy on normalised ratings; we rank implicit feedback, so the towers (``towers``: the
  widths after ``dim``, ReLU between layers, linear last) feed an inner product trained with BPR.
  The default ``towers: []`` scores the combined embedding against the item embedding directly.
* L2 ``reg`` on the batch's layer-0 user (target domain) and item embeddings (LightGCN's Eq. 15);
  GA-DTCDR-P's personalised training strategy is not done.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cdrec.config import bounded
from cdrec.data.splits import Split
from cdrec.errors import require
from cdrec.models.cf.blocks import MLP
from cdrec.models.cf.domain_graph import DomainGraphModel
from cdrec.models.cf.lightgcn import LightGCNParams, layer_mean, normalized_adjacency
from cdrec.models.registry import register

ATTENTION = ("user", "domain")


@dataclass
class GAMTCDRParams(LightGCNParams):
    """LightGCN's options (``layers``: hops on each domain's graph), attention granularity and the
    prediction towers."""

    attention: str = "user"
    towers: list[int] = bounded(lo=1, default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.attention in ATTENTION, f"model_params.attention: expected user or domain, got {self.attention!r}")


@register("ga-mtcdr", family="cf", params=GAMTCDRParams, min_domains=2,
          needs="its attention combines a user's embeddings across several domains")
class GAMTCDR(DomainGraphModel):
    """Per-domain graph embeddings, element-wise attention over domains, per-domain prediction."""

    def __init__(self, split: Split, params: GAMTCDRParams) -> None:
        super().__init__()
        self.params = params
        data = split.data
        n_users, n_domains = data.n_users, data.n_domains
        domains = self.domain_rows(split)
        # every domain's graph as one block-diagonal graph: user u of domain d is node d * n_users + u
        self._init_domains(split, normalized_adjacency(domains * n_users + split.train.users, split.train.items, n_domains * n_users, data.n_items))
        self.user_emb = nn.Embedding(n_domains * n_users, params.dim, sparse=True)  # sparse: the L2 lookups' gradients are the batch's rows
        self.item_emb = nn.Embedding(data.n_items, params.dim, sparse=True)
        nn.init.normal_(self.user_emb.weight, std=params.init_std)
        nn.init.normal_(self.item_emb.weight, std=params.init_std)
        rows = n_users if params.attention == "user" else 1
        self.attention_logits = nn.Parameter(torch.zeros(rows, n_domains, n_domains, params.dim))  # [user, target, source, dim]
        present = torch.zeros(n_domains, n_users, dtype=torch.bool)
        present[torch.as_tensor(domains), torch.as_tensor(np.array(split.train.users, dtype=np.int64))] = True
        self.register_buffer("present", present, persistent=False)
        sizes = [params.dim, *params.towers]
        self.user_towers = nn.ModuleList(MLP(sizes) if params.towers else nn.Identity() for _ in range(n_domains))
        self.item_towers = nn.ModuleList(MLP(sizes) if params.towers else nn.Identity() for _ in range(n_domains))

    def embed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every domain's graph embeddings: users ``[D, n_users, dim]``, items ``[n_items, dim]``."""
        final = layer_mean(self._csr(), torch.cat([self.user_emb.weight, self.item_emb.weight]), self.params.layers)
        cut = self.n_domains * self.n_users
        return final[:cut].view(self.n_domains, self.n_users, -1), final[cut:]

    def attention_weights(self, users: torch.Tensor, domain: int) -> torch.Tensor:
        """``[n, D, dim]`` element-wise weights of each source domain's embedding for target ``domain``
        (a softmax over the domains the user is present in; the target alone when it is in none)."""
        logits = self.attention_logits[users if self.params.attention == "user" else torch.zeros_like(users), domain]
        mask = self.present[:, users].T
        mask[:, domain] |= ~mask.any(dim=1)
        return torch.softmax(logits.masked_fill(~mask[:, :, None], float("-inf")), dim=1)

    def domain_users(self, embedded: tuple[torch.Tensor, torch.Tensor], users: torch.Tensor, domain: int) -> torch.Tensor:
        combined = (self.attention_weights(users, domain) * embedded[0][:, users].transpose(0, 1)).sum(1)
        return self.user_towers[domain](combined)

    def domain_items(self, embedded: tuple[torch.Tensor, torch.Tensor], items: torch.Tensor, domain: int) -> torch.Tensor:
        return self.item_towers[domain](embedded[1][items])

    def ego_l2(self, users: torch.Tensor, domains: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        tables = [self.user_emb(domains * self.n_users + users), self.item_emb(pos), self.item_emb(neg)]
        return sum(t.pow(2).sum(-1) for t in tables)
