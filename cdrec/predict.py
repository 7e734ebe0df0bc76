"""Use a trained run: ``cdrec.load(run_dir)`` returns a :class:`Predictor` answering in raw ids.

Every family plugs in the same way: its task (see :mod:`cdrec.train.tasks`) implements
``predictor(cfg, run_dir) -> Predictor`` next to ``restore``, returning a subclass of
:class:`Predictor` that overrides the questions its models can answer and lists them in
``supports``:

* ``"recommend"`` — :meth:`Predictor.recommend` (top-K items for a known user in a domain) and
  :meth:`Predictor.recommend_users` (the same for every user of a domain, in batches; ``cdrec export``);
* ``"sequence"`` — :meth:`Predictor.recommend_sequence` (next items per domain for a history);
* ``"score"`` — :meth:`Predictor.score_rows` (one dict of scores or probabilities per input row).

A question a model cannot answer raises :class:`UnsupportedError` (HTTP 400); an unknown user,
item or domain raises :class:`UnknownIdError` (HTTP 404). Both are :class:`CdrecError`, so the CLI
prints one line and exits with code 2.

Plugging a family in, step by step:

1. subclass :class:`Predictor`, calling ``super().__init__(model=cfg.model, task="<task>",
   dataset=data.name, domains=data.domains, users=IdMap(data.user_ids, "user"),
   items=IdMap(data.item_ids, "item"))``;
2. set ``supports`` and override the matching methods with the signatures below; take and return
   raw ids (``self.users.lookup`` / ``self.items.lookup`` give -1 for unknown ids,
   ``self.items.to_raw`` maps back), check ``k`` with :func:`check_k`, resolve domains with
   :meth:`Predictor.domain_index`, and rank with :func:`masked_top_k` (plus :func:`csr_entries`
   to leave out seen items) so that every family excludes and breaks ties the same way;
3. in the family's task: ``def predictor(self, cfg, run_dir): prepared, models = self.restore(cfg,
   run_dir); return MyPredictor(...)``. ``cdrec.load``, ``cdrec recommend/export/serve`` and the
   HTTP endpoints then work unchanged.

:class:`RankingPredictor` serves the collaborative-filtering family (task ``"ranking"``); the
sequential and CTR families live in :mod:`cdrec.predictors` (``SequencePredictor``,
``CTRPredictor``). :class:`TopKPredictor` holds what every top-K predictor shares (cold start,
popularity fallback, batched export); a subclass only ranks a batch of users (``top_k``).
Serving rules (documented in the README):

* **seen items** — ``exclude_seen=True`` removes every item the user has in the run's data, in the
  train, validation *and* test parts: all of them are interactions the user already had, and the
  held-out parts only exist for offline evaluation.
* **cold start** — a user the model was not trained on (unknown id, or, for a single-domain
  model, no training interaction in that domain) is an error unless ``fallback="popularity"``,
  which returns the domain's most popular training items (ties: lower item index first).
* **vectorized** — scores for a batch of users over the domain's contiguous item range come from
  one ``score_all`` call; seen items are masked from the CSR matrix in one indexed assignment and
  the top K taken with :func:`torch.topk`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from cdrec.errors import CdrecError, require

if TYPE_CHECKING:
    import pyarrow as pa
    import scipy.sparse as sp

    from cdrec.data.splits import Split

FALLBACKS = (None, "popularity")
CAPABILITIES = ("recommend", "sequence", "score")
EXPORT_FORMATS = ("parquet", "csv")


class UnknownIdError(CdrecError):
    """A user, item or domain id the run does not know."""


class ColdUserError(UnknownIdError):
    """A user the model cannot score in a domain; ``why`` says which, the message how to get the popularity fallback."""

    def __init__(self, why: str, fallback_hint: str = "fallback='popularity'") -> None:
        self.why = why
        super().__init__(f"{why}; pass {fallback_hint} for the domain's most popular items")


class UnsupportedError(CdrecError):
    """The loaded model cannot answer this kind of question."""


@dataclass
class Recommendations:
    """Top-K answer: raw item ids, their scores (best first) and where they came from
    (``"model"`` or ``"popularity"``)."""

    user: Any
    domain: str
    items: list[Any]
    scores: list[float]
    source: str = "model"

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "domain": self.domain,
            "source": self.source,
            "items": [{"rank": r + 1, "item": i, "score": s} for r, (i, s) in enumerate(zip(self.items, self.scores))],
        }


def _native(values: np.ndarray) -> list[Any]:
    """Raw ids as plain Python values (JSON-friendly)."""
    return np.asarray(values).tolist()


def check_k(k: Any, option: str = "k") -> int:
    """``k`` as an int >= 1; a user error names it as ``option`` (``--k`` on the command line)."""
    require(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1, f"{option}: expected an integer >= 1, got {k!r}")
    return int(k)


class IdMap:
    """Raw id <-> dense index. Lookups go through ``str(raw)``, so ``"42"`` and ``42`` both find
    the raw id 42 (HTTP query strings arrive as text)."""

    def __init__(self, raw_ids: np.ndarray, what: str) -> None:
        self.raw = np.asarray(raw_ids)
        self.what = what
        self.index = pd.Index(np.asarray([str(x) for x in self.raw.tolist()], dtype=object))
        require(self.index.is_unique, f"{what} ids are not unique once written as text; cannot look them up")

    def __len__(self) -> int:
        return len(self.raw)

    def lookup(self, raw: Sequence[Any]) -> np.ndarray:
        """Dense indices, -1 where unknown."""
        return self.index.get_indexer([str(x) for x in raw]).astype(np.int64)

    def one(self, raw: Any) -> int:
        """Dense index of one raw id, -1 when unknown."""
        try:
            pos = self.index.get_loc(str(raw))
        except KeyError:
            return -1
        return int(pos)

    def to_raw(self, idx: np.ndarray) -> list[Any]:
        return _native(self.raw[idx])


def csr_entries(matrix: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(position in rows, column)`` of every stored entry of ``matrix[rows]`` (SciPy CSR), without
    building the sub-matrix (cheaper than fancy indexing for the one-user requests of a server)."""
    starts, stops = matrix.indptr[rows], matrix.indptr[np.asarray(rows) + 1]
    lens = stops - starts
    pos = np.repeat(np.arange(len(lens)), lens)
    flat = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
    return pos, matrix.indices[flat]


def masked_top_k(scores: torch.Tensor, k: int, *, exclude: tuple[np.ndarray, np.ndarray] | None = None, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` columns per row of ``scores[n, m]`` (one domain's items), as numpy
    ``(items[n, min(k, m)] + offset, scores)``. ``exclude = (rows, cols)`` (e.g. the seen items from
    :func:`csr_entries`, or a history) are set to ``-inf`` first; they sort last and callers drop them."""
    with torch.no_grad():
        scores = scores.float()
        if exclude is not None and len(exclude[0]):
            scores = scores.clone()
            dev = scores.device
            scores[torch.as_tensor(exclude[0], dtype=torch.long, device=dev), torch.as_tensor(exclude[1], dtype=torch.long, device=dev)] = -torch.inf
        vals, idx = torch.topk(scores, min(k, scores.shape[1]), dim=1)
    return idx.cpu().numpy() + offset, vals.cpu().numpy()


class Predictor:
    """Base of every family's predictor (see module docstring): override what ``supports`` lists."""

    supports: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, model: str, task: str, dataset: str, domains: list[str], users: IdMap, items: IdMap) -> None:
        self.model = model
        self.task = task
        self.dataset = dataset
        self.domains = list(domains)
        self.users = users
        self.items = items

    # ------------------------------------------------------------------ shared helpers
    def info(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "task": self.task,
            "dataset": self.dataset,
            "domains": self.domains,
            "n_users": len(self.users),
            "n_items": len(self.items),
            "supports": sorted(self.supports),
        }

    def domain_index(self, domain: str | None, option: str = "domain") -> int:
        """Index of a domain name; ``None`` is allowed when the run has exactly one domain. A user error names
        the argument as ``option`` (``--domain`` on the command line)."""
        if domain is None:
            if len(self.domains) == 1:
                return 0
            raise CdrecError(f"{option}: this run has {len(self.domains)} domains, name one of {self.domains}")
        if str(domain) not in self.domains:
            raise UnknownIdError(f"{option}: unknown domain {domain!r}; expected one of {self.domains}")
        return self.domains.index(str(domain))

    def named_domains(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        """The domain index each row names in ``"domain"``, -1 where it names none; an unknown name
        is an error naming its row."""
        named_at = np.asarray([k for k, row in enumerate(rows) if "domain" in row], dtype=np.int64)
        named = np.full(len(rows), -1, dtype=np.int64)
        if named_at.size:
            given = [rows[k]["domain"] for k in named_at]
            codes = pd.Index(self.domains, dtype=object).get_indexer([str(v) for v in given])
            for j in np.flatnonzero(codes < 0):  # a name not in the run: domain_index raises (or maps None)
                try:
                    codes[j] = self.domain_index(given[j])
                except CdrecError as e:
                    raise type(e)(f"rows[{named_at[j]}]: {e}") from None
            named[named_at] = codes
        return named

    @staticmethod
    def conflicting_domain(named: np.ndarray, item_domain: np.ndarray) -> int | None:
        """The first row whose named domain is not its known item's, or None."""
        bad = np.flatnonzero((named >= 0) & (item_domain >= 0) & (item_domain != named))
        return int(bad[0]) if bad.size else None

    def domain_conflict(self, rows: Sequence[dict[str, Any]], k: int, item_domain: np.ndarray) -> CdrecError:
        """The error for row ``k``, whose named domain is not its item's."""
        return CdrecError(f"rows[{k}]: item {rows[k]['item']!r} belongs to domain {self.domains[item_domain[k]]!r}, not {rows[k]['domain']!r}")

    def unsupported(self, what: str) -> UnsupportedError:
        can = ", ".join(sorted(self.supports)) or "nothing"
        return UnsupportedError(f"model {self.model!r} (task {self.task!r}) does not support {what}; it supports: {can}")

    # ------------------------------------------------------------------ the questions
    def recommend(self, user: Any, domain: str | None = None, k: int = 10, *, exclude_seen: bool = True, fallback: str | None = None) -> Recommendations:
        """Top-``k`` items of ``domain`` for a known ``user`` (raw ids)."""
        raise self.unsupported("top-K recommendation for a user (recommend)")

    def recommend_users(self, domain: str | None = None, k: int = 10, *, exclude_seen: bool = True, batch_size: int = 1024) -> Iterator[pd.DataFrame]:
        """Top-``k`` for every user the model knows in ``domain``, as long DataFrames
        (``user, domain, rank, item, score``), one per batch of users."""
        raise self.unsupported("top-K recommendation for all users (export)")

    def recommend_sequence(self, history: Sequence[Any], k: int = 10, *, domain: str | None = None) -> dict[str, Recommendations]:
        """Next items per domain (or only ``domain``) after the chronological ``history`` of raw item ids."""
        raise self.unsupported("recommendation from an item history (recommend_sequence)")

    def score_rows(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
        """One dict of scores (CF: ``score``; CTR: a probability per label) per input row."""
        raise self.unsupported("scoring rows (score_rows)")


# ---------------------------------------------------------------------------------- top-K
class TopKPredictor(Predictor):
    """Top-K for known users, shared by the ranking and sequential predictors: cold start,
    popularity fallback and the batched export. A subclass sets ``known[n_users, n_domains]``
    (users the model was trained on, per domain), ``single_target`` (one model per domain),
    ``popular`` (per domain, item indices by training popularity), ``popularity[n_items]`` and
    ``models`` (``"joint"`` or one per domain name), and implements :meth:`top_k`."""

    known: np.ndarray
    popular: list[np.ndarray]
    popularity: np.ndarray
    models: dict[str, torch.nn.Module]
    single_target: bool = False

    def _model(self, d: int) -> torch.nn.Module:
        key = "joint" if "joint" in self.models else self.domains[d]
        if key not in self.models:
            raise UnsupportedError(f"run has no trained model for domain {self.domains[d]!r} (it had no test rows)")
        return self.models[key]

    def _check_fallback(self, fallback: str | None) -> None:
        require(fallback in FALLBACKS, f"fallback: expected 'popularity' or none, got {fallback!r}")

    def top_k(self, users: np.ndarray, d: int, k: int, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(items[n, k'], scores[n, k'])`` with global item indices, ``k' = min(k, items in d)``;
        excluded items come last with score ``-inf``."""
        raise TypeError(f"{type(self).__name__} must implement top_k")

    def _popular(self, user: Any, d: int, k: int) -> Recommendations:
        items = self.popular[d][:k]
        return Recommendations(user, self.domains[d], self.items.to_raw(items), self.popularity[items].tolist(), source="popularity")

    def recommend(self, user: Any, domain: str | None = None, k: int = 10, *, exclude_seen: bool = True, fallback: str | None = None) -> Recommendations:
        k = check_k(k)
        self._check_fallback(fallback)
        d = self.domain_index(domain)
        u = self.users.one(user)
        if u < 0 or not self.known[u, d]:
            if fallback == "popularity":
                return self._popular(user, d, k)
            why = f"unknown user {user!r}" if u < 0 else f"user {user!r} has no training interactions in domain {self.domains[d]!r} (single-domain model)"
            raise ColdUserError(why)
        items, scores = self.top_k(np.array([u]), d, k, exclude_seen)
        keep = np.isfinite(scores[0])
        return Recommendations(user, self.domains[d], self.items.to_raw(items[0][keep]), scores[0][keep].tolist())

    def recommend_users(self, domain: str | None = None, k: int = 10, *, exclude_seen: bool = True, batch_size: int = 1024) -> Iterator[pd.DataFrame]:
        k = check_k(k)
        require(batch_size >= 1, f"batch_size: expected >= 1, got {batch_size}")
        d = self.domain_index(domain)
        users = np.flatnonzero(self.known[:, d])
        for lo in range(0, len(users), batch_size):
            batch = users[lo : lo + batch_size]
            items, scores = self.top_k(batch, d, k, exclude_seen)
            keep = np.isfinite(scores)
            rank = np.broadcast_to(np.arange(1, items.shape[1] + 1), items.shape)
            yield pd.DataFrame({
                "user": self.users.raw[np.repeat(batch, items.shape[1]).reshape(items.shape)[keep]],
                "domain": self.domains[d],
                "rank": rank[keep].astype(np.int32),
                "item": self.items.raw[items[keep]],
                "score": scores[keep].astype(np.float32),
            })


def known_users(split: Split, single_target: bool) -> np.ndarray:
    """``[n_users, n_domains]``: users with a training interaction (in that domain for models
    trained per domain)."""
    counts = split.train_counts()
    return counts > 0 if single_target else np.repeat((counts.sum(1) > 0)[:, None], split.data.n_domains, axis=1)


def training_popularity(split: Split) -> tuple[np.ndarray, list[np.ndarray]]:
    """Training interactions per item and, per domain, its items by popularity (ties: lower index)."""
    data = split.data
    pop = split.train_item_counts()
    offsets = np.asarray(data.item_offsets, dtype=np.int64)
    return pop.astype(np.float32), [np.argsort(-pop[a:b], kind="stable") + a for a, b in zip(offsets[:-1], offsets[1:])]


# ---------------------------------------------------------------------------------- ranking
class RankingPredictor(TopKPredictor):
    """Serves a collaborative-filtering run (joint model, or one model per domain for ``scope=single``)."""

    supports = frozenset({"recommend", "score"})

    def __init__(self, *, model: str, scope: str, split: Split, models: dict[str, torch.nn.Module], device: torch.device) -> None:
        from cdrec.data.views import domain_matrix

        data = split.data
        super().__init__(model=model, task="ranking", dataset=data.name, domains=data.domains,
                         users=IdMap(data.user_ids, "user"), items=IdMap(data.item_ids, "item"))
        self.data = data
        self.scope = scope
        self.single_target = scope == "single"
        self.device = device
        self.models = models
        self.offsets = np.asarray(data.item_offsets, dtype=np.int64)
        self.item_domain = data.item_domain()
        # every known interaction (train, valid, test) counts as seen, per domain with local columns
        self.seen = [domain_matrix(data, d) for d in range(data.n_domains)]
        self.known = known_users(split, self.single_target)
        self.popularity, self.popular = training_popularity(split)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "scope": self.scope}

    def top_k(self, users: np.ndarray, d: int, k: int, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        start, stop = int(self.offsets[d]), int(self.offsets[d + 1])
        with torch.no_grad():
            scores = self._model(d).score_all(torch.as_tensor(users, dtype=torch.long, device=self.device), start, stop)
        exclude = csr_entries(self.seen[d], users) if exclude_seen else None
        return masked_top_k(scores, k, exclude=exclude, offset=start)

    def score_rows(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
        """Preference scores ``score`` (the model's unnormalised ``score(user, item)``) for rows
        ``{"user": ..., "item": ...}`` (known raw ids) and optionally ``"domain"``, which must be the
        item's; any other key is an error."""
        require(len(rows) > 0, "rows: expected at least one row")
        for n, row in enumerate(rows):
            require(isinstance(row, dict) and "user" in row and "item" in row, f"rows[{n}]: expected an object with 'user' and 'item', got {row!r}")
            extra = sorted(set(row) - {"user", "item", "domain"})
            if extra:
                raise CdrecError(f"rows[{n}]: unknown feature {extra[0]!r}; this run takes ['domain', 'item', 'user']")
        users = self.users.lookup([r["user"] for r in rows])
        items = self.items.lookup([r["item"] for r in rows])
        for what, idx in (("user", users), ("item", items)):
            if (idx < 0).any():
                n = int(np.flatnonzero(idx < 0)[0])
                raise UnknownIdError(f"rows[{n}]: unknown {what} {rows[n][what]!r}")
        doms = self.item_domain[items]
        conflict = self.conflicting_domain(self.named_domains(rows), doms)
        if conflict is not None:
            raise self.domain_conflict(rows, conflict, doms)
        out = np.empty(len(rows), dtype=np.float32)
        for d in np.unique(doms):  # one batched call per domain's model
            sel = np.flatnonzero(doms == d)
            u = torch.as_tensor(users[sel], device=self.device)
            i = torch.as_tensor(items[sel], device=self.device)[:, None]
            with torch.no_grad():
                out[sel] = self._model(int(d)).score(u, i)[:, 0].float().cpu().numpy()
        return [{"score": float(s)} for s in out]


# ---------------------------------------------------------------------------------- loading
def load(run_dir: str | Path, *, device: str | None = None) -> Predictor:
    """Load a finished run directory (``cdrec run --out RUN_DIR``) as its family's predictor."""
    from cdrec.experiments.pipeline import load_run_config
    from cdrec.train.tasks import task_for

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    require((run_dir / "results.json").exists(), f"{run_dir}: no results.json; the run did not finish")
    if device is not None:
        cfg.train.device = device
    task = task_for(cfg.model)
    return task.predictor(cfg, run_dir)


# ---------------------------------------------------------------------------------- export
def export_recommendations(
    predictor: Predictor,
    out: str | Path,
    *,
    fmt: str | None = None,
    k: int = 10,
    domains: Sequence[str] | None = None,
    exclude_seen: bool = True,
    batch_size: int = 1024,
    progress: bool = False,
) -> int:
    """Write top-``k`` for every user of every domain (or ``domains``) to ``out`` as Parquet or CSV
    (columns ``user, domain, rank, item, score``). Batches of users stream into a temporary file
    that is renamed at the end, so a failure leaves no partial file. Returns the number of rows."""
    out = Path(out)
    fmt = fmt or out.suffix.lstrip(".").lower()
    require(fmt in EXPORT_FORMATS, f"--format: expected one of {list(EXPORT_FORMATS)}, got {fmt!r}")
    require(not out.is_dir(), f"--out {out}: is a directory, expected a file")
    require(out.parent.is_dir(), f"--out {out}: folder {out.parent} does not exist")
    k = check_k(k)
    require(batch_size >= 1, f"batch_size: expected >= 1, got {batch_size}")
    names = list(domains) if domains else list(predictor.domains)
    for name in names:
        predictor.domain_index(name)
    if "recommend" not in predictor.supports:
        raise predictor.unsupported("top-K recommendation for all users (export)")

    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    n_rows = 0
    writer = None
    try:
        frames = (f for name in names for f in predictor.recommend_users(name, k, exclude_seen=exclude_seen, batch_size=batch_size))
        if progress:
            from tqdm import tqdm

            frames = tqdm(frames, desc="export", unit="batch")
        first = True
        for frame in frames:
            if fmt == "parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table.cast(writer.schema))
            else:
                frame.to_csv(tmp, mode="w" if first else "a", header=first, index=False)
            first = False
            n_rows += len(frame)
        if writer is not None:
            writer.close()
            writer = None
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(_empty_table(), tmp)
        elif first:
            pd.DataFrame(columns=["user", "domain", "rank", "item", "score"]).to_csv(tmp, index=False)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, out)
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return n_rows


def _empty_table() -> pa.Table:
    import pyarrow as pa

    return pa.table({"user": pa.array([], pa.string()), "domain": pa.array([], pa.string()), "rank": pa.array([], pa.int32()),
                     "item": pa.array([], pa.string()), "score": pa.array([], pa.float32())})
