"""Loaders reproduce the statistics of ../shared/data/README.md (skip when the data is absent)."""

import numpy as np
import pandas as pd
import pytest

from cdrec.data import loaders
from cdrec.data.datasets import build_domains
from cdrec.errors import CdrecError
from tests.conftest import shared_path


def test_ml100k_and_genre_domains():
    root = shared_path("ml-100k").parent
    inter = loaders.load_ml100k(root)
    s = inter.stats()
    assert (s["users"], s["items"], s["interactions"]) == (943, 1682, 100000)
    counts = np.bincount(inter.column("rating").astype(int))[1:]
    assert counts.tolist() == [6110, 11370, 27145, 34174, 21201]
    assert inter.user_features.shape[0] == 943 and inter.item_features.shape[0] == 1682
    for choice in ("genre", "genre-random"):
        g = build_domains(inter, choice, seed=0)
        per = g.stats()["domains"]
        assert sum(d["interactions"] for d in per.values()) == 100000
        assert sum(d["items"] for d in per.values()) == 1682
        assert len(per) <= 19


def test_ml1m_genres_and_age_bins():
    root = shared_path("ml-1m").parent
    inter = loaders.load_ml1m(root)
    s = inter.stats()
    assert (s["users"], s["items"], s["interactions"]) == (6040, 3706, 1000209)
    t = inter.column("timestamp")
    assert (t.min(), t.max()) == (956703932, 1046454590)
    genre = build_domains(inter, "genre")
    assert genre.n_domains == 18 and genre.n_items == 3706
    ages = build_domains(inter, "age-bins").stats()["domains"]
    assert [d["users"] for d in ages.values()] == [1325, 2096, 2619]
    assert [d["interactions"] for d in ages.values()] == [210747, 395556, 393906]


@pytest.mark.parametrize(
    "name, users, items, inter_counts",
    [("afk", 7144, (11837, 16258), (83663, 89885)), ("abe", 4474, (10379, 14188), (50329, 63800))],
)
def test_amazon_cdsr(name, users, items, inter_counts):
    root = shared_path("amazon-cdsr-merit").parent
    inter = loaders.load_amazon_cdsr(name, root)
    per = inter.stats()["domains"]
    assert inter.n_users == users
    assert tuple(d["items"] for d in per.values()) == items
    assert tuple(d["interactions"] for d in per.values()) == inter_counts


def test_douban():
    root = shared_path("douban-ga-dtcdr").parent
    inter = loaders.load_douban(root)
    per = inter.stats()["domains"]
    assert (per["book"]["users"], per["book"]["items"], per["book"]["interactions"]) == (2110, 6777, 96041)
    assert (per["music"]["users"], per["music"]["items"], per["music"]["interactions"]) == (1672, 5567, 69709)
    present = np.zeros((inter.n_users, 2), bool)
    present[inter.users, inter.domain] = True
    assert int(present.all(1).sum()) == 1566


def test_mdmt_samples():
    root = shared_path("mdmt-samples").parent
    ml = loaders.load_mdmt_sample("ml-1m", root)
    assert len(ml) == 500 and set(ml.label_columns) == {"click", "like"}
    db = loaders.load_mdmt_sample("douban", root)
    assert {k: v["interactions"] for k, v in db.stats()["domains"].items()} == {"book": 364, "movie": 2299, "music": 337}
    kr = loaders.load_mdmt_sample("kuairand", root)
    assert len(kr) == 200 and kr.column("is_click").sum() == 32


def test_recbole_and_table_loaders(tmp_path):
    (tmp_path / "toy.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\nu1\ti1\t5\t10\nu2\ti1\t3\t11\nu1\ti2\t4\t12\n")
    (tmp_path / "toy.user").write_text("user_id:token\tage:float\nu1\t20\nu2\t30\n")
    inter = loaders.load_recbole(tmp_path)
    assert (inter.n_users, inter.n_items, len(inter)) == (2, 2, 3)
    assert inter.user_features["age"].tolist() == [20.0, 30.0]
    pd.DataFrame({"uid": [1, 2, 2], "iid": [7, 7, 8], "dom": ["a", "a", "b"], "y": [1, 0, 1]}).to_parquet(tmp_path / "t.parquet")
    t = loaders.load_table(tmp_path / "t.parquet", columns={"user": "uid", "item": "iid", "domain": "dom", "labels": "y"})
    assert t.domains == ["a", "b"] and t.label_columns == ("y",)
    with pytest.raises(CdrecError, match="missing column 'uid2'"):
        loaders.load_table(tmp_path / "t.parquet", columns={"user": "nope"} | {"user": "uid2"})
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(CdrecError, match="empty"):
        loaders.load_table(tmp_path / "empty.csv")
    with pytest.raises(CdrecError, match="is a directory"):
        loaders.load_table(tmp_path)


def test_csv_iso_dates_are_timestamps_in_time_order(tmp_path):
    """ISO 8601 dates or datetimes in a CSV are timestamps (microseconds since 1970 UTC), ordered as
    the same column read from Parquet as datetime64; text that is neither is still an error."""
    when = ["2024-03-01 09:00:00", "2024-01-15", "2024-03-01T08:00:00+00:00", "2023-12-31T23:59:59"]
    frame = pd.DataFrame({"user": ["a", "a", "b", "b"], "item": ["x", "y", "x", "z"], "when": when})
    frame.to_csv(tmp_path / "d.csv", index=False)
    csv = loaders.load_table(tmp_path / "d.csv", columns={"timestamp": "when"})
    micros = csv.column("timestamp")
    assert micros[0] == 1709283600 * 10**6 and micros[1] == 1705276800 * 10**6
    frame.assign(when=pd.to_datetime(frame["when"], format="ISO8601", utc=True)).to_parquet(tmp_path / "d.parquet")
    parquet = loaders.load_table(tmp_path / "d.parquet", columns={"timestamp": "when"})
    assert np.array_equal(np.argsort(micros), np.argsort(parquet.column("timestamp")))
    frame.assign(when=[*when[:3], "yesterday"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(CdrecError, match="1 non-numeric, NaN or infinite timestamps \\(first at row 4: 'yesterday'\\)"):
        loaders.load_table(tmp_path / "bad.csv", columns={"timestamp": "when"})


def test_table_picks_up_domain_rating_timestamp_columns_by_name(tmp_path):
    """A file whose headers are the role names needs no mapping; a mapping still wins over a column's name."""
    path = tmp_path / "t.csv"
    path.write_text("user,item,domain,rating,timestamp,other\n1,7,a,4,10,b\n2,7,a,5,11,b\n2,8,b,3,12,c\n")
    t = loaders.load_table(path)
    assert t.domains == ["a", "b"] and t.has_timestamp and t.frame["rating"].tolist() == [4.0, 5.0, 3.0]
    assert loaders.load_table(path, columns={"domain": "other"}).domains == ["b", "c"]
    path.write_text("user,item,rating\n1,7,x\n")
    with pytest.raises(CdrecError, match="column 'rating' has 1 non-numeric"):
        loaders.load_table(path)


def test_csv_ids_are_kept_as_written(tmp_path):
    """Zero-padded ids keep their padding (a run answers in the file's own ids); a column of plain
    integers stays integer, in numeric order (10 after 9), as Parquet gives it."""
    path = tmp_path / "ids.csv"
    path.write_text("user,item\n00034,007\n00034,12\n2,007\n10,9\n")
    t = loaders.load_table(path)
    assert t.user_ids.tolist() == ["00034", "10", "2"] and t.item_ids.tolist() == ["007", "12", "9"]
    path.write_text("user,item\n10,9\n2,10\n2,9\n")
    t = loaders.load_table(path)
    assert t.user_ids.tolist() == [2, 10] and t.item_ids.tolist() == [9, 10]
    path.write_text("u;i\nA-1;x\n-3;y\n")
    assert loaders.load_table(path, sep=";", columns={"user": "u", "item": "i"}).user_ids.tolist() == ["-3", "A-1"]


def test_keep_domains_applies_to_every_builder_and_names_the_option():
    from cdrec.data.synthetic import SyntheticConfig, make_synthetic

    inter = make_synthetic(SyntheticConfig(n_users=80, n_domains=3, items_per_domain=20, seed=0))
    kept = build_domains(inter, "uniform-items:4", seed=0, keep=["part1", "part3"])  # was ignored by this builder
    assert kept.domains == ["part1", "part3"] and len(kept) < len(build_domains(inter, "uniform-items:4", seed=0))
    assert build_domains(inter, None, keep=["D2"]).domains == ["D2"]
    for spec, known in ((None, "D0"), ("uniform-users:2", "part0")):
        with pytest.raises(CdrecError, match=r"^data\.keep_domains: unknown domain 'Nope'"):
            build_domains(inter, spec, keep=[known, "Nope"])


def test_a_mapped_column_the_file_lacks_is_named_before_any_other_check(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("customer_id,product_id,ts\nu1,a,1\nu1,a,2\nu2,b,3\n")  # rows repeat once the timestamp is dropped
    with pytest.raises(CdrecError, match=r"missing column 'nope'; found columns \['customer_id', 'product_id', 'ts'\]"):
        loaders.load_table(path, columns={"user": "customer_id", "item": "product_id", "timestamp": "nope"})
