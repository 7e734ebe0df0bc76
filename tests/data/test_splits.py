import numpy as np
import pandas as pd
import pytest

from cdrec.data.candidates import add_sampled_candidates
from cdrec.data.interactions import Interactions
from cdrec.errors import CdrecError
from cdrec.data.splits import leave_one_out, merge_order, ratio_split

from tests.conftest import shared_path


def pairs(inter, rows):
    return set(zip(inter.users[rows].tolist(), inter.items[rows].tolist()))


def test_leave_one_out_per_domain_no_leak_and_latest_is_test(tiny_synthetic):
    inter = tiny_synthetic
    split = leave_one_out(inter, seed=0)
    all_rows = np.concatenate([split.train_rows, split.valid_rows, split.test_rows])
    assert np.array_equal(np.sort(all_rows), np.arange(len(inter)))
    assert not pairs(inter, split.test_rows) & pairs(inter, split.train_rows)
    assert not pairs(inter, split.valid_rows) & pairs(inter, split.train_rows)
    ts = inter.column("timestamp")
    key = inter.users * inter.n_domains + inter.domain
    for part in ("valid", "test"):
        rows = split.rows(part)
        # at most one row per (user, domain)
        assert len(np.unique(key[rows])) == len(rows)
    # the test row is the latest of its (user, domain) group; validation is latest among the rest
    latest = {}
    for r in np.argsort(ts, kind="stable"):
        latest[key[r]] = r
    assert all(latest[key[r]] == r or ts[latest[key[r]]] == ts[r] for r in split.test_rows)
    train_ts = {}
    for r in split.train_rows:
        train_ts[key[r]] = max(train_ts.get(key[r], -1), ts[r])
    assert all(ts[r] >= train_ts.get(key[r], -1) for r in split.valid_rows)
    # groups with 1 interaction stay in train, groups of 2 give test only
    sizes = np.bincount(key, minlength=inter.n_users * inter.n_domains)
    assert set(sizes[key[split.test_rows]]) >= {2} and sizes[key[split.test_rows]].min() >= 2
    assert sizes[key[split.valid_rows]].min() >= 3


def test_leave_one_out_mixed(tiny_synthetic):
    split = leave_one_out(tiny_synthetic, mixed=True)
    users = tiny_synthetic.users
    assert len(np.unique(users[split.test_rows])) == len(split.test_rows)
    assert not pairs(tiny_synthetic, split.test_rows) & pairs(tiny_synthetic, split.train_rows)


def test_merge_order_groups_by_item_then_user_in_first_seen_order():
    """pandas < 2.2 ``merge(merge(ratings, items), users)``: rows grouped by first-seen item, then
    regrouped by first-seen user (user 2 comes first because it rated the first item first)."""
    raw = pd.DataFrame({"user": [2, 1, 1, 3, 3, 1], "item": ["a", "b", "a", "b", "c", "c"]})
    inter = Interactions.from_frame(raw, domain_col=None)
    order = merge_order(inter)
    assert order.tolist() == [0, 2, 1, 5, 3, 4]
    split = ratio_split(inter, (0.5, 0.0, 0.5), order="merge")
    assert split.train_rows.tolist() == [0, 1, 2] and split.test_rows.tolist() == [3, 4, 5]


def test_time_order_puts_the_latest_rows_in_test():
    """``order="time"``: a global chronological 8:1:1 (every validation row is no older than any
    training row, every test row no older than any validation row); with
    ``by_user=True`` the cut is made inside each user's own timeline."""
    raw = pd.DataFrame({"user": [1, 1, 2, 2, 3, 3, 1, 2, 3, 1], "item": list("abcdefghij"),
                        "timestamp": [9, 0, 5, 5, 1, 7, 3, 8, 2, 6]})
    inter = Interactions.from_frame(raw, domain_col=None, timestamp_col="timestamp")
    split = ratio_split(inter, (0.6, 0.2, 0.2), order="time")
    ts = inter.column("timestamp")
    assert ts[split.train_rows].max() <= ts[split.valid_rows].min() <= ts[split.valid_rows].max() <= ts[split.test_rows].min()
    assert sorted(ts[split.test_rows].tolist()) == [8, 9]
    assert sorted(inter.item_ids[inter.items[split.valid_rows]].tolist()) == ["f", "j"]  # t = 7 and 6
    per_user = ratio_split(inter, (0.5, 0.5), order="time", by_user=True)
    for user in np.unique(inter.users):
        mine = inter.users == user
        train_ts, test_ts = ts[per_user.train_rows][mine[per_user.train_rows]], ts[per_user.test_rows][mine[per_user.test_rows]]
        assert train_ts.max() <= test_ts.min()
    with pytest.raises(CdrecError, match="timestamp"):
        ratio_split(Interactions.from_frame(raw.drop(columns="timestamp"), domain_col=None), order="time")


@pytest.mark.parametrize("order", ["random", "row", "merge", "time"])
def test_ratio_split_partitions(tiny_synthetic, order):
    split = ratio_split(tiny_synthetic, (0.8, 0.1, 0.1), order=order, seed=1)
    n = len(tiny_synthetic)
    sizes = [len(split.train_rows), len(split.valid_rows), len(split.test_rows)]
    assert sum(sizes) == n and abs(sizes[0] - 0.8 * n) <= 1 and abs(sizes[2] - 0.1 * n) <= 2
    if order == "row":
        assert split.train_rows.max() < split.valid_rows.min() < split.test_rows.min()
    by_user = ratio_split(tiny_synthetic, (0.9, 0.1), by_user=True, seed=1)
    assert len(by_user.valid_rows) == 0 and len(by_user.train_rows) + len(by_user.test_rows) == n


def test_sampled_negatives_exclude_positives_and_are_fixed_by_seed(tiny_synthetic):
    inter = tiny_synthetic
    a = add_sampled_candidates(leave_one_out(inter, seed=0), 20, seed=5)
    b = add_sampled_candidates(leave_one_out(inter, seed=0), 20, seed=5)
    c = add_sampled_candidates(leave_one_out(inter, seed=0), 20, seed=6)
    touched = pairs(inter, np.arange(len(inter)))
    item_domain = inter.item_domain()
    for part in ("valid", "test"):
        cand = a.candidates[part]
        rows = a.rows(part)
        assert np.array_equal(cand, b.candidates[part])
        assert not np.array_equal(cand, c.candidates[part])
        assert np.array_equal(cand[:, 0], inter.items[rows])
        users = inter.users[rows]
        for u, negs in zip(users, cand[:, 1:]):
            assert not any((u, int(i)) in touched for i in negs)
            assert len(set(negs.tolist())) == len(negs)
        assert np.all(item_domain[cand] == inter.domain[rows][:, None])


def test_merge_order_reproduces_the_authors_published_ml1m_rows():
    """The M3oE repository's ``ml-1m-sample.csv`` is the head of the ``ml-1m.csv`` its code splits
    8:1:1 in file order: all 500 rows (users 1, 2, 12, 15, 17 in that order) equal the first 500
    rows of :func:`merge_order` on ``ratings.dat`` — not the first 500 rows of ``ratings.dat``."""
    from cdrec.data.loaders import load_ml1m

    root = shared_path("ml-1m").parent
    sample = pd.read_csv(shared_path("mdmt-samples", "ml-1m-sample_M3oE.csv"))
    inter = load_ml1m(root)
    head = merge_order(inter)[: len(sample)]
    got = np.stack([inter.user_ids[inter.users[head]], inter.item_ids[inter.items[head]], inter.column("rating")[head],
                    inter.column("timestamp")[head]], axis=1).astype(np.int64)
    want = sample[["user_id", "movie_id", "rating", "timestamp"]].to_numpy(np.int64)
    assert np.array_equal(got, want)
    assert not np.array_equal(np.arange(len(sample)), head)  # file order would not match
