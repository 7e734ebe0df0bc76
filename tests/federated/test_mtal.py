"""MTAL on small synthetic organizations: privacy of messages, learning, weights, round selection."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cdrec.data.splits import ratio_split
from cdrec.data.synthetic import SyntheticConfig, make_synthetic
from cdrec.federated.alignment import Entries, build_federation
from cdrec.federated.messages import AlignmentMessage, PredictionMessage, QueryMessage, ResidualMessage
from cdrec.federated.mtal import replay, run_mtal
from cdrec.federated.organization import MTALConfig, key_metrics
from cdrec.federated.transport import InProcessTransport
from cdrec.models.assisted.aae import AAEParams


@pytest.fixture(scope="module")
def data():
    return make_synthetic(SyntheticConfig(n_users=240, n_domains=3, items_per_domain=60, min_activity=8, max_activity=40, max_activity_share=0.5, signal=1.0, seed=3))


def fed_of(data, **kw):
    split = ratio_split(data, [0.8, 0.1, 0.1], by_user=True, seed=0)
    return build_federation(data, split, **kw)


def cfg_of(**kw):
    base = dict(rounds=3, eta=0.5, model=AAEParams(epochs=8, batch_size=40, dropout=0.1), seed=0)
    base.update(kw)
    return MTALConfig(**base)


@pytest.fixture(scope="module")
def recorded(data):
    fed = fed_of(data, align_ratio=0.6, seed=1)
    transport = InProcessTransport(record=True)
    run = run_mtal(fed, cfg_of(), transport=transport)
    return fed, run, transport


def test_messages_never_carry_raw_ratings_and_only_aligned_ids(recorded):
    fed, run, transport = recorded
    holdings = {o.name: o for o in fed.orgs}
    shared = set(fed.orgs[0].shareable.tolist())
    kinds = {type(m) for m in transport.log}
    assert kinds == {AlignmentMessage, ResidualMessage, QueryMessage, PredictionMessage}
    n_checked = 0
    for m in transport.log:
        if isinstance(m, AlignmentMessage):
            assert set(m.ids.tolist()) <= shared
            continue
        sender, receiver = holdings[m.sender], holdings[m.receiver]
        aligned = np.intersect1d(np.intersect1d(sender.known_rows, receiver.known_rows), sender.shareable)
        assert np.isin(m.rows, aligned).all(), f"{type(m).__name__} {m.sender}->{m.receiver} carries a non-aligned id"
        if isinstance(m, ResidualMessage):
            # the sender's raw ratings at exactly these keys
            tr = sender.train
            lookup = {(r, c): y for r, c, y in zip(tr.rows, tr.cols, tr.y)}
            raw = np.array([lookup[(r, c)] for r, c in zip(m.rows, m.cols)])
            assert len(raw) > 0
            assert not np.any(np.isclose(m.values, raw)), "a residual message equals the sender's rating"
            n_checked += len(raw)
        if isinstance(m, (ResidualMessage, PredictionMessage, QueryMessage)):
            for f in ("ratings", "rating", "y", "labels", "state_dict", "params"):
                assert not hasattr(m, f)
    assert n_checked > 1000
    assert len(shared) < fed.n_rows  # partial alignment really withheld ids


@pytest.mark.parametrize("alignment", ["user", "item"])
def test_an_organization_holds_side_information_of_its_own_rows_only(data, alignment):
    """Paper 002: organization k holds the profiles ``S^k`` of its own ``m_k`` rows, not the population's."""
    from cdrec.data.domains import uniform_users

    source = data if alignment == "user" else uniform_users(data, 3, seed=0)
    fed = fed_of(source, alignment=alignment, side_info=True, align_ratio=0.6, seed=1)
    assert all(o.row_side is not None for o in fed.orgs)
    table = sum(np.abs(o.row_side) for o in fed.orgs) > 0
    for o in fed.orgs:
        others = np.setdiff1d(np.arange(fed.n_rows), o.known_rows)
        assert len(others) > 0 or alignment == "item"  # uniform user partitions: every org may know every item
        assert not o.row_side[others].any()
        assert o.row_side[o.known_rows].any(axis=1).all()
    assert table.any(axis=1).sum() == len(np.unique(np.concatenate([o.known_rows for o in fed.orgs])))


def test_mtal_improves_over_base_and_weights_on_simplex(data):
    fed = fed_of(data)
    run = run_mtal(fed, cfg_of(rounds=3, optimize_w=True, eta=0.5))
    for o in run.orgs:
        losses = [h["train_loss"] for h in o.history]
        assert losses[-1] < losses[0] * 0.9
        for w in o.weights:
            assert np.all(w >= 0) and abs(w.sum() - 1) < 1e-9
    base = np.mean([o.history[0]["test"]["RMSE"] for o in run.orgs])
    final = np.mean([o.history[-1]["test"]["RMSE"] for o in run.orgs])
    assert final < base - 0.01


def test_best_round_is_chosen_on_validation(recorded):
    _, run, _ = recorded
    for o in run.orgs:
        valid = [h["valid"]["RMSE"] for h in o.history]
        test = [h["test"]["RMSE"] for h in o.history]
        b = o.best_round()
        assert valid[b] == min(valid)
        np.testing.assert_array_equal(o.test_scores(), o.history[b]["f_test"])
        # corrupt validation only: the choice must follow it, whatever test says
        o.history[0]["valid"] = {"RMSE": -1.0}
        assert o.best_round() == 0
        o.history[0]["valid"] = {"RMSE": valid[0]}
        assert test  # test values exist but are never read by best_round


def test_prediction_stage_replays_all_rounds(data):
    fed = fed_of(data)
    transport = InProcessTransport()
    run = run_mtal(fed, cfg_of(rounds=2, keep_models=True), transport=transport)
    keys = {o.name: (o.h.test.rows, o.h.test.cols) for o in run.orgs}
    out = replay(run.orgs, transport, keys)
    for o in run.orgs:
        np.testing.assert_allclose(out[o.name], o.history[-1]["f_test"], rtol=1e-5, atol=1e-6)


def test_implicit_and_item_aligned_run(data):
    from cdrec.data.domains import uniform_users

    udata = uniform_users(data, 3, seed=0)
    fed = fed_of(udata, alignment="item", feedback="implicit")
    run = run_mtal(fed, cfg_of(rounds=2, eta="optimize"))
    for o in run.orgs:
        assert "NDCG@10" in o.history[-1]["test"]
        assert o.history[-1]["train_loss"] < o.history[0]["train_loss"]


def test_cold_start_org_trains_without_new_users(data):
    fed = fed_of(data, cold_start_ratio=0.5, cold_start_org=0)
    cold = fed.orgs[0]
    assert not np.isin(cold.test.rows, cold.train.rows).any()
    assert not np.isin(cold.valid.rows, cold.test.rows).any()
    run = run_mtal(fed, cfg_of(rounds=1))
    assert run.orgs[0].history[-1]["test"]["n"] == len(cold.test)


def test_assist_fit_on_validation_never_raises_validation_loss(data):
    """With w and eta fitted on validation entries (assist_fit="valid"), eta is the exact line-search
    minimum of the validation loss along the round's direction, which includes eta = 0: an
    organization's validation RMSE can only go down from round to round."""
    fed = fed_of(data)
    run = run_mtal(fed, cfg_of(rounds=3, optimize_w=True, eta="optimize", assist_fit="valid"))
    for o in run.orgs:
        valid = [h["valid"]["RMSE"] for h in o.history]
        assert all(b <= a + 1e-4 for a, b in zip(valid, valid[1:])), (o.name, valid)  # RMSE clips to the rating range
        assert valid[-1] < valid[0] - 0.005
        for w in o.weights:
            assert np.all(w >= 0) and abs(w.sum() - 1) < 1e-9


def test_valid_split_fits_weights_and_selects_the_round_on_disjoint_validation_users(data):
    """``assist_fit="valid-split"``: w / eta see one half of the validation users, the round is chosen on the
    other half, and together the halves are the whole validation part."""
    fed = fed_of(data)
    run = run_mtal(fed, cfg_of(rounds=3, optimize_w=True, eta="optimize", assist_fit="valid-split"))
    for o in run.orgs:
        fit_users, select_users = set(o.h.valid.users[o.fit_valid]), set(o.h.valid.users[o.select_valid])
        assert fit_users and select_users and not fit_users & select_users
        assert np.all(o.fit_valid ^ o.select_valid)
        select = [h["select"]["RMSE"] for h in o.history]
        assert o.best_round() == int(np.argmin(select))
        assert [h["select"]["n"] for h in o.history] == [int(o.select_valid.sum())] * len(o.history)
        # the fitted half's loss can only go down (eta is its line-search minimum); the other half is free to rise
        fitted = [h["fit"]["RMSE"] for h in o.history]
        assert all(b <= a + 1e-4 for a, b in zip(fitted, fitted[1:])), (o.name, fitted)


def test_base_zero_starts_from_zero_and_bad_base_fails(data):
    from cdrec.errors import CdrecError

    fed = fed_of(data)
    run = run_mtal(fed, cfg_of(rounds=1, base="zero"))
    for o in run.orgs:
        assert np.all(o.base.values == 0.0) and np.all(o.history[0]["f_test"] == 0.0)
        assert o.history[1]["train_loss"] < o.history[0]["train_loss"]  # round 1 fits the ratings themselves
    with pytest.raises(CdrecError, match="MTALConfig.base"):
        run_mtal(fed, cfg_of(rounds=1, base="median"))


def test_implicit_metrics_of_lists_without_a_positive_are_nan_without_a_warning():
    """An organization whose held-out users have no positive item: NaN (null in results.json), no NumPy warning."""
    ent = Entries(rows=np.array([0, 0, 1]), cols=np.array([0, 1, 0]), y=np.zeros(3), users=np.array([0, 0, 1]), items=np.array([0, 1, 0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = key_metrics("implicit", ent, np.array([0.3, 0.2, 0.1]))
    assert np.isnan(out["MAP@10"]) and np.isnan(out["NDCG@10"]) and out["n"] == 3


@pytest.fixture(scope="module")
def decoy_runs(data):
    """The same federation and seed run with and without query decoys (w and eta fitted on validation,
    so the peers' answers to the queries feed the weights too)."""
    fed = fed_of(data, align_ratio=0.6, seed=1)
    runs = {}
    for r in (0, 3):
        transport = InProcessTransport(record=True)
        runs[r] = (run_mtal(fed, cfg_of(query_decoys=r, optimize_w=True, eta="optimize", assist_fit="valid"), transport=transport), transport)
    return fed, runs


def test_query_decoys_leave_every_metric_and_weight_bit_identical(decoy_runs):
    _, runs = decoy_runs
    for plain, decoyed in zip(runs[0][0].orgs, runs[3][0].orgs):
        assert len(plain.history) == len(decoyed.history) == 4
        for a, b in zip(plain.history, decoyed.history):
            assert a["valid"] == b["valid"] and a["test"] == b["test"] and a["train_loss"] == b["train_loss"]
            np.testing.assert_array_equal(a["f_test"], b["f_test"])
        np.testing.assert_array_equal(np.array(plain.weights), np.array(decoyed.weights))
        assert plain.etas == decoyed.etas
    residuals = [[(m.rows, m.values) for m in t.log if isinstance(m, ResidualMessage)] for _, t in runs.values()]
    for (r0, v0), (r3, v3) in zip(*residuals):
        np.testing.assert_array_equal(r0, r3)
        np.testing.assert_array_equal(v0, v3)


def test_query_messages_hide_held_out_keys_among_decoys_of_the_same_form(decoy_runs):
    fed, runs = decoy_runs
    holdings = {o.name: o for o in fed.orgs}
    plain = {(m.sender, m.receiver): m for m in runs[0][1].log if isinstance(m, QueryMessage)}
    decoyed = [m for m in runs[3][1].log if isinstance(m, QueryMessage)]
    assert len(decoyed) == len(plain) == 6
    decoys_by_org: dict[str, dict[int, set]] = {}
    n_capped = n_decoys = 0
    for m in decoyed:
        h, real = holdings[m.sender], plain[(m.sender, m.receiver)]
        assert m.rows.dtype == real.rows.dtype and m.cols.dtype == real.cols.dtype
        keys = m.rows.astype(np.int64) * h.n_cols + m.cols
        assert np.all(np.diff(keys) > 0), "keys are distinct and sorted by (row, column), real and decoy mixed"
        real_keys = real.rows.astype(np.int64) * h.n_cols + real.cols
        assert np.isin(real_keys, keys).all()
        decoy = ~np.isin(keys, real_keys)
        held = Entries.concat([h.train, h.valid, h.test])
        assert not np.isin(keys[decoy], held.rows.astype(np.int64) * h.n_cols + held.cols).any(), "a decoy is a key the sender holds"
        rows, n_keys = np.unique(m.rows, return_counts=True)
        n_real = np.unique(real.rows, return_counts=True)[1]
        held_per_row = np.bincount(held.rows, minlength=h.n_rows)[rows]
        expected = n_real + np.minimum(3 * n_real, h.n_cols - held_per_row)
        np.testing.assert_array_equal(n_keys, expected)
        n_capped += int((3 * n_real > h.n_cols - held_per_row).sum())
        n_decoys += int(decoy.sum())
        seen = decoys_by_org.setdefault(m.sender, {})
        for row in np.unique(m.rows[decoy]):
            mine = set(m.cols[decoy & (m.rows == row)].tolist())
            assert seen.setdefault(int(row), mine) == mine, "two peers got different decoys for the same row"
    assert n_decoys > 3000 and n_capped == 0
    answers = [m for m in runs[3][1].log if isinstance(m, PredictionMessage) and m.part == "query"]
    by_pair = {(m.sender, m.receiver): m for m in decoyed}
    for a in answers:
        np.testing.assert_array_equal(a.cols, by_pair[(a.receiver, a.sender)].cols)


def test_query_decoys_cost_query_traffic_only(decoy_runs):
    _, runs = decoy_runs
    (_, t0), (_, t3) = runs[0], runs[3]
    n_keys = [sum(len(m.rows) for m in t.log if isinstance(m, QueryMessage)) for t in (t0, t3)]
    assert 3.5 * n_keys[0] < n_keys[1] <= 4 * n_keys[0]
    for kind in ("query", "prediction.query"):
        assert t3.payload_bytes[kind] * n_keys[0] == t0.payload_bytes[kind] * n_keys[1]
    for kind in ("alignment", "residual", "prediction.train"):
        assert t3.payload_bytes[kind] == t0.payload_bytes[kind] > 0


def test_decoys_of_a_row_with_few_free_columns_are_all_of_them():
    from cdrec.federated.organization import draw_decoys

    held = Entries(np.array([0, 0, 0, 1, 2, 2]), np.array([0, 1, 2, 0, 3, 4]), np.zeros(6), np.zeros(6), np.zeros(6))
    rows, cols = draw_decoys(np.array([0, 0, 1, 2]), held, 5, 3, np.random.default_rng(0), block_cells=10)
    got = {r: sorted(cols[rows == r].tolist()) for r in (0, 1, 2)}
    assert got[0] == [3, 4]  # 6 asked, 2 free
    assert len(got[1]) == 3 and set(got[1]) <= {1, 2, 3, 4}
    assert len(got[2]) == 3 and set(got[2]) <= {0, 1, 2}


def test_peer_predictions_in_any_pair_chunk_leave_every_round_bit_identical(data, monkeypatch):
    """score_pairs' chunk (4,096 pairs, was 16,384) is a speed choice: chunks of 7 pairs give each organization the
    same outputs F_t, bit for bit, every round."""
    import functools

    from cdrec.federated import organization
    from cdrec.models.assisted.aae import score_pairs

    fed = fed_of(data)
    runs = []
    for chunk in (None, 7):
        monkeypatch.setattr(organization, "score_pairs", score_pairs if chunk is None else functools.partial(score_pairs, pair_chunk=chunk))
        runs.append(run_mtal(fed, cfg_of(rounds=2)).orgs)
    for a, b in zip(*runs):
        for ha, hb in zip(a.history, b.history):
            np.testing.assert_array_equal(ha["f_test"], hb["f_test"])
            assert ha["valid"] == hb["valid"] and ha["test"] == hb["test"]



def test_round_one_fits_equal_between_runs_are_trained_once_and_change_no_bit(data, monkeypatch):
    """Inside sharing_fits (``cdrec reproduce mtal``), a run whose round-1 local fits equal an earlier run's (same
    organizations, F0, model and seed; other eta / rounds) takes their parameters instead of training: every round
    of it is bit-identical to the run trained alone, and only its own later rounds train. Another seed shares nothing."""
    from cdrec.federated import organization
    from cdrec.federated.shared_fits import sharing_fits

    fed = fed_of(data)
    calls = []
    real_fit = organization.fit_autoencoder
    monkeypatch.setattr(organization, "fit_autoencoder", lambda *a, **kw: calls.append(1) or real_fit(*a, **kw))
    alone = run_mtal(fed, cfg_of(rounds=2, eta=0.2)).orgs
    K = len(fed.orgs)
    with sharing_fits() as store:
        first = run_mtal(fed, cfg_of(rounds=3)).orgs
        calls.clear()
        shared = run_mtal(fed, cfg_of(rounds=2, eta=0.2)).orgs
        assert len(calls) == K and store.hits == K  # round 2 only
        other_seed = run_mtal(fed, cfg_of(rounds=1, seed=5)).orgs
    assert [o.reused_fits for o in first] == [0] * K and [o.reused_fits for o in shared] == [1] * K
    assert [o.reused_fits for o in other_seed] == [0] * K
    for a, b in zip(alone, shared):
        assert len(a.history) == len(b.history) == 3
        for ha, hb in zip(a.history, b.history):
            np.testing.assert_array_equal(ha["f_test"], hb["f_test"])
            assert ha["valid"] == hb["valid"] and ha["test"] == hb["test"]
