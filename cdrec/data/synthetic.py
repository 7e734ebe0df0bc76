"""A seeded generator of realistic multi-domain data (the built-in default for the demo and tests).

Users carry a latent preference shared by all domains plus a domain-specific one; items carry a
latent vector and a popularity bias. Activity per (user, domain) follows a power law, so many users
have only one or two interactions in a domain. Each user picks items by a Gumbel-top-k draw over
affinity, ratings 1-5 follow affinity, timestamps interleave the domains, and ``click = rating > 3``,
``like = rating > 4``. User side features (age bucket, gender, occupation) and item features
(category, price) are correlated with the latents, so side information is informative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cdrec.config import bounded, check_ranges
from cdrec.data.interactions import Interactions
from cdrec.errors import require


@dataclass
class SyntheticConfig:
    """Sizes and knobs of :func:`make_synthetic`."""

    n_users: int = bounded(1500, 1)
    n_domains: int = bounded(3, 1)
    items_per_domain: int = bounded(400, 2)
    dim: int = bounded(8, 1)
    shared_weight: float = bounded(0.7, 0, 1)
    activity_alpha: float = bounded(1.3, 0, lo_open=True)
    min_activity: int = bounded(1, 1)
    max_activity: int = bounded(60, 1)
    max_activity_share: float = bounded(0.25, 0, 1, lo_open=True)
    presence: float = bounded(0.8, 0, 1)
    signal: float = bounded(3.0, 0)
    seed: int = bounded(0, 0)

    def __post_init__(self) -> None:
        check_ranges(self, "data.synthetic")


def make_synthetic(config: SyntheticConfig | None = None, **overrides) -> Interactions:
    """Generate a multi-domain :class:`Interactions` (items owned by domains ``D0``, ``D1`` ...)."""
    cfg = config or SyntheticConfig()
    for key, value in overrides.items():
        setattr(cfg, key, value)
    require(cfg.n_users > 0 and cfg.n_domains > 0 and cfg.items_per_domain > 1, "synthetic sizes must be positive")
    rng = np.random.default_rng(cfg.seed)
    n_u, n_d, n_i, k = cfg.n_users, cfg.n_domains, cfg.items_per_domain, cfg.dim
    shared = rng.normal(size=(n_u, k))
    user_rows, item_rows, dom_rows, affinity_rows = [], [], [], []
    for d in range(n_d):
        specific = rng.normal(size=(n_u, k))
        user_vec = np.sqrt(cfg.shared_weight) * shared + np.sqrt(1 - cfg.shared_weight) * specific
        item_vec = rng.normal(size=(n_i, k)) / np.sqrt(k)
        popularity = rng.normal(scale=1.0, size=n_i)
        affinity = user_vec @ item_vec.T + popularity
        activity = np.floor(cfg.min_activity * (1 - rng.random(n_u)) ** (-1 / cfg.activity_alpha)).astype(np.int64)
        activity = np.clip(activity, cfg.min_activity, min(cfg.max_activity, max(1, int(n_i * cfg.max_activity_share))))
        activity[rng.random(n_u) > cfg.presence] = 0
        gumbel = -np.log(-np.log(rng.random((n_u, n_i))))
        order = np.argsort(-(cfg.signal * affinity + gumbel), axis=1)
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(n_i)[None, :].repeat(n_u, axis=0), axis=1)
        users, items = np.nonzero(rank < activity[:, None])
        user_rows.append(users)
        item_rows.append(items + d * n_i)
        dom_rows.append(np.full(len(users), d))
        affinity_rows.append(affinity[users, items])
    users = np.concatenate(user_rows)
    items = np.concatenate(item_rows)
    domains = np.concatenate(dom_rows)
    affinity = np.concatenate(affinity_rows)
    z = (affinity - affinity.mean()) / (affinity.std() + 1e-9)
    rating = np.clip(np.round(3.4 + 1.1 * z + rng.normal(scale=0.6, size=len(z))), 1, 5)
    start = rng.integers(1_500_000_000, 1_600_000_000, size=n_u)
    timestamp = start[users] + rng.integers(0, 86_400 * 365, size=len(users))
    frame = pd.DataFrame(
        {
            "user": users,
            "item": items,
            "domain": np.asarray([f"D{d}" for d in range(n_d)])[domains],
            "rating": rating,
            "timestamp": timestamp,
        }
    ).sort_values(["user", "timestamp"], kind="stable")
    frame["click"] = (frame["rating"] > 3).astype(np.float32)
    frame["like"] = (frame["rating"] > 4).astype(np.float32)
    user_features = pd.DataFrame(
        {
            "age": np.digitize(shared[:, 0], [-1.0, 0.0, 1.0]) * 10 + 18,
            "gender": np.where(shared[:, 1] + rng.normal(scale=0.5, size=n_u) > 0, "F", "M"),
            "occupation": rng.integers(0, 21, size=n_u),
        },
        index=pd.RangeIndex(n_u),
    )
    item_index = np.arange(n_d * n_i)
    item_features = pd.DataFrame(
        {
            "category": (item_index % n_i) % 7,
            "genres": [[f"g{(i % n_i) % 7}"] for i in item_index],
            "price": rng.lognormal(mean=2.0, sigma=0.5, size=n_d * n_i).round(2),
        },
        index=pd.Index(item_index),
    )
    return Interactions.from_frame(
        frame,
        rating_col="rating",
        timestamp_col="timestamp",
        label_cols=["click", "like"],
        domain_names=[f"D{d}" for d in range(n_d)],
        user_features=user_features,
        item_features=item_features,
        name="synthetic",
        source="synthetic",
    )
