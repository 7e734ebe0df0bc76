"""Serve a sequential run (task ``sequential``: SASRec, BERT4Rec ``-st``/``-dt``, MERIT).

* :meth:`SequencePredictor.recommend_sequence` — ``history`` is a list of raw item ids of any
  domains, oldest first. The model's input is built the way the evaluator builds a test row's input
  (:func:`cdrec.data.sequences.histories`): the last ``max_len`` events, +1 shifted and left-padded,
  with each event's domain; a single-target model (``*-st``) sees only the events of the domain it
  ranks. Every item of the domain is then scored with the model's own evaluation function
  ``model.score`` (candidates = the whole domain, ``target_domain`` = that domain, which selects
  MERIT's per-domain output ``h_X^F + h_M^F``), the history's items are left out and the top ``k``
  returned. Without ``domain`` every domain is answered; a single-target model skips the domains
  the history has no event of (naming such a domain is an error: that model has no input).
* :meth:`SequencePredictor.recommend` — the same for a user of the run's data, whose history is
  every event the run has of them (train, validation and test parts, in time order): the items
  expected *after* all of them. ``exclude_seen`` leaves out every item the user has in the domain;
  ``fallback="popularity"`` answers unknown users (and, for single-target models, users without a
  training event in the domain) with the domain's most popular training items (shared with the
  ranking predictor: :class:`cdrec.predict.TopKPredictor`).
* :meth:`SequencePredictor.recommend_users` — the same for every user of a domain, in batches
  (``cdrec export``).

Users are scored in chunks so that the ``[n, items in domain, dim]`` candidate embeddings that
``model.score`` gathers stay below ~64 MB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from cdrec.data.sequences import pool_windows, time_order
from cdrec.data.views import domain_matrix
from cdrec.errors import CdrecError, require
from cdrec.predict import IdMap, Recommendations, TopKPredictor, UnknownIdError, check_k, csr_entries, known_users, masked_top_k, training_popularity

if TYPE_CHECKING:
    from cdrec.train.sequential import SequentialPrepared

CHUNK_ELEMENTS = 1 << 24
"""Largest ``users x items x dim`` block of candidate embeddings scored at once."""


class SequencePredictor(TopKPredictor):
    """Next items per domain from a trained sequential run (see module docstring)."""

    supports = frozenset({"recommend", "sequence"})

    def __init__(
        self, *, model: str, prepared: SequentialPrepared, models: dict[str, torch.nn.Module], single_target: bool
    ) -> None:
        data = prepared.data
        super().__init__(model=model, task="sequential", dataset=data.name, domains=data.domains,
                         users=IdMap(data.user_ids, "user"), items=IdMap(data.item_ids, "item"))
        self.data = data
        self.models = models
        self.device = prepared.device
        self.max_len = int(prepared.params.max_len)
        self.dim = int(getattr(prepared.params, "dim", 64))
        self.single_target = bool(single_target)
        self.offsets = np.asarray(data.item_offsets, dtype=np.int64)
        self.item_domain = data.item_domain()
        # every event in time order, grouped by user (one pool per domain for single-target models)
        order = time_order(data, np.arange(len(data)))
        pools = [order[data.domain[order] == d] for d in range(data.n_domains)] if self.single_target else [order]
        self.pools = [(p, data.users[p]) for p in pools]
        self.seen = [domain_matrix(data, d) for d in range(data.n_domains)]
        self.known = known_users(prepared.split, self.single_target)
        self.popularity, self.popular = training_popularity(prepared.split)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "max_len": self.max_len, "single_target": self.single_target}

    # ------------------------------------------------------------------ inputs
    def user_windows(self, users: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
        """Last ``max_len`` events of each user (of domain ``d`` for single-target models):
        ``items`` (+1 shifted, 0 = pad) and ``domains`` (-1 = pad), ``[n, max_len]``, vectorized."""
        pool, pool_users = self.pools[d if self.single_target else 0]
        start = np.searchsorted(pool_users, users, side="left")
        end = np.searchsorted(pool_users, users, side="right")
        return pool_windows(self.data, pool, start, end, self.max_len)

    def history_window(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[1, max_len]`` input of a history of dense item indices (oldest first)."""
        last = items[-self.max_len :]
        out_items = np.zeros((1, self.max_len), dtype=np.int64)
        out_doms = np.full((1, self.max_len), -1, dtype=np.int64)
        if len(last):
            out_items[0, -len(last) :] = last + 1
            out_doms[0, -len(last) :] = self.item_domain[last]
        return out_items, out_doms

    # ------------------------------------------------------------------ scoring
    def scores(self, items: np.ndarray, doms: np.ndarray, d: int) -> torch.Tensor:
        """``model.score`` (the evaluator's function) of every item of domain ``d`` for each input
        row, ``[n, items in d]`` (column ``j`` = global item ``offsets[d] + j``)."""
        model = self._model(d)
        start, stop = int(self.offsets[d]), int(self.offsets[d + 1])
        width = stop - start
        cands = torch.arange(start + 1, stop + 1, device=self.device)
        chunk = max(1, CHUNK_ELEMENTS // max(width * self.dim, 1))
        out = []
        with torch.no_grad():
            for lo in range(0, len(items), chunk):
                n = len(items[lo : lo + chunk])
                batch = {
                    "items": torch.as_tensor(items[lo : lo + chunk], device=self.device),
                    "domains": torch.as_tensor(doms[lo : lo + chunk], device=self.device),
                    "candidates": cands.expand(n, width),
                    "target_domain": torch.full((n,), d, dtype=torch.long, device=self.device),
                }
                out.append(model.score(batch).float())
        return torch.cat(out) if out else torch.zeros((0, width), device=self.device)

    def _answer(self, user: Any, d: int, items: np.ndarray, scores: np.ndarray) -> Recommendations:
        keep = np.isfinite(scores)
        return Recommendations(user, self.domains[d], self.items.to_raw(items[keep]), scores[keep].tolist())

    # ------------------------------------------------------------------ the questions
    def recommend_sequence(self, history: Sequence[Any], k: int = 10, *, domain: str | None = None) -> dict[str, Recommendations]:
        k = check_k(k)
        require(isinstance(history, (list, tuple, np.ndarray)) and len(history) > 0, f"history: expected a non-empty list of item ids, got {history!r}")
        idx = self.items.lookup(list(history))
        if (idx < 0).any():
            n = int(np.flatnonzero(idx < 0)[0])
            raise UnknownIdError(f"history[{n}]: unknown item {history[n]!r}")
        wanted = [self.domain_index(domain)] if domain is not None else range(len(self.domains))
        out: dict[str, Recommendations] = {}
        for d in wanted:
            in_d = idx[self.item_domain[idx] == d]
            if self.single_target and len(in_d) == 0:
                if domain is not None:
                    raise CdrecError(f"history: no item of domain {self.domains[d]!r}; {self.model} is trained per domain on that domain's events only")
                continue
            items, doms = self.history_window(in_d if self.single_target else idx)
            start = int(self.offsets[d])
            exclude = (np.zeros(len(in_d), dtype=np.int64), in_d - start)
            top, vals = masked_top_k(self.scores(items, doms, d), k, exclude=exclude, offset=start)
            out[self.domains[d]] = self._answer(None, d, top[0], vals[0])
        if not out:
            raise CdrecError(f"history: {self.model} is trained per domain and ranks a domain from its events only; the history has none of a known domain")
        return out

    def top_k(self, users: np.ndarray, d: int, k: int, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(items[n, k'], scores[n, k'])`` (global item indices) after each user's whole sequence."""
        items, doms = self.user_windows(users, d)
        exclude = csr_entries(self.seen[d], users) if exclude_seen else None
        return masked_top_k(self.scores(items, doms, d), k, exclude=exclude, offset=int(self.offsets[d]))
