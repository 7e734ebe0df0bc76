"""Training samplers: vectorized batches of numpy arrays, reproducible per (seed, epoch)."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from cdrec.data.candidates import sample_in_domain, user_item_keys
from cdrec.data.interactions import Interactions, show_id
from cdrec.errors import CdrecError


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of one epoch: resuming at epoch e draws exactly what an uninterrupted run drew."""
    return np.random.default_rng([seed, epoch])


class BPRSampler:
    """(user, positive, negative) triples over a training table; the negative comes from the
    positive's domain and is an item the user has not interacted with in training (Rendle et al.).
    With ``n_negatives > 1`` a row's negatives are distinct."""

    def __init__(self, train: Interactions, batch_size: int, seed: int, n_negatives: int = 1) -> None:
        self.train = train
        self.batch_size = batch_size
        self.seed = seed
        self.n_negatives = n_negatives
        self.users = train.users.astype(np.int64)
        self.items = train.items.astype(np.int64)
        self.domains = train.domain.astype(np.int64)
        self.exclude = user_item_keys(train)
        offsets = train.item_offsets
        self.offsets = offsets if offsets is not None else np.array([0, train.n_items])
        if offsets is None:
            self.domains = np.zeros_like(self.domains)
        self._check_room()

    def _check_room(self) -> None:
        """Every (user, domain) with a training row needs an item it has not touched to draw."""
        n_items = self.train.n_items
        n_dom = len(self.offsets) - 1
        users, items = self.exclude // n_items, self.exclude % n_items
        doms = np.searchsorted(self.offsets, items, side="right") - 1
        touched = np.bincount(users * n_dom + doms, minlength=self.train.n_users * n_dom)
        sizes = np.diff(self.offsets)
        touched = touched.reshape(-1, n_dom)
        full = (touched > sizes[None, :] - self.n_negatives) & (touched > 0)
        if full.any():
            u, d = (int(x[0]) for x in np.nonzero(full))
            name = self.train.domains[d] if self.train.item_offsets is not None else "all"
            raise CdrecError(
                f"{self.train.name}: user {show_id(self.train.user_ids[u])} has interacted with {int(touched[u, d])} of the {int(sizes[d])} items "
                f"of domain {name!r}, so {self.n_negatives} distinct negative item(s) cannot be sampled; drop such users (e.g. data.kcore) or add items"
            )

    def __len__(self) -> int:
        return -(-len(self.users) // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        rng = epoch_rng(self.seed, epoch)
        perm = rng.permutation(len(self.users))
        # one gather per column in shuffled order, then every batch is a contiguous slice (views)
        users, items, domains = self.users[perm], self.items[perm], self.domains[perm]
        neg = sample_in_domain(
            users, domains, self.n_negatives, item_offsets=self.offsets,
            exclude_keys=self.exclude, n_items=self.train.n_items, rng=rng, distinct=self.n_negatives > 1,
        )
        if self.n_negatives == 1:
            neg = neg[:, 0]
        for start in range(0, len(perm), self.batch_size):
            sl = slice(start, start + self.batch_size)
            yield {"user": users[sl], "pos": items[sl], "neg": neg[sl], "domain": domains[sl]}
