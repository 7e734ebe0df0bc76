"""The CTR view of an :class:`~cdrec.data.interactions.Interactions`: one row per sample.

This is the input of the multi-domain multi-task CTR family (M3oE and its baselines). Each sample
carries

* ``sparse`` — integer codes of categorical fields (0 = unknown, one vocabulary per field): user id,
  item id, the user's categorical side features (MovieLens: gender, occupation, zip), the item's
  first genre (or category) and the domain id, as in M3oE section 3.1;
* ``dense`` — standardised numeric features (MovieLens: age);
* ``domain`` — the sample's domain index;
* ``labels`` — one binary label per task (``click = rating > 3``, ``like = rating > 4`` unless the
  data already carries ``click``/``like`` columns, as the synthetic generator does).

Batches are produced by slicing a seeded permutation of tensors (no Python loop per row).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from cdrec.data.interactions import Interactions
from cdrec.data.samplers import epoch_rng
from cdrec.data.views import feature_codes
from cdrec.errors import CdrecError, require

TASK_THRESHOLDS: dict[str, float] = {"click": 3.0, "like": 4.0}
"""Default task -> rating threshold (label = rating > threshold), M3oE section 3.1."""

USER_SPARSE = ("gender", "occupation", "zip")
ITEM_SPARSE = ("first_genre", "category")
USER_DENSE = ("age",)


@dataclass
class CTRView:
    """Per-sample arrays aligned to the rows of ``data.frame``."""

    sparse: np.ndarray  # [n, F] int64
    dense: np.ndarray  # [n, n_dense] float32
    domain: np.ndarray  # [n] int64
    labels: np.ndarray  # [n, T] float32
    fields: list[str]
    vocab_sizes: list[int]
    dense_names: list[str]
    tasks: list[str]
    domains: list[str]
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.domain)

    @property
    def n_domains(self) -> int:
        return len(self.domains)

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    def tensors(self, rows: np.ndarray | None = None, *, domain_zero: bool = False, task: int | None = None) -> dict[str, torch.Tensor]:
        """Tensors of the given rows; ``domain_zero`` re-indexes a single-domain scope to domain 0 and
        ``task`` keeps only that task's label column (for per-domain / per-task training modes)."""
        idx = np.arange(len(self)) if rows is None else np.asarray(rows)
        dom = self.domain[idx]
        labels = self.labels[idx] if task is None else self.labels[idx][:, [task]]
        return {
            "sparse": torch.from_numpy(np.ascontiguousarray(self.sparse[idx])),
            "dense": torch.from_numpy(np.ascontiguousarray(self.dense[idx])),
            "domain": torch.from_numpy(np.zeros_like(dom) if domain_zero else dom.copy()),
            "label": torch.from_numpy(np.ascontiguousarray(labels)),
        }


def build_ctr_view(
    inter: Interactions,
    tasks: Sequence[str] = ("click", "like"),
    *,
    thresholds: dict[str, float] | None = None,
) -> CTRView:
    """Build the CTR view (see module docstring); tasks come from label columns or rating thresholds."""
    require(len(tasks) > 0, "ctr: at least one task is needed")
    thresholds = {**TASK_THRESHOLDS, **(thresholds or {})}
    n = len(inter)
    require(n > 0, f"{inter.name}: no samples")
    labels = np.empty((n, len(tasks)), dtype=np.float32)
    for t, task in enumerate(tasks):
        if task in inter.frame.columns:
            labels[:, t] = inter.column(task).astype(np.float32)
        elif inter.has_rating and task in thresholds:
            labels[:, t] = (inter.column("rating") > thresholds[task]).astype(np.float32)
        else:
            raise CdrecError(f"{inter.name}: task {task!r} has neither a label column nor a rating threshold (known: {sorted(thresholds)})")
    users, items = inter.users, inter.items
    columns: list[np.ndarray] = [users + 1, items + 1]
    fields = ["user", "item"]
    vocab = [inter.n_users + 1, inter.n_items + 1]
    dense_cols: list[np.ndarray] = []
    dense_names: list[str] = []
    encoders: dict[str, np.ndarray] = {}  # field -> vocabulary (code = position + 1), for serving
    dense_stats: dict[str, tuple[float, float]] = {}  # dense feature -> (mean, std) of the standardisation
    uf = inter.user_features
    if uf is not None:
        for name in USER_SPARSE:
            if name in uf.columns:
                codes, values = feature_codes(uf[name].to_numpy())
                columns.append(codes[users])
                fields.append(name)
                vocab.append(len(values) + 1)
                encoders[name] = values
        for name in USER_DENSE:
            if name in uf.columns:
                values = pd.to_numeric(uf[name], errors="coerce").to_numpy(dtype=np.float64)
                values = np.nan_to_num(values, nan=np.nanmean(values))
                std = values.std() or 1.0
                dense_cols.append(((values - values.mean()) / std)[users].astype(np.float32))
                dense_names.append(name)
                dense_stats[name] = (float(values.mean()), float(std))
    itf = inter.item_features
    if itf is not None:
        for name in ITEM_SPARSE:
            if name in itf.columns:
                codes, values = feature_codes(itf[name].astype(str).to_numpy())
                columns.append(codes[items])
                fields.append(name)
                vocab.append(len(values) + 1)
                encoders[name] = values
                break
    domain = inter.domain.astype(np.int64)
    columns.append(domain + 1)
    fields.append("domain")
    vocab.append(inter.n_domains + 1)
    dense = np.stack(dense_cols, axis=1) if dense_cols else np.zeros((n, 0), dtype=np.float32)
    return CTRView(
        sparse=np.stack(columns, axis=1).astype(np.int64),
        dense=dense.astype(np.float32),
        domain=domain,
        labels=labels,
        fields=fields,
        vocab_sizes=[int(v) for v in vocab],
        dense_names=dense_names,
        tasks=list(tasks),
        domains=list(inter.domains),
        meta={"name": inter.name, "encoders": encoders, "dense_stats": dense_stats},
    )


def iterate_batches(data: dict[str, torch.Tensor], batch_size: int, *, seed: int, epoch: int, shuffle: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Mini-batches of a tensor dict: a seeded permutation per epoch, sliced (vectorized)."""
    n = len(data["domain"])
    if shuffle:
        order = torch.from_numpy(epoch_rng(seed, epoch).permutation(n))
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield {k: v[idx] for k, v in data.items()}
    else:
        for start in range(0, n, batch_size):
            yield {k: v[start : start + batch_size] for k, v in data.items()}


def n_batches(n: int, batch_size: int) -> int:
    return (n + batch_size - 1) // batch_size
