import numpy as np

from cdrec.data.synthetic import SyntheticConfig, make_synthetic


def test_synthetic_is_seeded_and_realistic():
    a = make_synthetic(SyntheticConfig(n_users=300, seed=3))
    b = make_synthetic(SyntheticConfig(n_users=300, seed=3))
    c = make_synthetic(SyntheticConfig(n_users=300, seed=4))
    assert a.frame.equals(b.frame)
    assert not a.frame.equals(c.frame)
    assert a.n_domains == 3 and a.items_by_domain
    ratings = a.column("rating")
    assert set(np.unique(ratings)) <= {1, 2, 3, 4, 5} and len(np.unique(ratings)) == 5
    counts = np.bincount(a.users * 3 + a.domain, minlength=a.n_users * 3)
    active = counts[counts > 0]
    assert np.mean(active <= 2) > 0.4  # power law: many users with 1-2 interactions in a domain
    assert active.max() >= 20
    assert np.array_equal(a.column("click"), (ratings > 3).astype(np.float32))
    assert np.array_equal(a.column("like"), (ratings > 4).astype(np.float32))
    assert {"age", "gender", "occupation"} <= set(a.user_features.columns)
    assert {"category", "price"} <= set(a.item_features.columns)
    # users appear in several domains (shared preferences are learnable across domains)
    present = np.zeros((a.n_users, 3), bool)
    present[a.users, a.domain] = True
    assert np.mean(present.sum(1) >= 2) > 0.5
