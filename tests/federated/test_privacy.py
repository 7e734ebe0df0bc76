"""Privacy mechanisms for transmitted residuals (DMTCDR Table 5)."""

from __future__ import annotations

import numpy as np

from cdrec.federated.privacy import clip_quantiles, interval_release, laplace_dp


def test_clip_to_quantiles():
    x = np.arange(1001, dtype=float)
    c, a, b = clip_quantiles(x)
    assert a == 25.0 and b == 975.0
    assert c.min() == a and c.max() == b
    np.testing.assert_array_equal(c[100:900], x[100:900])


def test_laplace_noise_scale_and_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200_000)
    clipped, a, b = clip_quantiles(x)
    noisy = laplace_dp(x, alpha=2.0, rng=np.random.default_rng(1))
    noise = noisy - clipped
    assert abs(noise.mean()) < 0.02
    # Laplace(0, s) has mean absolute deviation s
    assert abs(np.abs(noise).mean() - (b - a) / 2.0) < 0.03 * (b - a) / 2.0


def test_interval_privacy_is_unbiased_on_average():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, size=50_000) ** 3
    rel = interval_release(x, n_thresholds=4, rng=np.random.default_rng(3))
    clipped = np.clip(x, rel.low, rel.high)
    assert rel.below.dtype == bool and rel.thresholds.shape == (len(x), 4)
    est = rel.estimate()
    assert abs(est.mean() - clipped.mean()) < 0.01
    # one entry repeated many times: the average of its estimates converges to the clipped value
    one = np.full(20_000, 0.3)
    one[:1000] = np.linspace(-1, 1, 1000)  # fix the quantiles to about [-0.9, 0.9]
    rel = interval_release(one, n_thresholds=1, rng=np.random.default_rng(4))
    assert abs(rel.estimate()[1000:].mean() - 0.3) < 0.03
    # the estimate alone is not the value: each one is 2t - a or 2t - b
    assert np.mean(np.isclose(rel.estimate()[1000:], 0.3)) < 0.01
