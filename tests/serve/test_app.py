"""The HTTP layer in-process (no socket): a stand-in sequential/CTR predictor covers the success paths
of /recommend/sequence and /score that no CF model has, and the 400 for a question it cannot answer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cdrec.errors import CdrecError
from cdrec.predict import IdMap, Predictor, Recommendations, UnknownIdError
from cdrec.serve import API_KEY_HEADER, create_app


with warnings.catch_warnings():  # starlette's TestClient warns that it wants httpx2; httpx is what we ship
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


class EchoSequencePredictor(Predictor):
    """Recommends, per domain, the k items after the last one of the history (a fixed rule)."""

    supports = frozenset({"sequence", "score"})

    def __init__(self) -> None:
        super().__init__(model="echo", task="sequential", dataset="toy", domains=["A", "B"],
                         users=IdMap(np.array([10, 11]), "user"), items=IdMap(np.array([f"i{j}" for j in range(8)]), "item"))

    def recommend_sequence(self, history, k=10, *, domain=None):
        idx = self.items.lookup(history)
        if (idx < 0).any():
            raise UnknownIdError(f"history: unknown item {history[int(np.flatnonzero(idx < 0)[0])]!r}")
        names = [self.domains[self.domain_index(domain)]] if domain is not None else self.domains
        out = {}
        for off, name in enumerate(names):
            nxt = (idx[-1] + 1 + off + np.arange(k)) % len(self.items)
            out[name] = Recommendations(None, name, self.items.to_raw(nxt), [float(-r) for r in range(len(nxt))])
        return out

    def score_rows(self, rows):
        if any("age" not in r for r in rows):
            raise CdrecError("rows: every row needs 'age'")
        return [{"click": 1 / (1 + np.exp(-r["age"] / 10)), "like": 0.25} for r in rows]


@pytest.fixture
def client():
    with TestClient(create_app(EchoSequencePredictor(), api_key="k3y", max_k=5)) as c:
        c.headers[API_KEY_HEADER] = "k3y"
        yield c


def test_sequence_success_and_validation(client):
    r = client.post("/recommend/sequence", json={"history": ["i1", "i6"], "k": 3})
    assert r.status_code == 200
    recs = r.json()["recommendations"]
    assert [x["item"] for x in recs["A"]["items"]] == ["i7", "i0", "i1"]
    assert [x["item"] for x in recs["B"]["items"]] == ["i0", "i1", "i2"]
    r = client.post("/recommend/sequence", json={"history": ["i1"], "k": 2, "domain": "B"})
    assert list(r.json()["recommendations"]) == ["B"]
    for body, code in [
        ({"history": ["nope"], "k": 2}, 404),
        ({"history": ["i1"], "k": 2, "domain": "Z"}, 404),
        ({"history": [], "k": 2}, 422),
        ({"history": ["i1"], "k": 0}, 422),
        ({"history": ["i1"], "k": 6}, 400),  # above this app's max_k
        ({"history": "i1", "k": 2}, 422),
        ({"history": [{"x": 1}], "k": 2}, 422),
        ({"k": 2}, 422),
    ]:
        r = client.post("/recommend/sequence", json=body)
        assert r.status_code == code, (body, r.text)
        assert isinstance(r.json()["detail"], str) and r.json()["detail"]


def test_score_success_and_errors(client):
    r = client.post("/score", json={"rows": [{"age": 0, "gender": "F"}, {"age": 30}]})
    assert r.status_code == 200
    scores = r.json()["scores"]
    assert scores[0] == {"click": 0.5, "like": 0.25} and scores[1]["click"] > 0.9
    assert client.post("/score", json={"rows": [{"gender": "F"}]}).status_code == 400
    assert client.post("/score", json={"rows": [{"age": [1, 2]}]}).status_code == 422
    r = client.post("/score", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "invalid JSON" in r.json()["detail"]


def test_unsupported_question_is_400_with_message(client):
    r = client.get("/recommend", params={"user": "10", "domain": "A", "k": 3})
    assert r.status_code == 400
    assert "does not support top-K recommendation" in r.json()["detail"]
    assert client.get("/recommend", params={"user": "10", "domain": "A", "k": 6}).status_code == 422


def test_key_guard_and_schema(client):
    assert client.get("/health", headers={API_KEY_HEADER: ""}).status_code == 200
    for headers in ({API_KEY_HEADER: ""}, {API_KEY_HEADER: "wrong"}):
        assert client.post("/score", json={"rows": [{"age": 1}]}, headers=headers).status_code == 401
    schema = client.get("/openapi.json", headers={API_KEY_HEADER: "wrong"}).json()  # the schema is open, like /health
    assert {"/health", "/recommend", "/recommend/sequence", "/score"} <= set(schema["paths"])
    assert API_KEY_HEADER in str(schema["components"]["securitySchemes"])


def test_without_key_everything_is_open():
    with TestClient(create_app(EchoSequencePredictor())) as c:
        assert c.get("/openapi.json").status_code == 200
        assert c.post("/score", json={"rows": [{"age": 1}]}).status_code == 200
