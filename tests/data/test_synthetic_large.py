"""The memory-light synthetic generator: a consistent, seeded multi-domain table."""

from __future__ import annotations

import numpy as np

from cdrec.data.synthetic import SyntheticConfig
from cdrec.data.synthetic_large import make_synthetic_large


def test_table_is_consistent_and_seeded() -> None:
    cfg = dict(n_users=600, items_per_domain=80, seed=3)
    a = make_synthetic_large(SyntheticConfig(**cfg), chunk_users=250)
    b = make_synthetic_large(SyntheticConfig(**cfg), chunk_users=250)
    assert a.frame.equals(b.frame)
    assert a.n_domains == 3 and len(a) > 600
    assert set(a.frame.columns) >= {"user", "item", "domain", "rating", "timestamp", "click", "like"}
    item_dom = np.searchsorted(a.item_offsets, a.items, side="right") - 1
    np.testing.assert_array_equal(item_dom, a.domain)
    assert a.frame["rating"].between(1, 5).all()
    assert (a.frame["click"] == (a.frame["rating"] > 3)).all()
    assert len(a.frame.drop_duplicates(["user", "item"])) == len(a)
    assert np.all(np.diff(a.users) >= 0)
    assert len(a.user_features) == a.n_users and len(a.item_features) == a.n_items
    c = make_synthetic_large(SyntheticConfig(**{**cfg, "seed": 4}), chunk_users=250)
    assert not c.frame.equals(a.frame)


def test_preferred_items_are_chosen_more_often() -> None:
    data = make_synthetic_large(SyntheticConfig(n_users=2000, items_per_domain=100, seed=0))
    counts = np.bincount(data.items, minlength=data.n_items)
    assert counts.max() > 5 * max(np.median(counts), 1)
