"""Shared base of the multi-target cross-domain graph models (HeroGraph, GA-MTCDR).

Items belong to one domain (item-owned layout); a user has one representation per domain, built by
the subclass from a graph propagation (:meth:`DomainGraphModel.embed`) and routed by the item's
domain: a batch's BPR triples are scored with the user vector of the positive's domain, so the
loss is the sum of every domain's BPR loss (each paper's "trained with each domain's loss"), and a
candidate is scored with the user vector of its own domain. Evaluation caches one user table per
domain and one item table (:meth:`DomainGraphModel.propagate`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cdrec.data.splits import Split
from cdrec.models.cf.blocks import bpr_loss
from cdrec.models.cf.lightgcn import GraphPropagation, LightGCNParams


class DomainGraphModel(GraphPropagation):
    """Per-domain user vectors over a graph propagation, BPR per domain, scoring by item domain.

    Subclasses take ``(split, params)``, set ``params`` (LightGCN's options or more), call
    :meth:`_init_domains` and implement :meth:`embed`, :meth:`domain_users`, :meth:`domain_items`
    and :meth:`ego_l2`."""

    @classmethod
    def from_split(cls, split: Split, params: LightGCNParams) -> "DomainGraphModel":
        return cls(split, params)

    def _init_domains(self, split: Split, adjacency: torch.Tensor) -> None:
        data = split.data
        self.n_users, self.n_items, self.n_domains = data.n_users, data.n_items, data.n_domains
        self.item_offsets = [int(o) for o in data.item_offsets]
        self.register_buffer("item_domain", torch.as_tensor(data.item_domain()), persistent=False)
        self._init_graph(adjacency)

    @staticmethod
    def domain_rows(split: Split) -> np.ndarray:
        """Domain of every training row (the domain of its item)."""
        return split.data.item_domain()[split.train.items]

    def embed(self) -> Any:
        """The graph propagation of the current parameters (whatever the subclass's vectors need)."""
        raise TypeError(f"{type(self).__name__} must implement embed")

    def domain_users(self, embedded: Any, users: torch.Tensor, domain: int) -> torch.Tensor:
        """``[n, k]`` vectors of ``users`` for scoring items of ``domain``."""
        raise TypeError(f"{type(self).__name__} must implement domain_users")

    def domain_items(self, embedded: Any, items: torch.Tensor, domain: int) -> torch.Tensor:
        """``[m, k]`` vectors of ``items`` (all of ``domain``)."""
        raise TypeError(f"{type(self).__name__} must implement domain_items")

    def ego_l2(self, users: torch.Tensor, domains: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """``[B]`` squared norms of the batch's trainable (layer-0) embeddings (the L2 term)."""
        raise TypeError(f"{type(self).__name__} must implement ego_l2")

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum over domains of BPR on that domain's triples (one mean over the batch) + ``reg`` L2."""
        embedded = self.embed()
        users, pos, neg = batch["user"], batch["pos"], batch["neg"]
        domains = self.item_domain[pos]
        parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for d in range(self.n_domains):  # a loop over domains, not users: each is one vectorized gather
            rows = torch.nonzero(domains == d).squeeze(1)
            if rows.numel():
                parts.append((self.domain_users(embedded, users[rows], d), self.domain_items(embedded, pos[rows], d),
                              self.domain_items(embedded, neg[rows], d)))
        u, p, n = (torch.cat(t) for t in zip(*parts))
        return bpr_loss(u, p, n, 0.0) + self.params.reg * self.ego_l2(users, domains, pos, neg).mean()

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Scoring tables: user vectors ``[D, n_users, k]`` (one table per domain), items ``[n_items, k]``."""
        embedded = self.embed()
        every_user = torch.arange(self.n_users, device=self.item_domain.device)
        users = torch.stack([self.domain_users(embedded, every_user, d) for d in range(self.n_domains)])
        items = torch.cat([
            self.domain_items(embedded, torch.arange(start, stop, device=every_user.device), d)
            for d, (start, stop) in enumerate(zip(self.item_offsets[:-1], self.item_offsets[1:]))
        ])
        return users, items

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        user_tables, item_table = self._final()
        return (user_tables[self.item_domain[items], users[:, None]] * item_table[items]).sum(-1)

    def score_all(self, users: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        user_tables, item_table = self._final()
        domain = int(np.searchsorted(self.item_offsets, start, side="right")) - 1
        return user_tables[domain][users] @ item_table[start:stop].T
