"""The vectorized candidate sampler: same draws as the previous algorithm, valid candidates."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import reference
from cdrec.data import candidates
from cdrec.data.candidates import add_sampled_candidates, sample_in_domain, user_item_keys
from cdrec.data.splits import leave_one_out


def _case(seed: int):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(30, 300, size=int(rng.integers(1, 4)))
    offsets = np.r_[0, np.cumsum(sizes)]
    n_items, n_users = int(offsets[-1]), int(rng.integers(5, 200))
    keys = np.unique(rng.integers(0, n_users * n_items, size=n_users * 5))
    users = rng.integers(0, n_users, 300)
    doms = rng.integers(0, len(sizes), 300)
    n = int(rng.integers(1, sizes.min() // 2))
    return users, doms, n, offsets, keys, n_items


@pytest.mark.parametrize("bitmap", [True, False])
@pytest.mark.parametrize("distinct", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_same_draws_as_previous_algorithm(monkeypatch, seed: int, distinct: bool, bitmap: bool) -> None:
    if not bitmap:
        monkeypatch.setattr(candidates, "_BITMAP_MAX_BITS", 1)
    users, doms, n, offsets, keys, n_items = _case(seed)
    kw = dict(item_offsets=offsets, exclude_keys=keys, n_items=n_items, distinct=distinct)
    new = sample_in_domain(users, doms, n, rng=np.random.default_rng(seed), **kw)
    old = reference.sample_in_domain(users, doms, n, rng=np.random.default_rng(seed), **kw)
    np.testing.assert_array_equal(new, old)


def test_candidates_are_valid_distinct_and_unseen(tiny_synthetic) -> None:
    split = add_sampled_candidates(leave_one_out(tiny_synthetic, seed=0), 20, seed=0)
    data = split.data
    cand = split.candidates["test"]
    rows = split.test_rows
    neg = cand[:, 1:]
    start = data.item_offsets[data.domain[rows]][:, None]
    stop = data.item_offsets[data.domain[rows] + 1][:, None]
    assert ((neg >= start) & (neg < stop)).all()
    assert (np.sort(neg, axis=1)[:, 1:] != np.sort(neg, axis=1)[:, :-1]).all()
    touched = set(zip(data.users.tolist(), data.items.tolist()))
    users = data.users[rows]
    assert not any((int(u), int(i)) in touched for u, row in zip(users, neg) for i in row)


def test_membership_lookup_follows_the_keys_it_was_built_for() -> None:
    a = np.array([3, 10, 64], dtype=np.int64)
    b = np.array([4, 11], dtype=np.int64)
    probe = np.arange(70)
    assert np.flatnonzero(candidates._membership(a, 10)(probe)).tolist() == [3, 10, 64]
    assert np.flatnonzero(candidates._membership(b, 10)(probe)).tolist() == [4, 11]
    assert not candidates._membership(np.zeros(0, dtype=np.int64), 10)(probe).any()


def test_user_item_keys_unchanged(tiny_synthetic) -> None:
    keys = user_item_keys(tiny_synthetic)
    assert (np.diff(keys) > 0).all()


@pytest.mark.parametrize("seed", range(4))
def test_hash_set_membership_equals_isin(seed: int) -> None:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 10 ** int(rng.integers(2, 12)), size=int(rng.integers(1, 5000)))
    member = candidates.HashSet(keys)
    probe = np.concatenate([keys, rng.integers(0, int(keys.max()) + 10, size=3000), [0, int(keys.max()) + 1]])
    np.testing.assert_array_equal(member(probe), np.isin(probe, keys))
    assert member(probe.reshape(-1, 1)).shape == (len(probe), 1)


def test_hash_set_runs_past_its_last_home_slot() -> None:
    n_slots = candidates.HashSet.n_slots(40)
    shift = np.uint64(64 - (n_slots.bit_length() - 1))
    pool = np.arange(100_000, dtype=np.int64)
    home = ((pool.astype(np.uint64) * candidates._FIB) >> shift).astype(np.int64)
    keys = pool[home == n_slots - 1][:40]  # all collide on the last home slot
    member = candidates.HashSet(keys)
    assert len(member.table) > n_slots
    assert member(keys).all() and not member(pool[home == n_slots - 1][40:60]).any()


def test_large_tables_use_the_hash_set_and_sample_the_same(monkeypatch) -> None:
    users, doms, n, offsets, keys, n_items = _case(7)
    assert isinstance(candidates._build_membership(np.arange(0, 2**30 - 1, 2**17, dtype=np.int64)), candidates.HashSet)  # 128 MiB bitmap for 8k keys
    assert not isinstance(candidates._build_membership(np.arange(0, 10**7, 1000, dtype=np.int64)), candidates.HashSet)  # small bitmap
    kw = dict(item_offsets=offsets, exclude_keys=keys, n_items=n_items, distinct=True)
    bitmap = sample_in_domain(users, doms, n, rng=np.random.default_rng(0), **kw)
    monkeypatch.setattr(candidates, "_BITMAP_MAX_BITS", 1)
    hashed = sample_in_domain(users, doms, n, rng=np.random.default_rng(0), exclude_keys=keys.copy(), **{k: v for k, v in kw.items() if k != "exclude_keys"})
    np.testing.assert_array_equal(bitmap, hashed)


def test_sorted_unique_equals_np_unique() -> None:
    rng = np.random.default_rng(0)
    for x in (rng.integers(0, 50, 1000), rng.integers(0, 2**40, 1000), np.zeros(0, dtype=np.int64), np.array([5])):
        np.testing.assert_array_equal(candidates.sorted_unique(x), np.unique(x))


def test_too_few_items_names_the_user_and_gives_advice_that_applies():
    import pandas as pd
    import pytest

    from cdrec.data.candidates import add_sampled_candidates
    from cdrec.data.interactions import Interactions
    from cdrec.data.splits import leave_one_out
    from cdrec.errors import CdrecError

    rows = [("u1", f"a{i}", "A", i) for i in range(5)] + [("u2", "a0", "A", 0), ("u2", "a1", "A", 1), ("u2", "a5", "A", 2)]
    rows += [("u1", "m1", "M", 10), ("u1", "m2", "M", 11), ("u1", "m3", "M", 12)]
    frame = pd.DataFrame(rows, columns=["user", "item", "domain", "timestamp"])
    data = Interactions.from_frame(frame, user_col="user", item_col="item", domain_col="domain", timestamp_col="timestamp", name="tiny")
    split = leave_one_out(data, seed=0)
    with pytest.raises(CdrecError, match=r"^tiny: too few items left for user 'u1' in domain 'M': it touched 3 of the 3 items.*drop such users") as info:
        add_sampled_candidates(split, 1)
    assert "lower split.n_negatives" not in str(info.value)
    with pytest.raises(CdrecError, match="lower split.n_negatives or drop such users"):
        add_sampled_candidates(split, 4)
