"""Property-based tests (hypothesis) of the splitters and samplers on small random tables:
many users per domain, tied timestamps, repeat interactions, empty domains."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdrec.data.candidates import add_sampled_candidates
from cdrec.data.interactions import Interactions
from cdrec.data.samplers import BPRSampler
from cdrec.data.splits import leave_one_out, ratio_split
from cdrec.errors import CdrecError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def tables(draw, timestamps: bool = True) -> Interactions:
    n_domains = draw(st.integers(1, 3))
    sizes = draw(st.lists(st.integers(2, 9), min_size=n_domains, max_size=n_domains))
    n_users = draw(st.integers(1, 6))
    rows = draw(st.lists(st.tuples(st.integers(0, n_users - 1), st.integers(0, n_domains - 1), st.integers(0, 8), st.integers(0, 4)), min_size=1, max_size=60))
    frame = pd.DataFrame(
        {
            "user": [f"u{u}" for u, _, _, _ in rows],
            "item": [f"d{d}-i{i % sizes[d]}" for _, d, i, _ in rows],
            "domain": [f"D{d}" for _, d, _, _ in rows],
            "timestamp": [t for *_, t in rows],  # few distinct values: many ties
        }
    )
    return Interactions.from_frame(
        frame, timestamp_col="timestamp" if timestamps else None, domain_names=[f"D{d}" for d in range(n_domains)],
        items_by_domain=True, name="prop",
    )


def _assert_partition(split, n: int) -> None:
    parts = [split.train_rows, split.valid_rows, split.test_rows]
    for p in parts:
        assert np.all(np.diff(p) > 0)  # sorted, no repeats
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))


@SETTINGS
@given(inter=tables(), mixed=st.booleans())
def test_leave_one_out_last_by_time_is_test(inter, mixed):
    split = leave_one_out(inter, mixed=mixed, seed=0)
    _assert_partition(split, len(inter))
    group = inter.users if mixed else inter.users * inter.n_domains + inter.domain.astype(np.int64)
    ts = inter.column("timestamp")
    order_key = ts * len(inter) + np.arange(len(inter))  # time, then file order breaks ties
    part = np.zeros(len(inter), dtype=int)
    part[split.valid_rows], part[split.test_rows] = 1, 2
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        by_time = rows[np.argsort(order_key[rows])]
        expected = np.zeros(len(rows), dtype=int)
        if len(rows) >= 2:
            expected[-1] = 2
        if len(rows) >= 3:
            expected[-2] = 1
        assert np.array_equal(part[by_time], expected)  # no leakage: train < valid < test in time


@SETTINGS
@given(inter=tables(timestamps=False), seed=st.integers(0, 2**31))
def test_leave_one_out_without_time_is_seeded(inter, seed):
    a, b = leave_one_out(inter, seed=seed), leave_one_out(inter, seed=seed)
    _assert_partition(a, len(inter))
    assert all(np.array_equal(a.rows(p), b.rows(p)) for p in ("train", "valid", "test"))
    group = inter.users * inter.n_domains + inter.domain.astype(np.int64)
    sizes = np.bincount(group, minlength=group.max() + 1)
    assert len(a.test_rows) == int((sizes >= 2).sum())
    assert np.unique(group[a.test_rows]).size == len(a.test_rows)  # one test row per group


@SETTINGS
@given(inter=tables(), ratios=st.sampled_from([(0.8, 0.1, 0.1), (0.5, 0.5), (0.6, 0.2, 0.2), (0.9, 0.0, 0.1)]),
       order=st.sampled_from(["random", "row"]), by_user=st.booleans(), seed=st.integers(0, 1000))
def test_ratio_split_partitions_rows(inter, ratios, order, by_user, seed):
    try:
        split = ratio_split(inter, ratios, order=order, by_user=by_user, seed=seed)
    except CdrecError as exc:
        assert "empty train or test" in str(exc)
        return
    _assert_partition(split, len(inter))
    r = list(ratios) if len(ratios) == 3 else [ratios[0], 0.0, ratios[1]]
    if not by_user:
        n = len(inter)
        assert len(split.train_rows) == int(np.ceil(r[0] * n - 1e-9))
        if order == "row":  # row order: train rows come first, then valid, then test
            parts = [p for p in (split.train_rows, split.valid_rows, split.test_rows) if len(p)]
            assert all(a.max() < b.min() for a, b in zip(parts, parts[1:]))
    again = ratio_split(inter, ratios, order=order, by_user=by_user, seed=seed)
    assert all(np.array_equal(split.rows(p), again.rows(p)) for p in ("train", "valid", "test"))


@SETTINGS
@given(inter=tables(), n_neg=st.integers(1, 4), seed=st.integers(0, 1000))
def test_sampled_candidates_are_valid_negatives(inter, n_neg, seed):
    split = leave_one_out(inter, seed=0)
    try:
        add_sampled_candidates(split, n_neg, seed=seed)
    except CdrecError as exc:
        assert "too few items" in str(exc)
        return
    touched = set(zip(inter.users.tolist(), inter.items.tolist()))
    for part in ("valid", "test"):
        rows, cands = split.rows(part), split.candidates[part]
        assert cands.shape == (len(rows), 1 + n_neg)
        assert np.array_equal(cands[:, 0], inter.items[rows])
        doms = inter.domain[rows].astype(np.int64)
        start, stop = inter.item_offsets[doms][:, None], inter.item_offsets[doms + 1][:, None]
        neg = cands[:, 1:]
        assert np.all((neg >= start) & (neg < stop))  # in the positive's domain
        for u, row in zip(inter.users[rows], neg):
            assert len(set(row.tolist())) == n_neg  # distinct
            assert not any((int(u), int(i)) in touched for i in row)  # never a positive of the user
    again = add_sampled_candidates(leave_one_out(inter, seed=0), n_neg, seed=seed)
    assert all(np.array_equal(split.candidates[p], again.candidates[p]) for p in ("valid", "test"))


@SETTINGS
@given(inter=tables(), batch=st.integers(1, 17), seed=st.integers(0, 1000), epoch=st.integers(0, 5), n_neg=st.sampled_from([1, 3]))
def test_bpr_sampler_negatives(inter, batch, seed, epoch, n_neg):
    train = leave_one_out(inter, seed=0).train
    try:
        sampler = BPRSampler(train, batch, seed=seed, n_negatives=n_neg)
    except CdrecError as exc:
        assert "negative item(s) cannot be sampled" in str(exc)
        return
    batches = list(sampler.epoch(epoch))
    assert len(batches) == len(sampler)
    users = np.concatenate([b["user"] for b in batches])
    pos = np.concatenate([b["pos"] for b in batches])
    neg = np.concatenate([b["neg"] for b in batches]).reshape(len(users), n_neg)
    got = sorted(zip(users.tolist(), pos.tolist()))
    assert got == sorted(zip(train.users.tolist(), train.items.tolist()))  # every row once per epoch
    item_dom = train.item_domain()
    assert np.array_equal(item_dom[neg], np.repeat(item_dom[pos][:, None], n_neg, axis=1))  # positive's domain
    positives = set(zip(train.users.tolist(), train.items.tolist()))
    assert not any((u, int(i)) in positives for u, row in zip(users.tolist(), neg) for i in row)
    assert all(len(set(row.tolist())) == n_neg for row in neg)  # distinct within a row
    again = list(BPRSampler(train, batch, seed=seed, n_negatives=n_neg).epoch(epoch))
    assert all(np.array_equal(x[k], y[k]) for x, y in zip(batches, again) for k in x)


def test_bpr_sampler_refuses_a_user_with_every_item():
    frame = pd.DataFrame({"user": ["a", "a", "b"], "item": [1, 2, 1], "domain": ["X", "X", "X"]})
    inter = Interactions.from_frame(frame, name="full")
    with pytest.raises(CdrecError, match="2 of the 2 items of domain 'X'"):
        BPRSampler(inter, 4, seed=0)
