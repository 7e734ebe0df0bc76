"""FastAPI app answering from one predictor held in memory.

Endpoints (all but ``/health``, ``/openapi.json`` and ``/docs`` need the ``X-API-Key`` header when the app has a key):

* ``GET /health`` — liveness and what the model is (model, task, domains, supported questions);
* ``GET /recommend?user=&domain=&k=&exclude_seen=&fallback=`` — top-K for a known user
  (collaborative-filtering and sequential runs);
* ``POST /recommend/sequence`` ``{"history": [...], "k": 10, "domain": null}`` — next items per
  domain after a history of raw item ids (sequential runs: SASRec, BERT4Rec, MERIT);
* ``POST /score`` ``{"rows": [{...}, ...]}`` — one dict of scores per row: ``{"score": s}`` for a
  ``{"user", "item"}`` row of a CF run, ``{"click": p, "like": p}`` for a row of raw feature values
  of a CTR run (M3oE and its baselines; see :mod:`cdrec.predictors.ctr`);
* ``GET /openapi.json`` and ``GET /docs`` (Swagger UI) — the schema and its page, open like ``/health``
  so a browser can load them; the schema declares the key as the ``APIKeyHeader`` security scheme, so
  the page's "Authorize" button sends it with the calls made from the page.

Status codes: 401 missing or wrong API key, 404 unknown user/item/domain, 400 a question the model
cannot answer or another bad value, 422 a malformed request (wrong type, ``k`` out of bounds, bad
JSON, a query parameter or body field the endpoint does not take). The body is always ``{"detail": "<one line>"}``. A 500 means a bug in cdrec.
"""

import hmac
from typing import Any, Optional, Union

from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from cdrec import __version__
from cdrec.errors import CdrecError
from cdrec.predict import Predictor, UnknownIdError, UnsupportedError

API_KEY_HEADER = "X-API-Key"
MAX_K = 1000
MAX_ROWS = 10_000
MAX_HISTORY = 10_000

RawId = Union[int, str]


class RankedItem(BaseModel):
    rank: int
    item: RawId
    score: float


class RecommendResponse(BaseModel):
    user: Optional[RawId] = None
    domain: str
    source: str = Field(description="'model', or 'popularity' for the cold-start fallback")
    items: list[RankedItem]


class SequenceRequest(BaseModel):
    history: list[RawId] = Field(min_length=1, max_length=MAX_HISTORY, description="Raw item ids of any domains, oldest first; the model reads the last max_len of them (single-target models: those of the ranked domain).")
    k: int = Field(10, ge=1, le=MAX_K, description="Items per domain; the history's items are left out.")
    domain: Optional[str] = Field(None, description="Only this domain (default: every domain).")

    model_config = {"extra": "forbid", "json_schema_extra": {"examples": [{"history": [101, 57, 3], "k": 5, "domain": None}]}}


class SequenceResponse(BaseModel):
    recommendations: dict[str, RecommendResponse] = Field(description="Domain name -> top-K of that domain (user is null).")


class ScoreRequest(BaseModel):
    rows: list[dict[str, Union[int, float, str]]] = Field(
        min_length=1, max_length=MAX_ROWS,
        description=(
            "CF runs: {'user', 'item'} (known raw ids). CTR runs: 'user' and 'item' (raw ids; unknown ones get the "
            "unknown code), 'domain' (name; optional when the item or the known user determines it) and optionally the "
            "side features listed by /health 'features' (e.g. gender, occupation, age, category); left-out features "
            "take the known user's / item's stored values."
        ),
    )

    model_config = {"extra": "forbid", "json_schema_extra": {"examples": [{"rows": [{"user": 42, "item": 7}, {"user": "new", "item": 7, "domain": "D0", "gender": "F", "age": 25}]}]}}


class ScoreResponse(BaseModel):
    scores: list[dict[str, float]] = Field(description="Per row: {'score': s} (CF) or one probability per task, e.g. {'click': p, 'like': p} (CTR).")


def _one_line(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        if err.get("type") == "json_invalid":
            parts.append(f"request body: invalid JSON ({err.get('ctx', {}).get('error', 'decode error')})")
            continue
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "request"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def only_known_parameters(request: Request) -> None:
    """A query parameter the endpoint does not take is a 422 (a typo such as ``fallbak`` would
    otherwise be ignored and answer as if it were left out)."""
    known = {p.alias for p in request.scope["route"].dependant.query_params}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestValidationError([{"loc": ("query", name), "msg": f"unknown parameter; expected one of {sorted(known)}", "type": "extra_forbidden"} for name in unknown])


def create_app(predictor: Predictor, *, api_key: str | None = None, max_k: int = MAX_K) -> FastAPI:
    """The service for ``predictor`` (loaded once; every request answers from memory)."""
    protected = api_key is not None
    app = FastAPI(
        title="cdrec",
        version=__version__,
        description=f"Recommendations from a trained cdrec run: model {predictor.model!r} (task {predictor.task!r}) on {predictor.dataset!r}.",
        redoc_url=None,
    )
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="Required when the service was started with an API key.")
    expected = api_key.encode() if protected else b""

    async def check_key(key: Optional[str] = Security(header)) -> None:
        if not protected:
            return
        if not key:
            raise StarletteHTTPException(401, f"missing API key: send it in the {API_KEY_HEADER} header")
        if not hmac.compare_digest(key.encode(), expected):
            raise StarletteHTTPException(401, "wrong API key")

    auth = [Depends(check_key)]
    info = predictor.info()

    @app.exception_handler(UnknownIdError)
    async def unknown_id(request: Request, exc: UnknownIdError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(UnsupportedError)
    async def unsupported(request: Request, exc: UnsupportedError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(CdrecError)
    async def bad_value(request: Request, exc: CdrecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _one_line(exc)}, status_code=422)

    @app.get("/health", summary="Liveness and model description (no API key needed)")
    async def health() -> dict[str, Any]:
        return {"status": "ok", **info}

    @app.get("/recommend", response_model=RecommendResponse, dependencies=[*auth, Depends(only_known_parameters)], summary="Top-K items for a known user in a domain")
    async def recommend(
        user: str = Query(..., min_length=1, description="Raw user id."),
        domain: Optional[str] = Query(None, description="Domain name (optional when the run has one domain)."),
        k: int = Query(10, ge=1, le=max_k),
        exclude_seen: bool = Query(True, description="Leave out items the user already has (train, validation and test)."),
        fallback: Optional[str] = Query(None, pattern="^popularity$", description="'popularity': the domain's most popular items for unknown users."),
    ) -> JSONResponse:
        # computed on the event loop: one user's scores over a domain take well under a millisecond
        # for catalogues of this size, less than a hop to the thread pool would cost
        return JSONResponse(predictor.recommend(user, domain, k, exclude_seen=exclude_seen, fallback=fallback).to_dict())

    @app.post("/recommend/sequence", response_model=SequenceResponse, dependencies=auth, summary="Next items per domain after a history (sequential runs)")
    def recommend_sequence(body: SequenceRequest) -> dict[str, Any]:
        if body.k > max_k:
            raise CdrecError(f"k: expected <= {max_k}, got {body.k}")
        recs = predictor.recommend_sequence(body.history, body.k, domain=body.domain)
        return {"recommendations": {d: r.to_dict() for d, r in recs.items()}}

    @app.post("/score", response_model=ScoreResponse, dependencies=auth, summary="Scores (CF) or click/like probabilities (CTR) for rows")
    def score(body: ScoreRequest) -> dict[str, Any]:
        return {"scores": predictor.score_rows(body.rows)}

    return app
