import numpy as np
import pandas as pd
import pytest

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


def _theme_shares(inter, n_themes: int) -> np.ndarray:
    """[domain, user, theme] share of each user's interactions in a domain falling in each theme."""
    theme = inter.item_features["category"].to_numpy()[inter.items]
    counts = np.zeros((inter.n_domains, inter.n_users, n_themes))
    np.add.at(counts, (inter.domain, inter.users, theme), 1)
    return counts / np.maximum(counts.sum(2, keepdims=True), 1)


def test_planted_cross_domain_preferences_and_sparse_users():
    """Users' theme preferences correlate across domains (the same user far more than a shuffled
    one), and sparse_share of the users are sparse outside one home domain."""
    a = make_synthetic(n_users=600, n_themes=12, shared_weight=0.8, signal=1.0, min_activity=5,
                       sparse_share=0.5, sparse_activity=3, presence=1.0)
    shares = _theme_shares(a, 12)
    x, y = shares[0] - shares[0].mean(0), shares[1] - shares[1].mean(0)
    same = np.corrcoef(x.ravel(), y.ravel())[0, 1]
    shuffled = np.corrcoef(x.ravel(), y[np.random.default_rng(0).permutation(len(y))].ravel())[0, 1]
    assert same > 0.08 and same > shuffled + 0.08, (same, shuffled)
    counts = np.bincount(a.users * 3 + a.domain, minlength=a.n_users * 3).reshape(-1, 3)
    sparse_elsewhere = (np.sort(counts, axis=1)[:, :2] <= 3).all(1) & (counts.max(1) >= 5)
    assert 0.4 < sparse_elsewhere.mean() < 0.65  # 50% planted (+ the few drawn at the minimum anyway)


def _other_domain_theme_match(inter) -> tuple[float, float]:
    """Over events that follow an event of the other domain (two domains): the share whose theme is
    that of the user's latest earlier event in the other domain, and of the user's first one there."""
    frame = pd.DataFrame({"user": inter.users, "domain": inter.domain,
                          "theme": inter.item_features["category"].to_numpy()[inter.items]})  # by user, then time
    latest, first = pd.Series(np.nan, index=frame.index), pd.Series(np.nan, index=frame.index)
    for other in (0, 1):
        themes = frame["theme"].where(frame["domain"] == other)
        before = themes.groupby(frame["user"]).shift().groupby(frame["user"]).ffill()
        rows = frame["domain"] != other
        latest[rows] = before[rows]
        first[rows] = themes.groupby(frame["user"]).transform("first").where(before.notna())[rows]
    has = latest.notna()
    return float((frame["theme"][has] == latest[has]).mean()), float((frame["theme"][has] == first[has]).mean())


def test_planted_cross_domain_sequences():
    """The next event's theme follows the user's latest event in the other domain: it matches that
    event's theme much more often than the user's first event there (no such effect in random order)."""
    a = make_synthetic(n_users=500, n_domains=2, items_per_domain=300, min_activity=5, max_activity=15, signal=1.5,
                       n_themes=12, seq_cross=0.5, seq_intra=0.2)
    latest, first = _other_domain_theme_match(a)
    assert latest > first + 0.08, (latest, first)
    ts = a.frame.groupby("user")["timestamp"].diff().dropna()
    assert (ts > 0).all()
    per_user = np.bincount(a.users * 2 + a.domain, minlength=a.n_users * 2).reshape(-1, 2)
    assert ((per_user >= 5) | (per_user == 0)).all() and (per_user > 0).all(1).mean() > 0.5  # activity as drawn


def test_planted_task_signal():
    """like is given only to clicks, follows the click signal (more likes among higher ratings) and
    has a signal of its own (not a function of the rating)."""
    a = make_synthetic(n_users=600, like_own=0.5)
    rating, click, like = a.column("rating"), a.column("click"), a.column("like")
    assert np.array_equal(click, (rating > 3).astype(np.float32))
    assert not (like.astype(bool) & ~click.astype(bool)).any()
    p4, p5 = like[rating == 4].mean(), like[rating == 5].mean()
    assert 0 < p4 < p5 < 1, (p4, p5)
    assert abs(like.mean() - (rating > 4).mean()) < 0.02


def test_knobs_off_keep_the_legacy_draw_and_bad_knobs_are_refused():
    from cdrec.data.synthetic_large import make_synthetic_large
    from cdrec.errors import CdrecError

    plain = make_synthetic(SyntheticConfig(n_users=200, seed=5))
    assert np.array_equal(plain.item_features["category"].to_numpy(), np.asarray(plain.item_ids, dtype=np.int64) % 400 % 7)
    with pytest.raises(CdrecError, match="seq_cross / seq_intra need n_themes >= 2"):
        SyntheticConfig(seq_cross=0.5)
    with pytest.raises(CdrecError, match="seq_cross \\+ seq_intra must be <= 1"):
        SyntheticConfig(n_themes=4, seq_cross=0.7, seq_intra=0.6)
    with pytest.raises(CdrecError, match="structure knobs"):
        make_synthetic_large(SyntheticConfig(n_users=50, like_own=0.3))
