"""Domain builders: turn one dataset into several domains.

* :func:`by_item_attribute` — each item goes to one of its attribute values (MovieLens genres),
  either the first listed one or one drawn by the seed (as the AAE/MTAL authors did).
* :func:`uniform_items` — random K-way split of items (domains share users: user-aligned).
* :func:`uniform_users` — random K-way split of users (domains share items: item-aligned).
* :func:`by_user_bins` — user attribute bins (ML-1M age groups of M3oE); the domain is a property of
  the sample and items may repeat across domains.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from cdrec.data.interactions import Interactions
from cdrec.errors import CdrecError, require

M3OE_AGE_BINS: dict[str, tuple[int, ...]] = {
    "age<25": (1, 18),
    "age25-34": (25,),
    "age>=35": (35, 45, 50, 56),
}


def reassign_domains(
    inter: Interactions,
    row_domain: np.ndarray,
    names: Sequence[str],
    *,
    items_by_domain: bool,
    drop_empty: bool = True,
) -> Interactions:
    """Re-encode ``inter`` with a new domain index per row (``row_domain[i]`` in ``range(len(names))``)."""
    row_domain = np.asarray(row_domain)
    require(len(row_domain) == len(inter), "domain assignment must give one domain per row")
    raw = inter.frame.copy()
    raw["user"] = inter.user_ids[raw["user"].to_numpy()]
    raw["item"] = inter.item_ids[raw["item"].to_numpy()]
    names = list(names)
    if drop_empty:
        used = np.unique(row_domain)
        names = [names[i] for i in used]
        row_domain = np.searchsorted(used, row_domain)
    require(len(names) > 0, f"{inter.name}: the domain builder produced no domain")
    raw["domain"] = np.asarray(names, dtype=object)[row_domain]
    label_cols = list(inter.label_columns)
    out = Interactions.from_frame(
        raw,
        domain_col="domain",
        rating_col="rating" if inter.has_rating else None,
        timestamp_col="timestamp" if inter.has_timestamp else None,
        label_cols=label_cols,
        domain_names=names,
        user_features=_by_raw_id(inter.user_features, inter.user_ids),
        item_features=_by_raw_id(inter.item_features, inter.item_ids),
        items_by_domain=items_by_domain,
        name=inter.name,
    )
    out.meta = dict(inter.meta)
    return out


def _by_raw_id(features: pd.DataFrame | None, raw_ids: np.ndarray) -> pd.DataFrame | None:
    if features is None:
        return None
    out = features.copy()
    out.index = pd.Index(raw_ids)
    return out


def by_item_attribute(
    inter: Interactions,
    attribute: str = "genres",
    *,
    choice: str = "first",
    seed: int = 0,
    keep: Sequence[str] | None = None,
) -> Interactions:
    """One domain per attribute value; ``inter.item_features[attribute]`` holds a list per item.

    ``choice="first"`` takes the first listed value, ``"random"`` draws one of the item's values with
    ``seed``. ``keep`` restricts to some values (rows of other items are dropped).
    """
    feats = inter.item_features
    if feats is None or attribute not in feats.columns:
        raise CdrecError(f"{inter.name}: no item attribute {attribute!r} to build domains from")
    exploded = feats[attribute].explode().dropna()
    position = exploded.groupby(level=0).cumcount().to_numpy()
    lengths = np.bincount(exploded.index.to_numpy(dtype=np.int64), minlength=inter.n_items)
    if choice == "first":
        pick = np.zeros(inter.n_items, dtype=np.int64)
    elif choice == "random":
        rng = np.random.default_rng(seed)
        pick = np.floor(rng.random(inter.n_items) * np.maximum(lengths, 1)).astype(np.int64)
    else:
        raise CdrecError(f"domain choice must be 'first' or 'random', got {choice!r}")
    chosen = exploded[position == pick[exploded.index.to_numpy(dtype=np.int64)]]
    values = list(pd.unique(exploded))
    unknown = [k for k in keep or () if k not in values]
    if unknown:
        raise CdrecError(f"data.keep_domains: unknown domain {unknown[0]!r} (no item has that {attribute} value); expected some of {sorted(map(str, values))}")
    names = list(keep) if keep is not None else values
    item_code = np.full(inter.n_items, -1, dtype=np.int64)
    item_code[chosen.index.to_numpy(dtype=np.int64)] = (
        pd.Series(chosen.to_numpy()).map({n: i for i, n in enumerate(names)}).fillna(-1).to_numpy(dtype=np.int64)
    )
    codes = item_code[inter.items]
    mask = codes >= 0
    require(bool(mask.any()), f"{inter.name}: no item has an attribute value in {names}")
    sub = inter.subset(np.flatnonzero(mask))
    return reassign_domains(sub, codes[mask], names, items_by_domain=True)


def uniform_items(inter: Interactions, k: int, *, seed: int = 0) -> Interactions:
    """Random K-way split of items into domains of (nearly) equal size; users are shared."""
    require(k >= 1, f"number of domains must be >= 1, got {k}")
    require(k <= inter.n_items, f"{inter.name}: {k} domains asked but only {inter.n_items} items")
    rng = np.random.default_rng(seed)
    item_domain = rng.permutation(np.arange(inter.n_items) % k)
    return reassign_domains(inter, item_domain[inter.items], [f"part{i}" for i in range(k)], items_by_domain=True)


def uniform_users(inter: Interactions, k: int, *, seed: int = 0) -> Interactions:
    """Random K-way split of users into domains; items are shared (item-aligned organizations)."""
    require(k >= 1, f"number of domains must be >= 1, got {k}")
    require(k <= inter.n_users, f"{inter.name}: {k} domains asked but only {inter.n_users} users")
    rng = np.random.default_rng(seed)
    user_domain = rng.permutation(np.arange(inter.n_users) % k)
    return reassign_domains(inter, user_domain[inter.users], [f"part{i}" for i in range(k)], items_by_domain=False)


def by_user_bins(
    inter: Interactions,
    column: str = "age",
    bins: dict[str, tuple] | None = None,
    *,
    edges: Sequence[float] | None = None,
) -> Interactions:
    """Domain = bin of a user attribute; either explicit value sets (``bins``) or numeric ``edges``.

    With ``edges=[25, 35]`` ages fall in ``<25``, ``25-34`` and ``>=35`` (ML-100K integer ages).
    """
    feats = inter.user_features
    if feats is None or column not in feats.columns:
        raise CdrecError(f"{inter.name}: no user attribute {column!r} to build domains from")
    values = feats[column].to_numpy()
    if bins is not None:
        names = list(bins)
        user_domain = np.full(len(values), -1, dtype=np.int64)
        for i, members in enumerate(bins.values()):
            user_domain[np.isin(values, np.asarray(members))] = i
    else:
        require(edges is not None and len(edges) > 0, "by_user_bins needs bins or edges")
        cuts = list(edges)
        user_domain = np.searchsorted(np.asarray(cuts, dtype=float), values.astype(float), side="right")
        names = [f"{column}<{cuts[0]:g}"] + [f"{column}{a:g}-{b - 1:g}" for a, b in zip(cuts[:-1], cuts[1:])] + [f"{column}>={cuts[-1]:g}"]
    row_domain = user_domain[inter.users]
    mask = row_domain >= 0
    require(bool(mask.any()), f"{inter.name}: no user falls in any bin of {column!r}")
    sub = inter.subset(np.flatnonzero(mask))
    return reassign_domains(sub, row_domain[mask], names, items_by_domain=False, drop_empty=False)
