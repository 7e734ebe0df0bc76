"""The unbiased Base model F0 (AAE paper Section 4.2 / DMTCDR Section 4.1).

``F0^k = E_n(R^k) = B^{-1} sum_i r_i^k``: for explicit feedback the per-item average rating (B = number
of ratings of the item, items without any rating fall back to the global mean); for implicit feedback
the popularity estimate (B = number of users of the organization), returned as a logit because the
overarching loss of implicit feedback is BCE-with-logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cdrec.config import ModelParams
from cdrec.models.registry import register


@dataclass
class BaseParams(ModelParams):
    """No parameters: the base model is a sample average."""


@register("assisted-base", family="assisted", params=BaseParams)
class BaseModel:
    """Per-column mean (explicit) or popularity logit (implicit) over ``n_cols`` columns."""

    task = "mtal"

    def __init__(self, n_cols: int, feedback: str) -> None:
        self.n_cols = n_cols
        self.feedback = feedback
        self.values = np.zeros(n_cols, dtype=np.float64)

    def fit(self, cols: np.ndarray, targets: np.ndarray, n_rows: int) -> "BaseModel":
        cnt = np.bincount(cols, minlength=self.n_cols).astype(np.float64)
        tot = np.bincount(cols, weights=targets, minlength=self.n_cols)
        if self.feedback == "explicit":
            glob = float(targets.mean()) if len(targets) else 0.0
            self.values = np.where(cnt > 0, tot / np.maximum(cnt, 1), glob)
        else:
            pop = np.clip(tot / max(n_rows, 1), 1e-3, 1 - 1e-3)
            self.values = np.log(pop) - np.log1p(-pop)
        return self

    def predict(self, cols: np.ndarray) -> np.ndarray:
        return self.values[cols]
