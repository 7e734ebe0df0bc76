"""Memory-light synthetic data for scaling runs (10^6-10^7 interactions and beyond).

The same recipe as :func:`cdrec.data.synthetic.make_synthetic` (shared + domain-specific user
latents, item latents and popularity, power-law activity, Gumbel-top-k choice, ratings from
affinity, click/like labels, side features), but users are drawn in chunks of ``chunk_users`` and
only each user's chosen items are kept, so memory grows with the interactions, not with
``users x items``. The random stream differs from ``make_synthetic``'s (which stays the default and
is unchanged), so the two give statistically alike, not identical, tables. The structure knobs of
``make_synthetic`` (sparse users, themes, sequences, like-only signal) are refused here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cdrec.data.interactions import Interactions
from cdrec.data.synthetic import SyntheticConfig
from cdrec.errors import require


def _choose(rng: np.random.Generator, user_vec: np.ndarray, item_vec: np.ndarray, popularity: np.ndarray, activity: np.ndarray, signal: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gumbel-top-k: each user's ``activity`` items with the largest ``signal * affinity + Gumbel``."""
    affinity = (user_vec @ item_vec.T + popularity).astype(np.float32)
    k = int(activity.max()) if len(activity) else 0
    if k == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    with np.errstate(divide="ignore"):  # Gumbel noise as -log(Exponential(1))
        noisy = signal * affinity - np.log(rng.standard_exponential(affinity.shape, dtype=np.float32))
    top = np.argpartition(-noisy, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(noisy, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    keep = np.arange(k)[None, :] < activity[:, None]
    users, slot = np.nonzero(keep)
    items = top[users, slot]
    return users, items, affinity[users, items]


def make_synthetic_large(config: SyntheticConfig | None = None, *, chunk_users: int = 20_000, **overrides) -> Interactions:
    """Generate a multi-domain :class:`Interactions` chunk by chunk (see module docstring)."""
    cfg = config or SyntheticConfig()
    for key, value in overrides.items():
        setattr(cfg, key, value)
    require(cfg.n_users > 0 and cfg.n_domains > 0 and cfg.items_per_domain > 1, "synthetic sizes must be positive")
    require(chunk_users > 0, f"chunk_users must be positive, got {chunk_users}")
    require(not cfg.plants_structure, "make_synthetic_large draws the legacy recipe only: the structure knobs (sparse_share, n_themes, "
            "seq_cross, seq_intra, like_own) are make_synthetic's")
    rng = np.random.default_rng([cfg.seed, 1])
    n_u, n_d, n_i, k = cfg.n_users, cfg.n_domains, cfg.items_per_domain, cfg.dim
    signal = float(getattr(cfg, "signal", 1.0))
    shared = rng.normal(size=(n_u, k)).astype(np.float32)
    item_vecs = [(rng.normal(size=(n_i, k)) / np.sqrt(k)).astype(np.float32) for _ in range(n_d)]
    popularity = [rng.normal(size=n_i).astype(np.float32) for _ in range(n_d)]
    cap = min(cfg.max_activity, n_i // 2)
    user_parts, item_parts, dom_parts, aff_parts = [], [], [], []
    for lo in range(0, n_u, chunk_users):
        hi = min(lo + chunk_users, n_u)
        for d in range(n_d):
            specific = rng.normal(size=(hi - lo, k)).astype(np.float32)
            user_vec = np.sqrt(cfg.shared_weight) * shared[lo:hi] + np.sqrt(1 - cfg.shared_weight) * specific
            activity = np.floor(cfg.min_activity * (1 - rng.random(hi - lo)) ** (-1 / cfg.activity_alpha)).astype(np.int64)
            activity = np.clip(activity, cfg.min_activity, cap)
            activity[rng.random(hi - lo) > cfg.presence] = 0
            users, items, aff = _choose(rng, user_vec, item_vecs[d], popularity[d], activity, signal)
            user_parts.append(users + lo)
            item_parts.append(items + d * n_i)
            dom_parts.append(np.full(len(users), d, dtype=np.int16))
            aff_parts.append(aff)
    users = np.concatenate(user_parts)
    items = np.concatenate(item_parts)
    domains = np.concatenate(dom_parts)
    affinity = np.concatenate(aff_parts)
    del user_parts, item_parts, dom_parts, aff_parts
    z = (affinity - affinity.mean()) / (affinity.std() + 1e-9)
    rating = np.clip(np.round(3.4 + 1.1 * z + rng.normal(scale=0.6, size=len(z)).astype(np.float32)), 1, 5).astype(np.float32)
    del affinity, z
    start = rng.integers(1_500_000_000, 1_600_000_000, size=n_u)
    timestamp = start[users] + rng.integers(0, 86_400 * 365, size=len(users))
    order = np.lexsort((timestamp, users))
    users, items, domains, rating, timestamp = users[order], items[order], domains[order], rating[order], timestamp[order]
    del order
    # dense indices over the users and items that occur (as Interactions.from_frame would encode them)
    user_ids, user_idx = np.unique(users, return_inverse=True)
    item_ids, item_idx = np.unique(items, return_inverse=True)  # domain-major already: item = d * n_i + local
    counts = np.bincount(item_ids // n_i, minlength=n_d)
    frame = pd.DataFrame({
        "user": user_idx.astype(np.int64),
        "domain": domains,
        "item": item_idx.astype(np.int64),
        "rating": rating,
        "timestamp": timestamp.astype(np.int64),
        "click": (rating > 3).astype(np.float32),
        "like": (rating > 4).astype(np.float32),
    })
    user_features = pd.DataFrame(
        {
            "age": np.digitize(shared[user_ids, 0], [-1.0, 0.0, 1.0]) * 10 + 18,
            "gender": np.where(shared[user_ids, 1] + rng.normal(scale=0.5, size=len(user_ids)) > 0, "F", "M"),
            "occupation": rng.integers(0, 21, size=len(user_ids)),
        },
        index=pd.RangeIndex(len(user_ids)),
    )
    item_features = pd.DataFrame(
        {
            "category": (item_ids % n_i) % 7,
            "genres": [[f"g{c}"] for c in (item_ids % n_i) % 7],
            "price": rng.lognormal(mean=2.0, sigma=0.5, size=len(item_ids)).round(2),
        },
        index=pd.RangeIndex(len(item_ids)),
    )
    return Interactions(
        frame=frame,
        user_ids=user_ids,
        item_ids=item_ids,
        domains=[f"D{d}" for d in range(n_d)],
        item_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        label_columns=("click", "like"),
        user_features=user_features,
        item_features=item_features,
        name="synthetic-large",
    )
