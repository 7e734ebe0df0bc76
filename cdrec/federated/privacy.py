"""Privacy enhancement of transmitted pseudo-residuals (DMTCDR Section 5.2, Table 5).

Both mechanisms first clip the values to their empirical 2.5%-97.5% quantiles ``[a, b]``.

* Laplace differential privacy: ``y + Laplace(0, (b - a) / alpha)``.
* Interval privacy (Ding & Ding 2021): per value and per threshold ``t ~ U(a, b)`` only the bit
  ``y < t`` leaves the organization; the receiver's estimate ``2t - b`` (if ``y < t``) or ``2t - a``
  is unbiased for the clipped ``y`` and is averaged over the thresholds
  (see :meth:`~cdrec.federated.messages.IntervalRelease.estimate`).
"""

from __future__ import annotations

import numpy as np

from cdrec.errors import require
from cdrec.federated.messages import IntervalRelease

MECHANISMS = ("none", "dp", "ip")


def clip_quantiles(values: np.ndarray, low_q: float = 0.025, high_q: float = 0.975) -> tuple[np.ndarray, float, float]:
    """Clip to the empirical ``[low_q, high_q]`` quantiles; returns the clipped values and ``(a, b)``."""
    if len(values) == 0:
        return values.astype(np.float64), 0.0, 0.0
    a, b = np.quantile(values, [low_q, high_q])
    return np.clip(values, a, b), float(a), float(b)


def laplace_dp(values: np.ndarray, alpha: float, rng: np.random.Generator) -> np.ndarray:
    require(alpha > 0, f"privacy alpha must be > 0, got {alpha}")
    clipped, a, b = clip_quantiles(values)
    return clipped + rng.laplace(0.0, (b - a) / alpha if b > a else 0.0, size=len(clipped))


def interval_release(values: np.ndarray, n_thresholds: int, rng: np.random.Generator) -> IntervalRelease:
    require(n_thresholds >= 1, f"interval privacy needs >= 1 threshold, got {n_thresholds}")
    clipped, a, b = clip_quantiles(values)
    t = rng.uniform(a, b, size=(len(clipped), n_thresholds))
    return IntervalRelease(low=a, high=b, thresholds=t, below=clipped[:, None] < t)
