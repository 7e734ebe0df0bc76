"""Contracts shared by every model: a ranking model scores (user, item) pairs for the evaluator."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from cdrec.config import DataConfig
from cdrec.data.splits import Split


class RankingModel(nn.Module):
    """Base of the collaborative-filtering family.

    Subclasses implement :meth:`from_split` (sizes come from the data view, never from a file),
    :meth:`loss` over a BPR batch (``user``, ``pos``, ``neg``, ``domain`` tensors) and
    :meth:`score`. :meth:`score_all` defaults to scoring an item range with :meth:`score`.
    :attr:`train_negatives` is how many negatives the ranking task's sampler draws per positive.
    A model with nothing to optimise (``pop``, ``itemknn``) sets ``optimised = False`` and implements
    :meth:`fit_interactions` instead of :meth:`loss`.
    """

    task: ClassVar[str] = "ranking"
    registry_name: ClassVar[str] = ""
    optimised: ClassVar[bool] = True
    """False for a model computed in one pass over the training interactions: the ranking task calls
    :meth:`fit_interactions` once instead of the Trainer (no epochs, no optimizer, no checkpoints)."""

    @property
    def train_negatives(self) -> int:
        """Negatives per positive in a training batch: ``neg`` is ``[B]`` for 1 (the default), else
        ``[B, n]`` with distinct items per row (:class:`~cdrec.data.samplers.BPRSampler`)."""
        return 1

    @classmethod
    def from_split(cls, split: Split, params: Any) -> "RankingModel":
        raise TypeError(f"{cls.__name__} must implement from_split")

    @classmethod
    def select_data(cls, data: DataConfig, params: Any) -> DataConfig:
        """The data options this model is trained on (a two-domain model keeps its named pair)."""
        return data

    @classmethod
    def evaluation_split(cls, split: Split, params: Any) -> tuple[Split, dict[str, Any]]:
        """The split whose validation and test rows are evaluated (a single-target model keeps its
        target's) and what to record about that choice in ``results.json``'s ``setting``."""
        return split, {}

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} must implement loss")

    def fit_interactions(self, split: Split) -> None:
        """Compute the model from ``split``'s training interactions (models with ``optimised = False``)."""
        raise TypeError(f"{type(self).__name__} must implement fit_interactions")

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``scores[n, c]`` for ``users[n]`` and candidate ``items[n, c]`` (global item ids)."""
        raise TypeError(f"{type(self).__name__} must implement score")

    def score_all(self, users: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """``scores[n, stop - start]`` over the item range ``[start, stop)``."""
        items = torch.arange(start, stop, device=users.device).expand(len(users), -1)
        return self.score(users, items)
