"""Serve a CTR run (task ``ctr``: MLP, Shared-Bottom, MMoE, PLE, STAR, AdaTT, M3oE).

:meth:`CTRPredictor.score_rows` takes rows of raw feature values and returns, per row, one
probability per task (``{"click": p, "like": p}``). A row is encoded exactly as the CTR view
(:func:`cdrec.data.ctr.build_ctr_view`) encodes a sample of the run's data, then scored by the
run's model(s) merged over the mode's scopes as the evaluation merges them
(:meth:`cdrec.train.ctr.CTRTask.predict_rows`). A row names

* ``user`` and ``item`` (required) — raw ids. An id the run does not know gets the 'unknown' code
  0, as the view codes missing values, and so do its side features unless the row gives them;
* ``domain`` — the domain name. It may be left out when the run's data determines it: the item's
  domain when every item belongs to one domain (item-owned builders: as loaded, ``genre``,
  ``uniform-items``), otherwise the domain of a known user whose events all lie in one domain
  (user-owned builders such as M3oE's ``age-bins``), or the only domain. The builder's rule
  (e.g. age -> age bin) is *not* re-applied: a new user of user-owned domains must name the domain;
* optionally the side features the run's view has (``info()["features"]``): the user's
  ``gender``, ``occupation``, ``zip`` and the dense ``age``, the item's ``first_genre`` or
  ``category``. A feature left out takes the stored value of a known user/item (so a row with only
  user, item and domain scores like the dataset's row); a value the view never saw gets the unknown
  code 0; ``age`` is standardised with the run's mean and std (left out for an unknown user: the
  mean, as the view fills missing ages).

Any other key is an error (a typo would otherwise be silently ignored).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import torch

from cdrec.data.candidates import sorted_unique
from cdrec.data.ctr import ITEM_SPARSE, USER_SPARSE, CTRView
from cdrec.errors import CdrecError, require
from cdrec.predict import IdMap, Predictor

if TYPE_CHECKING:
    from cdrec.train.ctr import CTRPrepared, CTRTask


class Vocabulary:
    """A categorical field's codes: value (compared as text, like :class:`~cdrec.predict.IdMap`)
    -> position + 1, and 0 for a value the view never saw."""

    def __init__(self, values: np.ndarray) -> None:
        self.index = pd.Index([str(v) for v in np.asarray(values).tolist()], dtype=object)

    def codes(self, values: Sequence[Any]) -> np.ndarray:
        return (self.index.get_indexer([str(v) for v in values]) + 1).astype(np.int64)


class CTRPredictor(Predictor):
    """Click / like probabilities for rows of raw feature values (see module docstring)."""

    supports = frozenset({"score"})

    def __init__(
        self, *, model: str, task: CTRTask, prepared: CTRPrepared, models: dict[str, torch.nn.Module], batch_size: int
    ) -> None:
        data, view = prepared.data, prepared.view
        super().__init__(model=model, task="ctr", dataset=data.name, domains=view.domains,
                         users=IdMap(data.user_ids, "user"), items=IdMap(data.item_ids, "item"))
        self._task = task
        self.prepared = prepared
        self.view = view
        self.models = models
        self.batch_size = int(batch_size)
        encoders = view.meta.get("encoders", {})
        stats = view.meta.get("dense_stats", {})
        self.user_fields = [f for f in view.fields if f in USER_SPARSE]
        self.item_fields = [f for f in view.fields if f in ITEM_SPARSE]
        self.vocab = {f: Vocabulary(encoders[f]) for f in self.user_fields + self.item_fields}
        self.stats = {name: stats[name] for name in view.dense_names}
        # stored codes of every known user / item, encoded with the same vocabularies
        uf, itf = data.user_features, data.item_features
        self.stored = {f: self.vocab[f].codes(uf[f].tolist()) for f in self.user_fields}
        self.stored.update({f: self.vocab[f].codes(itf[f].astype(str).tolist()) for f in self.item_fields})
        self.stored_dense = {name: self._standardise(name, pd.to_numeric(uf[name], errors="coerce").to_numpy(dtype=np.float64)) for name in view.dense_names}
        self.accepted = {"user", "item", "domain", *self.user_fields, *self.item_fields, *view.dense_names}
        # where the domain can be derived: the item's (item-owned layout) or the user's only domain
        self.item_domain = data.item_domain() if data.items_by_domain else None
        pairs = sorted_unique(data.users.astype(np.int64) * data.n_domains + data.domain)
        pair_users = pairs // data.n_domains
        n_doms = np.bincount(pair_users, minlength=data.n_users)
        self.user_domain = np.full(data.n_users, -1, dtype=np.int64)
        single = n_doms[pair_users] == 1
        self.user_domain[pair_users[single]] = pairs[single] % data.n_domains

    def info(self) -> dict[str, Any]:
        return {**super().info(), "tasks": list(self.view.tasks), "features": ["user", "item", "domain", *self.user_fields, *self.item_fields, *self.view.dense_names]}

    def _standardise(self, name: str, values: np.ndarray) -> np.ndarray:
        mean, std = self.stats[name]
        return ((np.nan_to_num(values, nan=mean) - mean) / std).astype(np.float32)

    def _domains(self, rows: Sequence[dict[str, Any]], users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Each row's domain, array-wise: the named one (checked against a known item's domain), else a
        known item's, else a known user's only domain, else the run's only domain. An error names its
        row: an unknown domain name first, then the earlier of a conflict and an underivable domain."""
        n = len(rows)
        named = self.named_domains(rows)
        item_dom = np.full(n, -1, dtype=np.int64)
        if self.item_domain is not None:
            item_dom = np.where(items >= 0, self.item_domain[np.maximum(items, 0)], -1)
        user_dom = np.where(users >= 0, self.user_domain[np.maximum(users, 0)], -1)
        out = np.where(named >= 0, named, np.where(item_dom >= 0, item_dom, user_dom))
        if len(self.domains) == 1:
            out[out < 0] = 0
        conflict = self.conflicting_domain(named, item_dom)
        missing = np.flatnonzero(out < 0)
        if conflict is not None and (not missing.size or conflict < missing[0]):
            raise self.domain_conflict(rows, conflict, item_dom)
        if missing.size:
            raise CdrecError(f"rows[{int(missing[0])}]: name the 'domain' (one of {self.domains}); it cannot be derived from a known item or from a known user with one domain")
        return out

    def encode(self, rows: Sequence[dict[str, Any]]) -> CTRView:
        """The CTR view (:class:`~cdrec.data.ctr.CTRView`) of ``rows`` (labels are zeros)."""
        require(len(rows) > 0, "rows: expected at least one row")
        for n, row in enumerate(rows):
            require(isinstance(row, dict) and "user" in row and "item" in row, f"rows[{n}]: expected an object with 'user' and 'item', got {row!r}")
            extra = sorted(set(row) - self.accepted)
            if extra:
                raise CdrecError(f"rows[{n}]: unknown feature {extra[0]!r}; this run takes {sorted(self.accepted)}")
        users = self.users.lookup([r["user"] for r in rows])
        items = self.items.lookup([r["item"] for r in rows])
        domain = self._domains(rows, users, items)
        columns = []
        for f in self.view.fields:
            if f in ("user", "item"):
                idx = users if f == "user" else items
                columns.append(np.where(idx >= 0, idx + 1, 0))
            elif f == "domain":
                columns.append(domain + 1)
            else:
                idx = users if f in self.user_fields else items
                codes = np.where(idx >= 0, self.stored[f][np.maximum(idx, 0)], 0)
                given = [n for n, r in enumerate(rows) if f in r]
                if given:
                    codes[given] = self.vocab[f].codes([rows[n][f] for n in given])
                columns.append(codes)
        dense = []
        for name in self.view.dense_names:
            vals = np.where(users >= 0, self.stored_dense[name][np.maximum(users, 0)], np.float32(0.0)).astype(np.float32)
            given = [n for n, r in enumerate(rows) if name in r]
            for n in given:
                value = rows[n][name]
                require(isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and np.isfinite(value),
                        f"rows[{n}]: {name}: expected a number, got {value!r}")
            if given:
                vals[given] = self._standardise(name, np.asarray([float(rows[n][name]) for n in given]))
            dense.append(vals)
        n = len(rows)
        return replace(
            self.view,
            sparse=np.stack(columns, axis=1).astype(np.int64),
            dense=np.stack(dense, axis=1).astype(np.float32) if dense else np.zeros((n, 0), dtype=np.float32),
            domain=domain,
            labels=np.zeros((n, self.view.n_tasks), dtype=np.float32),
        )

    def score_rows(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
        view = self.encode(rows)
        probs = self._task.predict_rows(self.models, replace(self.prepared, view=view), np.arange(len(view)), self.batch_size)
        return [dict(zip(view.tasks, map(float, p))) for p in probs]
