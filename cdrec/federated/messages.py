"""Everything that crosses between organizations, as explicit dataclasses.

Only these objects cross the :class:`~cdrec.federated.transport.Transport`; an organization never
reaches into another's objects. What each carries:

* :class:`AlignmentMessage` — the ids the sender is willing to align on (user ids for user-aligned,
  item ids for item-aligned) and the size of its column space (so peers can size their outputs).
* :class:`ResidualMessage` — pseudo-residuals ``r_t^{k,l}`` (Eq. 5) at the sender's training entries
  whose row is in the aligned set; ``cols`` index the *sender's own* column space. Under interval
  privacy the values are replaced by an :class:`IntervalRelease` (thresholds and one bit each).
* :class:`QueryMessage` — keys (aligned row, sender column) at which the sender wants peers'
  predictions for evaluation, mixed with decoy keys under ``MTALConfig.query_decoys``; carries no value at all.
* :class:`PredictionMessage` — a peer model's outputs ``r_hat_t^{k,l}`` (Eq. 7) at keys the receiver
  asked for (its residual keys, ``part="train"``, or its query keys, ``part="query"``).

No message has a field for ratings, labels, model parameters or losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AlignmentMessage:
    sender: str
    receiver: str
    ids: np.ndarray
    n_cols: int


@dataclass(frozen=True)
class IntervalRelease:
    """Interval privacy: per entry and threshold ``t ~ U(a, b)`` only the bit ``y < t`` is revealed."""

    low: float
    high: float
    thresholds: np.ndarray  # [n, T]
    below: np.ndarray  # [n, T] bool

    def estimate(self) -> np.ndarray:
        """Unbiased estimate of each clipped value: ``2t - b`` if ``y < t`` else ``2t - a``, averaged over t."""
        est = np.where(self.below, 2 * self.thresholds - self.high, 2 * self.thresholds - self.low)
        return est.mean(axis=1)


@dataclass(frozen=True)
class ResidualMessage:
    sender: str
    receiver: str
    round: int
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray | None = None
    interval: IntervalRelease | None = None

    def decoded(self) -> np.ndarray:
        return self.interval.estimate() if self.interval is not None else np.asarray(self.values, dtype=np.float64)


@dataclass(frozen=True)
class QueryMessage:
    sender: str
    receiver: str
    rows: np.ndarray
    cols: np.ndarray


@dataclass(frozen=True)
class PredictionMessage:
    sender: str
    receiver: str
    round: int
    part: str
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray


Message = AlignmentMessage | ResidualMessage | QueryMessage | PredictionMessage
