"""End to end: train a tiny BPR-MF, start `cdrec serve` (uvicorn) in a subprocess on a free loopback
port with the API key from the environment, and call every endpoint with httpx over TCP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
KEY = "e2e-secret"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(joint_run):
    port = free_port()
    env = {**os.environ, "CDREC_API_KEY": KEY, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdrec", "serve", str(joint_run), "--port", str(port), "--device", "cpu", "--max-k", "50"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"cdrec serve exited with {proc.returncode}: {proc.stdout.read()}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("cdrec serve did not answer /health within 90 s")
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=10) as client:
            yield client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


AUTH = {"X-API-Key": KEY}


def test_health_needs_no_key(server, joint_predictor):
    r = server.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["model"] == "bprmf" and body["domains"] == ["D0", "D1", "D2"]
    assert body["supports"] == ["recommend", "score"]


@pytest.mark.parametrize("path, method", [("/recommend?user=1&domain=D0", "GET"), ("/score", "POST"), ("/recommend/sequence", "POST")])
def test_every_other_endpoint_needs_the_key(server, path, method):
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}):
        r = server.request(method, path, headers=headers, json={"rows": [{"user": 1, "item": 1}]} if method == "POST" else None)
        assert r.status_code == 401, (path, headers, r.text)
        assert "API key" in r.json()["detail"]


def test_recommend_answers_like_the_python_api(server, joint_predictor):
    for user in joint_predictor.data.user_ids[[0, 9, 42]]:
        for domain in ("D0", "D2"):
            r = server.get("/recommend", params={"user": str(user), "domain": domain, "k": 5}, headers=AUTH)
            assert r.status_code == 200
            body = r.json()
            expected = joint_predictor.recommend(user, domain, 5)
            assert [x["item"] for x in body["items"]] == expected.items
            assert [x["rank"] for x in body["items"]] == [1, 2, 3, 4, 5]
            np.testing.assert_allclose([x["score"] for x in body["items"]], expected.scores, rtol=1e-5)
    r = server.get("/recommend", params={"user": "ghost", "domain": "D1", "k": 4, "fallback": "popularity"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["source"] == "popularity"
    assert [x["item"] for x in r.json()["items"]] == joint_predictor.recommend("ghost", "D1", 4, fallback="popularity").items


@pytest.mark.parametrize(
    "params, code, needle",
    [
        ({"user": "ghost", "domain": "D0"}, 404, "unknown user 'ghost'"),
        ({"user": "0", "domain": "nowhere"}, 404, "unknown domain"),
        ({"user": "0"}, 400, "name one of"),
        ({"domain": "D0"}, 422, "user"),
        ({"user": "0", "domain": "D0", "k": 0}, 422, "k"),
        ({"user": "0", "domain": "D0", "k": 51}, 422, "k"),
        ({"user": "0", "domain": "D0", "k": "ten"}, 422, "k"),
        ({"user": "0", "domain": "D0", "exclude_seen": "perhaps"}, 422, "exclude_seen"),
        ({"user": "0", "domain": "D0", "fallback": "random"}, 422, "fallback"),
        ({"user": "0", "domain": "D0", "fallbak": "popularity"}, 422, "query.fallbak: unknown parameter"),
        ({"user": "0", "domain": "D0", "include_seen": "false"}, 422, "query.include_seen: unknown parameter"),
    ],
)
def test_recommend_bad_requests_are_4xx_with_a_message(server, params, code, needle):
    r = server.get("/recommend", params=params, headers=AUTH)
    assert r.status_code == code, r.text
    assert needle in r.json()["detail"]


def test_score_endpoint(server, joint_predictor):
    users = joint_predictor.data.user_ids[[1, 2]].tolist()
    items = joint_predictor.data.item_ids[[3, -1]].tolist()
    rows = [{"user": u, "item": i} for u, i in zip(users, items)]
    r = server.post("/score", json={"rows": rows}, headers=AUTH)
    assert r.status_code == 200
    np.testing.assert_allclose([s["score"] for s in r.json()["scores"]], [s["score"] for s in joint_predictor.score_rows(rows)], rtol=1e-5)
    item_domain = joint_predictor.domains[int(joint_predictor.item_domain[3])]
    other = next(d for d in joint_predictor.domains if d != item_domain)
    r = server.post("/score", json={"rows": [dict(rows[0], domain=item_domain)]}, headers=AUTH)
    assert r.status_code == 200 and r.json()["scores"][0] == pytest.approx(joint_predictor.score_rows(rows[:1])[0])
    for body, code, needle in [
        ({"rows": [{"user": users[0], "item": "missing"}]}, 404, "unknown item"),
        ({"rows": [{"user": users[0]}]}, 400, "expected an object with 'user' and 'item'"),
        ({"rows": [rows[0], dict(rows[1], color="red")]}, 400, "rows[1]: unknown feature 'color'"),
        ({"rows": [dict(rows[0], domain="nosuch")]}, 404, "rows[0]: domain: unknown domain 'nosuch'"),
        ({"rows": [dict(rows[0], domain=other)]}, 400, f"rows[0]: item {items[0]!r} belongs to domain {item_domain!r}"),
        ({"rows": rows, "extra": 1}, 422, "extra: Extra inputs are not permitted"),
        ({"rows": []}, 422, "rows"),
        ({"rows": "all"}, 422, "rows"),
        ({}, 422, "rows"),
    ]:
        r = server.post("/score", json=body, headers=AUTH)
        assert r.status_code == code, (body, r.text)
        assert needle in r.json()["detail"], (body, r.text)
    r = server.post("/score", content=b'{"rows": [', headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422 and "invalid JSON" in r.json()["detail"]


def test_sequence_endpoint_says_cf_cannot_answer(server):
    r = server.post("/recommend/sequence", json={"history": [1, 2, 3], "k": 5}, headers=AUTH)
    assert r.status_code == 400 and "does not support recommendation from an item history" in r.json()["detail"]
    r = server.post("/recommend/sequence", json={"history": [1.5], "k": 5}, headers=AUTH)
    assert r.status_code == 422


def test_docs_page_and_schema_load_without_the_key_and_declare_it(server):
    page = server.get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text and "/openapi.json" in page.text
    schema = server.get("/openapi.json")
    assert schema.status_code == 200
    body = schema.json()
    assert body["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key", "description": "Required when the service was started with an API key."}
    # the 'Authorize' button applies the scheme to every endpoint that needs the key, and not to /health
    for path, method in (("/recommend", "get"), ("/score", "post"), ("/recommend/sequence", "post")):
        assert body["paths"][path][method]["security"] == [{"APIKeyHeader": []}]
    assert "security" not in body["paths"]["/health"]["get"]
    assert server.get("/recommend", params={"user": "1", "domain": "D0"}).status_code == 401  # calls still need the key


def test_openapi_schema(server):
    schema = server.get("/openapi.json", headers=AUTH).json()
    assert {"/health", "/recommend", "/recommend/sequence", "/score"} <= set(schema["paths"])
    k = next(p for p in schema["paths"]["/recommend"]["get"]["parameters"] if p["name"] == "k")
    assert k["schema"]["maximum"] == 50 and k["schema"]["minimum"] == 1
