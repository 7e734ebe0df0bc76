import numpy as np
import pandas as pd
import pytest

from cdrec.data.interactions import Interactions
from cdrec.data.views import domain_matrix, interaction_matrix, padded_sequences
from cdrec.errors import CdrecError


def frame():
    return pd.DataFrame(
        {
            "u": ["a", "b", "a", "c", "b", "a"],
            "i": ["x", "y", "z", "x", "w", "w"],
            "d": ["books", "books", "music", "books", "music", "music"],
            "r": [5, 3, 4, 1, 2, 5],
            "t": [1, 2, 3, 4, 5, 6],
        }
    )


def test_items_owned_by_domain_are_contiguous_and_roundtrip():
    inter = Interactions.from_frame(frame(), user_col="u", item_col="i", domain_col="d", rating_col="r", timestamp_col="t")
    assert inter.items_by_domain
    assert inter.domains == ["books", "music"]
    assert inter.item_offsets.tolist() == [0, 2, 4]
    item_domain = inter.item_domain()
    assert np.array_equal(item_domain[inter.items], inter.domain)
    raw = inter.raw_frame()
    assert raw[["user", "item", "domain"]].values.tolist() == frame()[["u", "i", "d"]].values.tolist()
    assert inter.stats()["domains"]["music"] == {"users": 2, "items": 2, "interactions": 3}


def test_items_shared_across_domains_use_sample_layout():
    f = frame()
    f.loc[5, "i"] = "x"  # x now in both domains
    inter = Interactions.from_frame(f, user_col="u", item_col="i", domain_col="d")
    assert inter.item_offsets is None
    with pytest.raises(CdrecError, match="several domains"):
        Interactions.from_frame(f, user_col="u", item_col="i", domain_col="d", items_by_domain=True)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.drop(columns="r"), "missing column 'r'"),
        (lambda f: f.assign(r=[1, 2, "x", 4, 5, 6]), "non-numeric"),
        (lambda f: f.assign(r=[1, 2, np.nan, 4, 5, 6]), "NaN"),
        (lambda f: f.assign(r=[1, 2, np.inf, 4, 5, 6]), "infinite"),
        (lambda f: f.assign(t=[1, 2, -3, 4, 5, 6]), "negative timestamps"),
        (lambda f: f.iloc[0:0], "empty"),
    ],
)
def test_bad_tables_raise_one_line_errors(change, message):
    with pytest.raises(CdrecError, match=message) as err:
        Interactions.from_frame(change(frame()), user_col="u", item_col="i", domain_col="d", rating_col="r", timestamp_col="t", source="f.csv")
    assert "\n" not in str(err.value) and "f.csv" in str(err.value)


def test_views():
    inter = Interactions.from_frame(frame(), user_col="u", item_col="i", domain_col="d", rating_col="r", timestamp_col="t")
    mat = interaction_matrix(inter, values="rating")
    assert mat.shape == (3, 4) and mat.nnz == 6 and mat.sum() == 20
    music = domain_matrix(inter, inter.domain_index("music"))
    assert music.shape == (3, 2) and music.nnz == 3
    seqs = padded_sequences(inter, 2, columns=("item", "domain"))
    a = list(inter.user_ids).index("a")
    # a's last two events are z (t=3) then w (t=6); +1 shift, 0 = padding
    assert seqs["item"][a].tolist() == [inter.items[2] + 1, inter.items[5] + 1]
    c = list(inter.user_ids).index("c")
    assert seqs["item"][c, 0] == 0 and seqs["domain"][c, 0] == -1


def test_require_items_owned_names_an_item_in_several_domains():
    owned = Interactions.from_frame(frame(), user_col="u", item_col="i", domain_col="d", name="f")
    owned.require_items_owned("ranking models")
    shared = frame().assign(d=["books", "books", "music", "music", "music", "music"])  # x in books and music
    inter = Interactions.from_frame(shared, user_col="u", item_col="i", domain_col="d", name="f")
    with pytest.raises(CdrecError, match=r"^f: ranking models need each item in one domain, but item 'x' occurs in domains \['books', 'music'\]"):
        inter.require_items_owned("ranking models")
    by_user = Interactions.from_frame(frame(), user_col="u", item_col="i", domain_col="d", name="f", items_by_domain=False)
    with pytest.raises(CdrecError, match="a property of the user"):
        by_user.require_items_owned("sequential models")


def test_table_columns_each_role_once_and_each_label_once(tmp_path):
    from cdrec.data.loaders import load_table

    path = tmp_path / "t.csv"
    frame().rename(columns={"u": "user", "i": "item", "d": "domain"}).assign(click=[1, 0, 1, 0, 1, 0]).to_csv(path, index=False)
    assert load_table(path, columns={"labels": "click"}).label_columns == ("click",)
    with pytest.raises(CdrecError, match=r"^data\.columns\.labels: label column 'click' is listed twice"):
        load_table(path, columns={"labels": "click,click"})
    with pytest.raises(CdrecError, match=r"^data\.columns: roles 'user' and 'item' both map to column 'user'"):
        load_table(path, columns={"item": "user"})
    with pytest.raises(CdrecError, match=r"^data\.columns: roles 'domain' and 'labels' both map to column 'click'"):
        load_table(path, columns={"domain": "click", "labels": "click"})
