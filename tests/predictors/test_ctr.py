"""CTRPredictor: rows of raw values encode like the CTR view and score like the evaluation;
side features, domain derivation, unknown values and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cdrec.errors import CdrecError
from cdrec.experiments.pipeline import load_run_config
from cdrec.predict import UnknownIdError, UnsupportedError
from cdrec.predictors.ctr import CTRPredictor
from cdrec.train.ctr import ctr_metrics
from cdrec.train.tasks import task_for

from .conftest import CTR_MODELS


def raw_rows(data, rows, *, domain: bool = True, features: bool = False) -> list[dict]:
    out = []
    for r in rows:
        u, i = int(data.users[r]), int(data.items[r])
        row = {"user": data.user_ids[u].item(), "item": data.item_ids[i].item()}
        if domain:
            row["domain"] = data.domains[int(data.domain[r])]
        if features:
            uf, itf = data.user_features.iloc[u], data.item_features.iloc[i]
            row.update(gender=uf["gender"], occupation=int(uf["occupation"]), age=int(uf["age"]), category=int(itf["category"]))
        out.append(row)
    return out


def probs_of(scores: list[dict]) -> np.ndarray:
    return np.array([[s["click"], s["like"]] for s in scores])


@pytest.mark.parametrize("name", list(CTR_MODELS))
def test_dataset_rows_score_as_the_evaluation(runs, predictors, name):
    p = predictors[name]
    assert isinstance(p, CTRPredictor) and p.info()["supports"] == ["score"] and p.info()["tasks"] == ["click", "like"]
    cfg = load_run_config(runs[name])
    task = task_for(cfg.model)
    prepared, models = task.restore(cfg, runs[name])
    rows, ref = task.predict_part(models, prepared, "test", 8192)
    data = prepared.data
    raw = raw_rows(data, rows)
    view = p.encode(raw)
    np.testing.assert_array_equal(view.sparse, prepared.view.sparse[rows])
    np.testing.assert_array_equal(view.dense, prepared.view.dense[rows])
    got = probs_of(p.score_rows(raw))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)
    stored = json.loads((runs[name] / "results.json").read_text())["metrics"]
    assert ctr_metrics(prepared.view, rows, got)["overall"]["AUC"] == pytest.approx(stored["overall"]["AUC"], abs=1e-9)
    # the same rows with every side feature spelled out, and without the (derivable) domain
    np.testing.assert_allclose(probs_of(p.score_rows(raw_rows(data, rows[:50], features=True))), got[:50], rtol=1e-6)
    np.testing.assert_allclose(probs_of(p.score_rows(raw_rows(data, rows[:50], domain=False))), got[:50], rtol=1e-6)


def test_side_features_change_codes_and_unknown_values_get_code_zero(predictors):
    p = predictors["m3oe-mdmt"]
    data = p.prepared.data
    fields = p.view.fields
    assert fields == ["user", "item", "gender", "occupation", "category", "domain"] and p.view.dense_names == ["age"]
    user, item = data.user_ids[0].item(), data.item_ids[5].item()
    base = p.encode([{"user": user, "item": item}])
    changed = p.encode([{"user": user, "item": item, "gender": "M", "category": "zzz", "age": 40}])
    assert changed.sparse[0, fields.index("gender")] == 2  # vocabulary F, M
    assert changed.sparse[0, fields.index("category")] == 0  # never seen: unknown
    mean, std = p.view.meta["dense_stats"]["age"]
    assert changed.dense[0, 0] == pytest.approx((40 - mean) / std)
    assert base.sparse[0, fields.index("domain")] == int(data.item_domain()[5]) + 1
    cold = p.encode([{"user": "ghost", "item": "nothing", "domain": "D2"}])
    np.testing.assert_array_equal(cold.sparse[0], [0, 0, 0, 0, 0, 3])
    assert cold.dense[0, 0] == 0.0  # missing age: the mean
    scores = p.score_rows([{"user": "ghost", "item": "nothing", "domain": "D2"}, {"user": user, "item": item, "gender": "M", "age": 40}])
    assert all(0.0 < v < 1.0 for s in scores for v in s.values())


def test_user_owned_domains_are_derived_from_a_known_user(predictors):
    p = predictors["mmoe-users"]
    data = p.prepared.data
    assert not data.items_by_domain
    u = int(data.users[0])
    d = int(data.domain[0])
    row = {"user": data.user_ids[u].item(), "item": data.item_ids[int(data.items[0])].item()}
    assert p.encode([row]).domain[0] == d
    with pytest.raises(CdrecError, match="rows\\[0\\]: name the 'domain'"):
        p.score_rows([{"user": "new-user", "item": row["item"]}])
    assert len(p.score_rows([{"user": "new-user", "item": row["item"], "domain": data.domains[d]}])) == 1


def test_a_mixed_batch_routes_each_row_and_names_the_bad_row(predictors):
    """Named, item-derived and user-derived domains in one request give each row the domain it gets
    alone; an error names the row it is about."""
    items_owned, users_owned = predictors["m3oe-mdmt"], predictors["mmoe-users"]
    data = items_owned.prepared.data
    item_rows = [{"user": data.user_ids[int(data.users[r])].item(), "item": data.item_ids[int(data.items[r])].item()} for r in range(6)]
    named = [dict(row, domain=data.domains[int(data.domain[r])]) for r, row in enumerate(item_rows)]
    mixed = [named[0], item_rows[1], {"user": "ghost", "item": "nothing", "domain": data.domains[-1]}, item_rows[3]]
    expected = [items_owned.encode([row]).domain[0] for row in mixed]
    np.testing.assert_array_equal(items_owned.encode(mixed).domain, expected)
    np.testing.assert_array_equal(expected[:2] + expected[3:], data.domain[[0, 1, 3]])
    other = data.domains[(int(data.domain[4]) + 1) % len(data.domains)]
    with pytest.raises(CdrecError, match="rows\\[2\\]: item .* belongs to domain"):
        items_owned.encode(named[:2] + [dict(item_rows[4], domain=other)])
    with pytest.raises(UnknownIdError, match="rows\\[1\\]: domain: unknown domain 'D9'"):
        items_owned.encode([named[0], dict(item_rows[1], domain="D9")])
    udata = users_owned.prepared.data
    known = {"user": udata.user_ids[int(udata.users[0])].item(), "item": udata.item_ids[int(udata.items[0])].item()}
    assert users_owned.encode([{"user": "new-user", "item": known["item"], "domain": udata.domains[0]}, known]).domain[1] == int(udata.domain[0])
    with pytest.raises(CdrecError, match="rows\\[1\\]: name the 'domain'"):
        users_owned.encode([known, {"user": "new-user", "item": known["item"]}])


def test_bad_rows_are_one_line_errors(predictors):
    p = predictors["mlp-single"]
    data = p.prepared.data
    user, item = data.user_ids[0].item(), data.item_ids[0].item()
    other = data.domains[1 - int(data.item_domain()[0])] if len(data.domains) > 1 else None
    cases = [
        ([], CdrecError, "at least one row"),
        ([{"user": user}], CdrecError, "expected an object with 'user' and 'item'"),
        ([{"user": user, "item": item, "gendr": "F"}], CdrecError, "unknown feature 'gendr'"),
        ([{"user": user, "item": item, "domain": "D9"}], UnknownIdError, "unknown domain 'D9'"),
        ([{"user": user, "item": item, "domain": other}], CdrecError, "belongs to domain"),
        ([{"user": user, "item": item, "age": "old"}], CdrecError, "age: expected a number"),
    ]
    for rows, exc, needle in cases:
        with pytest.raises(exc, match=needle) as info:
            p.score_rows(rows)
        assert "\n" not in str(info.value)
    with pytest.raises(UnsupportedError):
        p.recommend(user, "D0", 3)
    with pytest.raises(UnsupportedError):
        p.recommend_sequence([item], 3)
