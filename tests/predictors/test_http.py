"""The HTTP service (FastAPI TestClient) for sequential and CTR runs: answers equal the
predictors', bad requests are one-line 4xx, never a 500."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cdrec.serve import create_app


@pytest.fixture(scope="module", params=["merit", "abxi"])
def seq(predictors, request):
    with TestClient(create_app(predictors[request.param], max_k=50)) as client:
        yield client, predictors[request.param]


@pytest.fixture(scope="module")
def ctr(predictors):
    with TestClient(create_app(predictors["m3oe-mdmt"], api_key="secret")) as client:
        yield client, predictors["m3oe-mdmt"]


def one_line(r, status: int, needle: str) -> None:
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and needle in detail, detail


def test_sequence_endpoint_equals_predictor(seq):
    client, p = seq
    health = client.get("/health").json()
    assert health["task"] == "sequential" and health["supports"] == ["recommend", "sequence"]
    history = p.data.item_ids[[3, p.offsets[1] + 4, 8]].tolist()
    r = client.post("/recommend/sequence", json={"history": history, "k": 4})
    assert r.status_code == 200
    body = r.json()["recommendations"]
    expected = p.recommend_sequence(history, 4)
    assert set(body) == {"D0", "D1"}
    for dom, rec in expected.items():
        assert [x["item"] for x in body[dom]["items"]] == rec.items and body[dom]["user"] is None
        np.testing.assert_allclose([x["score"] for x in body[dom]["items"]], rec.scores, rtol=1e-6)
    r = client.post("/recommend/sequence", json={"history": [str(x) for x in history], "k": 4, "domain": "D1"})
    assert list(r.json()["recommendations"]) == ["D1"]
    assert [x["item"] for x in r.json()["recommendations"]["D1"]["items"]] == expected["D1"].items
    user = p.data.user_ids[5].item()
    r = client.get("/recommend", params={"user": user, "domain": "D0", "k": 3})
    assert r.status_code == 200 and [x["item"] for x in r.json()["items"]] == p.recommend(user, "D0", 3).items


def test_sequence_endpoint_serves_c2dsr(predictors):
    p = predictors["c2dsr"]
    history = p.data.item_ids[[3, p.offsets[1] + 4, 8]].tolist()
    with TestClient(create_app(p, max_k=50)) as client:
        r = client.post("/recommend/sequence", json={"history": history, "k": 4})
    assert r.status_code == 200, r.text
    body = r.json()["recommendations"]
    for dom, rec in p.recommend_sequence(history, 4).items():
        assert [x["item"] for x in body[dom]["items"]] == rec.items
        np.testing.assert_allclose([x["score"] for x in body[dom]["items"]], rec.scores, rtol=1e-6)


@pytest.mark.parametrize(
    "body, status, needle",
    [
        ({"history": ["0", "no-such-item"], "k": 3}, 404, "history[1]: unknown item 'no-such-item'"),
        ({"history": ["0"], "k": 3, "domain": "D5"}, 404, "unknown domain 'D5'"),
        ({"history": [], "k": 3}, 422, "history"),
        ({"history": [0], "k": 0}, 422, "k"),
        ({"history": [0], "k": 51}, 400, "k: expected <= 50"),
        ({"history": [[0]], "k": 3}, 422, "history"),
    ],
)
def test_sequence_endpoint_bad_requests(seq, body, status, needle):
    client, p = seq
    if body["history"] and body["history"][0] == "0":  # stands for a known item
        body = {**body, "history": [p.items.raw[0].item(), *body["history"][1:]]}
    one_line(client.post("/recommend/sequence", json=body), status, needle)


def test_sequence_run_cannot_score(seq):
    client, _ = seq
    one_line(client.post("/score", json={"rows": [{"user": 0, "item": 0}]}), 400, "does not support scoring rows")
    one_line(client.get("/recommend", params={"user": "ghost", "domain": "D0"}), 404, "unknown user 'ghost'")


@pytest.mark.parametrize("name", ["m3oe-mdmt", "m2m-mdmt", "adatt-sp-mtl"])
def test_score_endpoint_equals_predictor(predictors, name):
    p = predictors[name]
    with TestClient(create_app(p, api_key="secret")) as client:
        score_endpoint_equals_predictor(client, p)


def score_endpoint_equals_predictor(client, p):
    auth = {"X-API-Key": "secret"}
    health = client.get("/health").json()
    assert health["task"] == "ctr" and health["supports"] == ["score"] and "age" in health["features"]
    data = p.prepared.data
    rows = [{"user": data.user_ids[u].item(), "item": data.item_ids[i].item()} for u, i in zip(data.users[:20], data.items[:20])]
    rows.append({"user": "new", "item": "new", "domain": "D1", "gender": "F", "age": 31.5})
    r = client.post("/score", json={"rows": rows}, headers=auth)
    assert r.status_code == 200
    got = r.json()["scores"]
    ref = p.score_rows(rows)
    assert [list(s) for s in got] == [["click", "like"]] * len(rows)
    np.testing.assert_allclose([[s["click"], s["like"]] for s in got], [[s["click"], s["like"]] for s in ref], rtol=1e-6)
    assert client.post("/score", json={"rows": rows}).status_code == 401


@pytest.mark.parametrize(
    "rows, status, needle",
    [
        ([{"user": 0, "item": 0, "domain": "D8"}], 404, "unknown domain 'D8'"),
        ([{"user": 0, "item": 0, "colour": "red"}], 400, "unknown feature 'colour'"),
        ([{"user": 0}], 400, "expected an object with 'user' and 'item'"),
        ([{"user": 0, "item": 0, "age": "old"}], 400, "age: expected a number"),
        ([{"user": "new", "item": "new"}], 400, "name the 'domain'"),
        ([{"user": 0, "item": [1, 2]}], 422, "rows"),
        ([], 422, "rows"),
    ],
)
def test_score_endpoint_bad_requests(ctr, rows, status, needle):
    client, p = ctr
    known = {"user": p.users.raw[0].item(), "item": p.items.raw[0].item()}  # the rows' 0s stand for known ids
    rows = [{k: known[k] if k in known and v == 0 else v for k, v in row.items()} for row in rows]
    one_line(client.post("/score", json={"rows": rows}, headers={"X-API-Key": "secret"}), status, needle)


def test_ctr_run_cannot_recommend_and_schema_documents_both(ctr, seq):
    client, _ = ctr
    auth = {"X-API-Key": "secret"}
    one_line(client.get("/recommend", params={"user": 0, "domain": "D0"}, headers=auth), 400, "does not support top-K")
    one_line(client.post("/recommend/sequence", json={"history": [0]}, headers=auth), 400, "does not support recommendation from an item history")
    schema = seq[0].get("/openapi.json").json()
    score = schema["components"]["schemas"]["ScoreRequest"]
    assert "CTR runs" in score["properties"]["rows"]["description"] and score["examples"]
    assert "sequential" in schema["paths"]["/recommend/sequence"]["post"]["summary"]
    assert "oldest first" in schema["components"]["schemas"]["SequenceRequest"]["properties"]["history"]["description"]
