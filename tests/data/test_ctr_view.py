"""The CTR view: features, labels, per-scope tensors, and the paper's Table 1 on real ML-1M."""

from __future__ import annotations

import numpy as np
import pytest

from cdrec.config import DataConfig
from cdrec.data.ctr import build_ctr_view, iterate_batches
from cdrec.data.datasets import load_dataset
from cdrec.errors import CdrecError
from tests.conftest import shared_path


def test_view_of_synthetic(tiny_synthetic):
    view = build_ctr_view(tiny_synthetic)
    n = len(tiny_synthetic)
    assert view.sparse.shape == (n, len(view.fields)) and view.labels.shape == (n, 2)
    assert view.fields[:2] == ["user", "item"] and view.fields[-1] == "domain"
    assert "age" in view.dense_names
    np.testing.assert_array_equal(view.labels[:, 0], tiny_synthetic.column("click"))
    np.testing.assert_array_equal(view.labels[:, 1], tiny_synthetic.column("like"))
    np.testing.assert_array_equal(view.sparse[:, -1], tiny_synthetic.domain + 1)
    assert (view.sparse.max(axis=0) < np.array(view.vocab_sizes)).all() and (view.sparse >= 0).all()


def test_labels_from_ratings_and_scope_tensors(tiny_synthetic):
    inter = tiny_synthetic.with_frame(tiny_synthetic.frame.drop(columns=["click", "like"]))
    inter.label_columns = ()
    view = build_ctr_view(inter)
    rating = inter.column("rating")
    np.testing.assert_array_equal(view.labels[:, 0], rating > 3)
    np.testing.assert_array_equal(view.labels[:, 1], rating > 4)
    rows = np.flatnonzero(view.domain == 2)[:10]
    t = view.tensors(rows, domain_zero=True, task=1)
    assert t["label"].shape == (10, 1) and int(t["domain"].max()) == 0
    np.testing.assert_array_equal(t["label"][:, 0].numpy(), view.labels[rows, 1])
    with pytest.raises(CdrecError, match="task 'watch'"):
        build_ctr_view(inter, ["watch"])


def test_batches_cover_every_row_once(tiny_synthetic):
    view = build_ctr_view(tiny_synthetic)
    data = view.tensors()
    seen = np.concatenate([b["sparse"][:, 0].numpy() * 10**6 + b["sparse"][:, 1].numpy() for b in iterate_batches(data, 97, seed=1, epoch=0)])
    assert len(seen) == len(view)
    np.testing.assert_array_equal(np.sort(seen), np.sort(view.sparse[:, 0] * 10**6 + view.sparse[:, 1]))


def test_ml1m_reproduces_paper_table1():
    root = shared_path("ml-1m").parent
    inter = load_dataset(DataConfig(name="ml-1m", data_dir=str(root), domains="age-bins"))
    stats = inter.stats()["domains"]
    assert [s["users"] for s in stats.values()] == [1325, 2096, 2619]
    assert [s["items"] for s in stats.values()] == [3429, 3508, 3595]
    assert [s["interactions"] for s in stats.values()] == [210747, 395556, 393906]
    view = build_ctr_view(inter)
    assert view.fields == ["user", "item", "gender", "occupation", "zip", "first_genre", "domain"]
    assert view.dense_names == ["age"]
