"""cdrec.load / RankingPredictor: top-K against a brute-force reference, seen items, cold start, export."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import cdrec
from cdrec.errors import CdrecError
from cdrec.predict import RankingPredictor, UnknownIdError, UnsupportedError, export_recommendations


def reference_top_k(p: RankingPredictor, u: int, d: int, k: int, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Brute force with numpy from the embeddings and the raw interaction table."""
    model = p.models["joint"] if "joint" in p.models else p.models[p.domains[d]]
    start, stop = p.offsets[d], p.offsets[d + 1]
    user = model.user_emb.weight.detach().numpy()[u]
    items = model.item_emb.weight.detach().numpy()[start:stop]
    scores = items @ user
    data = p.data
    if exclude_seen:
        seen = data.items[(data.users == u) & (data.domain == d)] - start
        scores[seen] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    order = order[np.isfinite(scores[order])]
    return order + start, scores[order]


def test_load_gives_id_maps_and_capabilities(joint_predictor):
    p = joint_predictor
    assert isinstance(p, RankingPredictor)
    info = p.info()
    assert info["task"] == "ranking" and info["model"] == "bprmf"
    assert info["domains"] == ["D0", "D1", "D2"]
    assert info["supports"] == ["recommend", "score"]
    assert info["n_users"] == p.data.n_users and info["n_items"] == p.data.n_items


def test_recommend_matches_brute_force_and_excludes_all_seen_parts(joint_predictor):
    p = joint_predictor
    data = p.data
    for raw_user in data.user_ids[:15]:
        u = int(np.flatnonzero(data.user_ids == raw_user)[0])
        for d, name in enumerate(p.domains):
            rec = p.recommend(raw_user, name, 7)
            ref_items, ref_scores = reference_top_k(p, u, d, 7)
            assert rec.source == "model" and rec.domain == name
            assert rec.items == data.item_ids[ref_items].tolist()
            np.testing.assert_allclose(rec.scores, ref_scores, rtol=1e-5, atol=1e-6)
            seen_raw = set(data.item_ids[data.items[(data.users == u) & (data.domain == d)]].tolist())
            assert not seen_raw & set(rec.items)
            start, stop = p.offsets[d], p.offsets[d + 1]
            assert set(rec.items) <= set(data.item_ids[start:stop].tolist())


def test_test_and_valid_items_are_excluded_too(joint_run, joint_predictor):
    from cdrec.train.tasks import task_for
    from cdrec.experiments.pipeline import load_run_config

    cfg = load_run_config(joint_run)
    prepared, _ = task_for("bprmf").restore(cfg, joint_run)
    test_rows = prepared.split.test_rows
    data = joint_predictor.data
    u, item, d = data.users[test_rows[0]], data.items[test_rows[0]], int(data.domain[test_rows[0]])
    n_dom = int(joint_predictor.offsets[d + 1] - joint_predictor.offsets[d])
    dom = joint_predictor.domains[d]
    every = joint_predictor.recommend(data.user_ids[u], dom, n_dom)
    assert data.item_ids[item] not in every.items
    with_seen = joint_predictor.recommend(data.user_ids[u], dom, n_dom, exclude_seen=False)
    assert data.item_ids[item] in with_seen.items and len(with_seen.items) == n_dom


def test_string_and_int_ids_are_the_same_user(joint_predictor):
    raw = joint_predictor.data.user_ids[3]
    assert joint_predictor.recommend(raw, "D1", 5).items == joint_predictor.recommend(str(raw), "D1", 5).items


def test_unknown_ids_and_bad_values(joint_predictor):
    p = joint_predictor
    with pytest.raises(UnknownIdError, match=r"unknown user 'nobody'; pass fallback='popularity' for"):
        p.recommend("nobody", "D0", 5)
    with pytest.raises(UnknownIdError, match="unknown domain 'D7'"):
        p.recommend(p.data.user_ids[0], "D7", 5)
    with pytest.raises(CdrecError, match="name one of"):
        p.recommend(p.data.user_ids[0], None, 5)
    for bad_k in (0, -3, "5", 2.0, True):
        with pytest.raises(CdrecError, match="k: expected an integer >= 1"):
            p.recommend(p.data.user_ids[0], "D0", bad_k)
    with pytest.raises(CdrecError, match="fallback"):
        p.recommend("nobody", "D0", 5, fallback="random")
    with pytest.raises(UnknownIdError, match=r"rows\[1\]: unknown item"):
        p.score_rows([{"user": p.data.user_ids[0], "item": p.data.item_ids[0]}, {"user": p.data.user_ids[0], "item": "no-such"}])


def test_popularity_fallback_is_the_domains_training_popularity(joint_run, joint_predictor):
    from cdrec.experiments.pipeline import load_run_config
    from cdrec.train.tasks import task_for

    prepared, _ = task_for("bprmf").restore(load_run_config(joint_run), joint_run)
    data = prepared.data
    train = prepared.split.train_rows
    d = 1
    start, stop = data.domain_item_range(d)
    counts = np.bincount(data.items[train], minlength=data.n_items)[start:stop]
    rec = joint_predictor.recommend("nobody", "D1", 6, fallback="popularity")
    assert rec.source == "popularity"
    assert rec.scores == sorted(rec.scores, reverse=True)
    np.testing.assert_array_equal(rec.scores, np.sort(counts)[::-1][:6])
    assert rec.items == data.item_ids[start + np.argsort(-counts, kind="stable")[:6]].tolist()


def test_k_larger_than_domain_returns_every_unseen_item(joint_predictor):
    p = joint_predictor
    n_dom = int(p.offsets[1] - p.offsets[0])
    u = p.data.user_ids[0]
    n_seen = len(np.unique(p.data.items[(p.data.users == 0) & (p.data.domain == 0)]))
    rec = p.recommend(u, "D0", 10 * n_dom)
    assert len(rec.items) == n_dom - n_seen
    assert all(np.diff(rec.scores) <= 0)


def test_score_rows_agrees_with_recommend(joint_predictor):
    p = joint_predictor
    user = p.data.user_ids[5]
    rec = p.recommend(user, "D2", 4)
    scored = p.score_rows([{"user": user, "item": i} for i in rec.items])
    np.testing.assert_allclose([s["score"] for s in scored], rec.scores, rtol=1e-5, atol=1e-6)


def test_sequence_question_is_a_clear_unsupported_error(joint_predictor):
    with pytest.raises(UnsupportedError, match="does not support recommendation from an item history.*supports: recommend, score"):
        joint_predictor.recommend_sequence([1, 2, 3], 5)


def test_batches_equal_single_requests(joint_predictor):
    p = joint_predictor
    small = pd.concat(list(p.recommend_users("D2", 5, batch_size=7)), ignore_index=True)
    large = pd.concat(list(p.recommend_users("D2", 5, batch_size=10_000)), ignore_index=True)
    pd.testing.assert_frame_equal(small, large)
    for raw in small["user"].unique()[:10]:
        rows = small[small["user"] == raw].sort_values("rank")
        assert rows["item"].tolist() == p.recommend(raw, "D2", 5).items


def test_single_scope_cold_user_in_a_domain(single_run):
    p = cdrec.load(single_run, device="cpu")
    assert set(p.models) == {"D0", "D1", "D2"}
    counts = np.zeros((p.data.n_users, 3), dtype=int)
    np.add.at(counts, (p.data.users, p.data.domain.astype(int)), 1)
    u = int(np.flatnonzero(counts[:, 0] == 0)[0])
    raw = p.data.user_ids[u]
    with pytest.raises(UnknownIdError, match="no training interactions in domain 'D0'"):
        p.recommend(raw, "D0", 5)
    assert p.recommend(raw, "D0", 5, fallback="popularity").source == "popularity"
    exported = pd.concat(list(p.recommend_users("D0", 3)), ignore_index=True)
    assert raw not in set(exported["user"])


def test_load_rejects_non_runs(tmp_path, joint_run):
    with pytest.raises(CdrecError, match="not a run directory"):
        cdrec.load(tmp_path / "missing")
    with pytest.raises(CdrecError, match="no config.yaml"):
        cdrec.load(tmp_path)
    (tmp_path / "config.yaml").write_text((joint_run / "config.yaml").read_text())
    with pytest.raises(CdrecError, match="no results.json"):
        cdrec.load(tmp_path)
    (tmp_path / "results.json").write_text((joint_run / "results.json").read_text())
    with pytest.raises(CdrecError, match="no model.pt"):
        cdrec.load(tmp_path)


def test_export_failure_leaves_no_file(tmp_path, joint_predictor, monkeypatch):
    out = tmp_path / "recs.parquet"
    original = RankingPredictor.recommend_users

    def boom(self, *args, **kwargs):
        gen = original(self, *args, **kwargs)
        yield next(gen)
        raise RuntimeError("disk full")

    monkeypatch.setattr(RankingPredictor, "recommend_users", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_recommendations(joint_predictor, out, k=3, batch_size=5)
    assert os.listdir(tmp_path) == []


def test_csr_entries_equals_scipy_row_indexing():
    import scipy.sparse as sp
    from hypothesis import given, settings, strategies as st

    from cdrec.predict import csr_entries

    @settings(max_examples=60, deadline=None)
    @given(st.integers(1, 12), st.integers(1, 9), st.floats(0, 1), st.lists(st.integers(0, 11), max_size=15), st.integers(0, 2**31))
    def check(n, m, density, rows, seed):
        mat = sp.random(n, m, density=density, format="csr", random_state=seed)
        rows = np.asarray([r % n for r in rows], dtype=np.int64)
        pos, cols = csr_entries(mat, rows)
        sub = mat[rows] if len(rows) else sp.csr_matrix((0, m))
        ref_pos, ref_cols = np.repeat(np.arange(len(rows)), np.diff(sub.indptr)), sub.indices
        np.testing.assert_array_equal(pos, ref_pos)
        np.testing.assert_array_equal(cols, ref_cols)

    check()
