"""``data.duplicates``: repeated (user, item, domain) pairs are refused (naming the file line) or
collapsed to one row per pair, so no pair is ever in both train and a held-out part."""

from __future__ import annotations

import re
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdrec.config import DataConfig
from cdrec.data import loaders
from cdrec.data.datasets import load_dataset
from cdrec.data.filters import collapse_repeats
from cdrec.data.interactions import Interactions
from cdrec.data.splits import leave_one_out, ratio_split
from cdrec.data.synthetic import SyntheticConfig, make_synthetic
from cdrec.errors import CdrecError
from tests.conftest import shared_path

# u1/a three times (timestamps 30, 10, 30: the file order is not the time order, with a tie),
# u1/b twice with the same timestamp, u2/a once
FRAME = pd.DataFrame(
    {
        "user": ["u1", "u1", "u2", "u1", "u1", "u1"],
        "item": ["a", "b", "a", "a", "b", "a"],
        "rating": [4.0, 2.0, 5.0, 1.0, 3.0, 3.0],
        "timestamp": [30, 20, 40, 10, 20, 30],
        "click": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0],
    }
)


def _inter(frame: pd.DataFrame = FRAME, *, timestamps: bool = True) -> Interactions:
    return Interactions.from_frame(
        frame, domain_col=None, rating_col="rating", timestamp_col="timestamp" if timestamps else None, label_cols=["click"], name="toy",
    )


def _rows(inter: Interactions) -> list[tuple]:
    raw = inter.raw_frame()
    cols = ["user", "item", "rating", "click"] + (["timestamp"] if inter.has_timestamp else [])
    return [tuple(r) for r in raw[cols].itertuples(index=False)]


@pytest.mark.parametrize(
    "policy, expected",
    [
        # earliest by time; the tie of u1/b keeps the earlier row of the file
        ("first", [("u1", "b", 2.0, 0.0, 20), ("u2", "a", 5.0, 1.0, 40), ("u1", "a", 1.0, 0.0, 10)]),
        # latest by time; the ties (u1/a at 30, u1/b at 20) keep the later row of the file
        ("last", [("u2", "a", 5.0, 1.0, 40), ("u1", "b", 3.0, 1.0, 20), ("u1", "a", 3.0, 0.0, 30)]),
        # the latest row (timestamp, label) with the pair's mean rating
        ("mean", [("u2", "a", 5.0, 1.0, 40), ("u1", "b", 2.5, 1.0, 20), ("u1", "a", 8 / 3, 0.0, 30)]),
    ],
)
def test_each_policy_keeps_one_row_per_pair_in_file_order(policy, expected):
    got = _rows(collapse_repeats(_inter(), policy))
    assert [r[:2] + r[3:] for r in got] == [r[:2] + r[3:] for r in expected]
    assert np.allclose([r[2] for r in got], [r[2] for r in expected])


def test_without_timestamps_first_and_last_follow_the_file_order():
    inter = _inter(timestamps=False)
    assert _rows(collapse_repeats(inter, "first")) == [("u1", "a", 4.0, 1.0), ("u1", "b", 2.0, 0.0), ("u2", "a", 5.0, 1.0)]
    assert _rows(collapse_repeats(inter, "last")) == [("u2", "a", 5.0, 1.0), ("u1", "b", 3.0, 1.0), ("u1", "a", 3.0, 0.0)]


def test_error_names_the_option_and_the_first_repeat():
    with pytest.raises(CdrecError, match=r"^toy: row 4 repeats the pair of row 1 with other values \(user 'u1', item 'a'\); 2 \(user, item\) pair.*data\.duplicates"):
        collapse_repeats(_inter(), "error")


def test_pairs_are_per_domain_where_items_are_shared_by_domains():
    frame = pd.DataFrame({"user": [1, 1, 1], "item": [7, 7, 7], "domain": ["x", "y", "x"], "rating": [1.0, 2.0, 5.0]})
    inter = Interactions.from_frame(frame, rating_col="rating", name="ctr")
    assert not inter.items_by_domain
    with pytest.raises(CdrecError, match=r"row 3 repeats the pair of row 1 with other values \(user 1, item 7, domain 'x'\); 1 \(user"):
        collapse_repeats(inter, "error")
    assert collapse_repeats(inter, "mean").column("rating").tolist() == [2.0, 3.0]  # y as it was, x averaged


def test_mean_needs_ratings_and_unknown_policies_are_refused():
    no_rating = Interactions.from_frame(FRAME[["user", "item"]], domain_col=None, name="toy")
    with pytest.raises(CdrecError, match=r"^data\.duplicates: 'mean' averages ratings, but toy has no rating column"):
        collapse_repeats(no_rating, "mean")
    with pytest.raises(CdrecError, match=r"^data\.duplicates: expected one of error, first, last, mean, got 'drop'"):
        collapse_repeats(_inter(), "drop")


def test_a_table_without_repeats_is_returned_as_it_is():
    inter = _inter(FRAME.drop_duplicates(["user", "item"]))
    assert all(collapse_repeats(inter, policy) is inter for policy in ("error", "first", "last", "mean"))


def test_errors_name_the_file_line(tmp_path):
    """The header is line 1 and blank lines count (pandas skips them); Parquet files name the row."""
    csv = tmp_path / "d.csv"
    csv.write_text("user,item,rating\nu1,a,4\n\nu1,b,3\nu1,a,4\n")
    with pytest.raises(CdrecError, match=rf"^{re.escape(str(csv))}: line 5 repeats line 2 exactly \(user 'u1', item 'a'\)"):
        loaders.load_table(csv)
    tsv = tmp_path / "d.tsv.gz"
    pd.read_csv(csv).to_csv(tsv, sep="\t", index=False)
    with pytest.raises(CdrecError, match=r"d\.tsv\.gz: line 4 repeats line 2 exactly"):
        loaders.load_table(tsv, sep="\t")
    parquet = tmp_path / "d.parquet"
    pd.read_csv(csv).to_parquet(parquet)
    with pytest.raises(CdrecError, match=r"d\.parquet: row 3 repeats row 1 exactly"):
        loaders.load_table(parquet)
    inter = tmp_path / "x.inter"
    inter.write_text("item_id:token\tuser_id:token\trating:float\n\na\tu1\t4\nb\tu1\t3\na\tu1\t5\n")
    with pytest.raises(CdrecError, match=r"x\.inter: line 5 repeats the pair of line 3 with other values"):
        loaders.load_recbole(inter)
    assert loaders.load_recbole(inter, duplicates="mean").column("rating").tolist() == [3.0, 4.5]


# ------------------------------------------------------------------ no pair in train and a held-out part
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def repeated_tables(draw) -> pd.DataFrame:
    """Few users and items (many repeated pairs), few timestamps (many ties), two domains."""
    n = draw(st.integers(1, 50))
    ints = st.lists(st.integers(0, 4), min_size=n, max_size=n)
    users, items, stamps, ratings = draw(ints), draw(ints), draw(ints), draw(ints)
    doms = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    return pd.DataFrame({
        "user": [f"u{u}" for u in users],
        "item": [f"d{d}-i{i}" for d, i in zip(doms, items)],  # each item in one domain
        "domain": [f"D{d}" for d in doms],
        "rating": [1 + r for r in ratings],
        "timestamp": stamps,
    })


SPLITS = {
    "loo": lambda data, seed: leave_one_out(data, seed=seed),
    "loo-mixed": lambda data, seed: leave_one_out(data, mixed=True, seed=seed),
    "ratio-random": lambda data, seed: ratio_split(data, [0.5, 0.2, 0.3], seed=seed),
    "ratio-time": lambda data, seed: ratio_split(data, [0.5, 0.2, 0.3], order="time", seed=seed),
    "ratio-row-by-user": lambda data, seed: ratio_split(data, [0.5, 0.5], order="row", by_user=True, seed=seed),
}


@SETTINGS
@given(frame=repeated_tables(), policy=st.sampled_from(["first", "last", "mean"]), protocol=st.sampled_from(sorted(SPLITS)),
       timestamps=st.booleans(), seed=st.integers(0, 1000))
def test_no_pair_is_in_train_and_a_held_out_part(frame, policy, protocol, timestamps, seed):
    """Through ``load_dataset`` on a CSV file, every policy and every split protocol."""
    if protocol == "ratio-time" and not timestamps:
        protocol = "loo"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.csv"
        (frame if timestamps else frame.drop(columns="timestamp")).to_csv(path, index=False)
        data = load_dataset(DataConfig(name="table", path=str(path), duplicates=policy))
    assert len(data) == len(frame.drop_duplicates(["user", "item"]))
    try:
        split = SPLITS[protocol](data, seed)
    except CdrecError as exc:
        assert "empty train or test" in str(exc)
        return
    pairs = data.users.astype(np.int64) * data.n_items + data.items
    held_out = np.concatenate([split.valid_rows, split.test_rows])
    assert np.intersect1d(pairs[split.train_rows], pairs[held_out]).size == 0
    assert np.unique(pairs[held_out]).size == held_out.size


# ------------------------------------------------------------------ built-in datasets
BUILT_IN = {  # name: (folder under shared/data, loader of the data folder)
    "ml-100k": ("ml-100k", loaders.load_ml100k),
    "ml-1m": ("ml-1m", loaders.load_ml1m),
    "douban": ("douban-ga-dtcdr", loaders.load_douban),
    "afk": ("amazon-cdsr-merit", partial(loaders.load_amazon_cdsr, "afk")),
    "abe": ("amazon-cdsr-merit", partial(loaders.load_amazon_cdsr, "abe")),
    **{f"mdmt-{s}": ("mdmt-samples", partial(loaders.load_mdmt_sample, s)) for s in ("ml-1m", "douban", "kuairand")},
}


@pytest.mark.parametrize("name", ["synthetic", *BUILT_IN])
def test_built_in_datasets_have_no_repeated_pairs(name):
    """So every ``data.duplicates`` policy loads them as they were (a table without repeats is
    returned as it is); the sequential sets (afk, abe) have no re-purchases either."""
    if name == "synthetic":
        data = make_synthetic(SyntheticConfig())
    else:
        folder, load = BUILT_IN[name]
        data = load(shared_path(folder).parent)
    assert not data.frame.duplicated(["user", "item", "domain"]).any()
