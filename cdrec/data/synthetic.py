"""A seeded generator of realistic multi-domain data (the built-in default for the demo and tests).

Users carry a latent preference shared by all domains plus a domain-specific one; items carry a
latent vector and a popularity bias. Activity per (user, domain) follows a power law, so many users
have only one or two interactions in a domain. Each user picks items by a Gumbel-top-k draw over
affinity, ratings 1-5 follow affinity, timestamps interleave the domains, and ``click = rating > 3``,
``like = rating > 4``. User side features (age bucket, gender, occupation) and item features
(category, price) are correlated with the latents, so side information is informative.

Knobs that plant the structure each family of methods exists for (all off by default, which keeps
the tables of earlier versions bit for bit; the extra draws come from a second seeded stream):

* cross-domain CF — ``shared_weight`` (the share of a user's preference common to all domains) and
  ``sparse_share``: that share of users has a *home* domain (drawn per user) and only
  ``sparse_activity`` interactions in each other domain, so a user sparse in a target domain is
  predictable from the home domain only through the shared preference (UCLR's and MTAL's premise).
* themes — ``n_themes > 0`` gives every item a theme, the latent direction (one of ``n_themes``
  fixed directions, the same in every domain) its vector is closest to; the item feature
  ``category`` is then the theme, so "likes theme 3" means the same in every domain.
* sequences — ``seq_cross``: each event's theme is, with this probability, the theme of the user's
  latest event in another domain (interest carried across domains: what MERIT's cross-domain fusion
  of the mixed sequence should capture and a single-domain SASRec cannot see); ``seq_intra``: with
  this probability it is the theme after the user's latest theme in the same domain (``+1`` modulo
  ``n_themes``: an intra-domain transition). Otherwise the theme is free; the item is then drawn by
  affinity within the theme (never an item the user already has). Events of the domains are
  interleaved at random and the timestamps follow the order of the draws.
* multi-task CTR — ``like_own``: ``like`` is given only to clicks, and whether a click is liked
  mixes the shared affinity (weight ``1 - like_own``) with a like-only user x item affinity
  (weight ``like_own``), so click and like share signal and like has its own (M3oE's task experts).
  The like rate among clicks stays that of ``rating > 4``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    sparse_share: float = bounded(0.0, 0, 1)
    sparse_activity: int = bounded(2, 1)
    n_themes: int = bounded(0, 0)
    seq_cross: float = bounded(0.0, 0, 1)
    seq_intra: float = bounded(0.0, 0, 1)
    like_own: float = bounded(0.0, 0, 1)

    def __post_init__(self) -> None:
        check_ranges(self, "data.synthetic")
        require(self.seq_cross + self.seq_intra <= 1,
                f"data.synthetic: seq_cross + seq_intra must be <= 1, got {self.seq_cross} + {self.seq_intra}")
        require(self.n_themes >= 2 or self.seq_cross + self.seq_intra == 0,
                f"data.synthetic: seq_cross / seq_intra need n_themes >= 2, got n_themes={self.n_themes}")

    @property
    def sequential(self) -> bool:
        """Whether events are drawn one at a time along each user's mixed sequence."""
        return self.seq_cross + self.seq_intra > 0

    @property
    def plants_structure(self) -> bool:
        """Whether any structure knob is on (the legacy tables are kept when none is)."""
        return self.sparse_share > 0 or self.n_themes > 0 or self.sequential or self.like_own > 0


def make_synthetic(config: SyntheticConfig | None = None, **overrides) -> Interactions:
    """Generate a multi-domain :class:`Interactions` (items owned by domains ``D0``, ``D1`` ...)."""
    cfg = replace(config or SyntheticConfig(), **overrides)
    require(cfg.n_users > 0 and cfg.n_domains > 0 and cfg.items_per_domain > 1, "synthetic sizes must be positive")
    rng = np.random.default_rng(cfg.seed)
    extra = np.random.default_rng([cfg.seed, 7])  # the structure knobs' draws, apart from the legacy stream
    n_u, n_d, n_i, k = cfg.n_users, cfg.n_domains, cfg.items_per_domain, cfg.dim
    shared = rng.normal(size=(n_u, k))
    theme_dirs = extra.normal(size=(max(cfg.n_themes, 1), k))
    home = extra.integers(0, n_d, size=n_u)
    sparse_user = extra.random(n_u) < cfg.sparse_share
    affinities, activities, themes = [], [], []
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
        away = sparse_user & (home != d)
        activity[away] = np.minimum(activity[away], cfg.sparse_activity)
        themes.append(np.argmax(item_vec @ theme_dirs.T, axis=1) if cfg.n_themes else (np.arange(n_i) % 7))
        if cfg.sequential:
            affinities.append(affinity)
            activities.append(activity)
            continue
        gumbel = -np.log(-np.log(rng.random((n_u, n_i))))
        order = np.argsort(-(cfg.signal * affinity + gumbel), axis=1)
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(n_i)[None, :].repeat(n_u, axis=0), axis=1)
        users, items = np.nonzero(rank < activity[:, None])
        user_rows.append(users)
        item_rows.append(items + d * n_i)
        dom_rows.append(np.full(len(users), d))
        affinity_rows.append(affinity[users, items])
    if cfg.sequential:
        users, items, domains, affinity, step = _draw_sequences(cfg, extra, affinities, activities, themes)
    else:
        users = np.concatenate(user_rows)
        items = np.concatenate(item_rows)
        domains = np.concatenate(dom_rows)
        affinity = np.concatenate(affinity_rows)
    z = (affinity - affinity.mean()) / (affinity.std() + 1e-9)
    rating = np.clip(np.round(3.4 + 1.1 * z + rng.normal(scale=0.6, size=len(z))), 1, 5)
    start = rng.integers(1_500_000_000, 1_600_000_000, size=n_u)
    if cfg.sequential:  # one event every 1-3 days, in the order drawn
        gaps = extra.integers(86_400, 3 * 86_400, size=(n_u, int(step.max()) + 1 if len(step) else 1))
        timestamp = start[users] + np.cumsum(gaps, axis=1)[users, step]
    else:
        timestamp = start[users] + rng.integers(0, 86_400 * 365, size=len(users))
    click = (rating > 3).astype(np.float32)
    like = _like_labels(cfg, extra, users, items, rating, z, n_d * n_i) if cfg.like_own > 0 else (rating > 4).astype(np.float32)
    frame = pd.DataFrame(
        {
            "user": users,
            "item": items,
            "domain": np.asarray([f"D{d}" for d in range(n_d)])[domains],
            "rating": rating,
            "timestamp": timestamp,
            "click": click,
            "like": like,
        }
    ).sort_values(["user", "timestamp"], kind="stable")
    user_features = pd.DataFrame(
        {
            "age": np.digitize(shared[:, 0], [-1.0, 0.0, 1.0]) * 10 + 18,
            "gender": np.where(shared[:, 1] + rng.normal(scale=0.5, size=n_u) > 0, "F", "M"),
            "occupation": rng.integers(0, 21, size=n_u),
        },
        index=pd.RangeIndex(n_u),
    )
    item_index = np.arange(n_d * n_i)
    category = np.concatenate(themes)
    item_features = pd.DataFrame(
        {
            "category": category,
            "genres": [[f"g{c}"] for c in category],
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


def _draw_sequences(cfg: SyntheticConfig, rng: np.random.Generator, affinities: list[np.ndarray], activities: list[np.ndarray],
                    themes: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Draw every user's mixed sequence one step at a time (vectorized over users): the domains of a
    user's ``sum(activity)`` events in random order, each event's theme from ``seq_cross`` /
    ``seq_intra`` (module docstring) or free, its item the best unused one of
    ``signal * affinity + Gumbel`` (within the theme when one is set). Returns the events' users,
    items (global indices), domains, affinities and step numbers."""
    n_d, n_u = len(affinities), len(activities[0])
    n_i = affinities[0].shape[1]
    width = max(1, max(int(a.max()) for a in activities))
    slot_domain = np.concatenate([np.where(np.arange(width)[None, :] < a[:, None], d, -1) for d, a in enumerate(activities)], axis=1)
    keys = np.where(slot_domain >= 0, rng.random(slot_domain.shape), np.inf)
    slot_domain = np.take_along_axis(slot_domain, np.argsort(keys, axis=1, kind="stable"), axis=1)
    n_steps = int((slot_domain >= 0).sum(1).max())
    used = np.zeros((n_d, n_u, n_i), dtype=bool)
    last_theme = np.full((n_u, n_d), -1)
    last_step = np.full((n_u, n_d), -1)
    out_users, out_items, out_domains, out_affinity, out_step = [], [], [], [], []
    for step in range(n_steps):
        for d in range(n_d):
            rows = np.nonzero(slot_domain[:, step] == d)[0]
            if not len(rows):
                continue
            other_step = np.where(np.arange(n_d)[None, :] == d, -2, last_step[rows])
            latest_other = np.argmax(other_step, axis=1)
            cross_theme = np.where(other_step.max(1) >= 0, last_theme[rows, latest_other], -1)
            intra_theme = np.where(last_theme[rows, d] >= 0, (last_theme[rows, d] + 1) % cfg.n_themes, -1)
            draw = rng.random(len(rows))
            target = np.where(draw < cfg.seq_cross, cross_theme, np.where(draw < cfg.seq_cross + cfg.seq_intra, intra_theme, -1))
            score = cfg.signal * affinities[d][rows] - np.log(rng.standard_exponential((len(rows), n_i)))
            score += 1e3 * ((themes[d][None, :] == target[:, None]) & (target[:, None] >= 0))
            score[used[d, rows]] = -np.inf
            item = np.argmax(score, axis=1)
            used[d, rows, item] = True
            last_theme[rows, d] = themes[d][item]
            last_step[rows, d] = step
            out_users.append(rows)
            out_items.append(item + d * n_i)
            out_domains.append(np.full(len(rows), d))
            out_affinity.append(affinities[d][rows, item])
            out_step.append(np.full(len(rows), step))
    return tuple(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
                 for parts in (out_users, out_items, out_domains, out_affinity, out_step))


def _like_labels(cfg: SyntheticConfig, rng: np.random.Generator, users: np.ndarray, items: np.ndarray, rating: np.ndarray,
                 z: np.ndarray, n_items: int) -> np.ndarray:
    """``like`` for ``like_own > 0``: only clicks (rating > 3) are liked; a click is liked when
    ``sqrt(1 - like_own) * z + sqrt(like_own) * own + noise`` is in its top share, ``own`` a
    standardized like-only user x item affinity and the share that of ``rating > 4`` among clicks."""
    click = rating > 3
    own = np.einsum("nk,nk->n", rng.normal(size=(cfg.n_users, cfg.dim))[users],
                    rng.normal(size=(n_items, cfg.dim))[items]) / np.sqrt(cfg.dim)
    score = np.sqrt(1 - cfg.like_own) * z + np.sqrt(cfg.like_own) * own + rng.normal(scale=0.3, size=len(z))
    share = (rating > 4).sum() / max(click.sum(), 1)
    threshold = np.quantile(score[click], 1 - share) if click.any() else np.inf
    return (click & (score > threshold)).astype(np.float32)
