"""Most-popular baseline: every user gets a domain's items ranked by their number of training
interactions, ``score(u, i) = |{(v, i) in train}|`` (a repeated interaction counts each time).

Items belong to one domain each, so the count of an item is its count within its domain: with
``scope=joint`` one table of counts serves every domain (the evaluator ranks within the positive's
domain), and ``scope=single`` gives the same counts, one model per domain. Nothing is optimised: the
ranking task fits the counts in one pass (:meth:`Pop.fit_interactions`), without epochs or optimizer.
Candidates with equal counts tie, and the evaluator counts ties against the positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cdrec.config import ModelParams
from cdrec.data.splits import Split
from cdrec.models.base import RankingModel
from cdrec.models.registry import register


@dataclass
class PopParams(ModelParams):
    """Popularity has no hyper-parameters."""


@register("pop", family="cf", params=PopParams)
class Pop(RankingModel):
    """Scores an item by its training interactions, the same for every user."""

    optimised = False

    def __init__(self, n_items: int) -> None:
        super().__init__()
        self.register_buffer("counts", torch.zeros(n_items))

    @classmethod
    def from_split(cls, split: Split, params: PopParams) -> "Pop":
        return cls(split.data.n_items)

    def fit_interactions(self, split: Split) -> None:
        counts = torch.as_tensor(split.train_item_counts(), dtype=torch.float32)
        self.counts.copy_(counts)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.counts[items]

    def score_all(self, users: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return self.counts[start:stop].repeat(len(users), 1)
