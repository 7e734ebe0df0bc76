"""The one interaction model every family reads from.

An :class:`Interactions` is one table with a row per event (``user``, ``item``, ``domain`` as dense
integer indices, optional ``rating`` and ``timestamp``, any number of label columns) plus optional
user- and item-feature tables and the raw-id <-> index maps.

Two item layouts exist, and ``item_offsets`` says which one a table has:

* **items owned by one domain** (cross-domain CF, sequences, organizations): items are numbered so
  that each domain's items form the contiguous range ``item_offsets[d] : item_offsets[d + 1]``.
  Candidate sampling and per-domain matrices rely on it.
* **domain as a property of the sample** (multi-domain CTR): the same item may occur in several
  domains; ``item_offsets`` is ``None``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import pandas as pd

from cdrec.errors import CdrecError, require

CORE_COLUMNS = ("user", "item", "domain")


@dataclass
class Interactions:
    """Interactions of users with items across domains (see module docstring)."""

    frame: pd.DataFrame
    user_ids: np.ndarray
    item_ids: np.ndarray
    domains: list[str]
    item_offsets: np.ndarray | None = None
    label_columns: tuple[str, ...] = ()
    user_features: pd.DataFrame | None = None
    item_features: pd.DataFrame | None = None
    name: str = "data"
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        user_col: str = "user",
        item_col: str = "item",
        domain_col: str | None = "domain",
        rating_col: str | None = None,
        timestamp_col: str | None = None,
        label_cols: Sequence[str] = (),
        domain_names: Sequence[str] | None = None,
        user_features: pd.DataFrame | None = None,
        item_features: pd.DataFrame | None = None,
        items_by_domain: bool | None = None,
        name: str = "data",
        source: str = "input",
    ) -> "Interactions":
        """Encode a table of raw ids into an :class:`Interactions`.

        ``user_features`` / ``item_features`` are indexed by raw id; rows for ids that never occur
        are dropped. ``items_by_domain=None`` picks the item-owned layout whenever every item occurs
        in exactly one domain. ``source`` names the file or table in error messages.
        """
        require_columns(frame, [user_col, item_col, domain_col, rating_col, timestamp_col, *label_cols], source)
        require(len(frame) > 0, f"{source}: no interactions (empty table)")
        out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
        if domain_col is None:
            domain_raw = pd.Series(np.zeros(len(frame), dtype=np.int64))
            names = list(domain_names) if domain_names else ["all"]
        else:
            domain_raw = frame[domain_col].reset_index(drop=True)
            missing = domain_raw.isna().to_numpy()
            if missing.any():
                raise CdrecError(f"{source}: column {domain_col!r} has {int(missing.sum())} missing domains (first at row {int(np.flatnonzero(missing)[0]) + 1})")
            names = list(domain_names) if domain_names else sorted(map(str, pd.unique(domain_raw)))
            domain_raw = domain_raw.astype(str)
            unknown = set(pd.unique(domain_raw)) - set(names)
            require(not unknown, f"{source}: column {domain_col!r} has unknown domains {sorted(unknown)[:5]}; expected {names}")
        domain_idx = (
            pd.Categorical(domain_raw.astype(str), categories=names).codes.astype(np.int16)
            if domain_col is not None
            else np.zeros(len(frame), dtype=np.int16)
        )
        users_raw = frame[user_col].reset_index(drop=True)
        items_raw = frame[item_col].reset_index(drop=True)
        _check_ids(users_raw, user_col, "user", source)
        _check_ids(items_raw, item_col, "item", source)
        user_codes, user_ids = pd.factorize(users_raw, sort=True)
        out["user"] = user_codes.astype(np.int64)
        out["domain"] = domain_idx

        item_domain_pairs = pd.DataFrame({"item": items_raw, "domain": domain_idx}).drop_duplicates()
        owned = item_domain_pairs["item"].is_unique
        if items_by_domain is None:
            items_by_domain = owned
        if items_by_domain:
            require(
                owned,
                f"{source}: column {item_col!r}: an item occurs in several domains, "
                "but this layout needs each item in exactly one domain",
            )
            order = item_domain_pairs.sort_values(["domain", "item"], kind="stable")
            item_ids = order["item"].to_numpy()
            lookup = pd.Series(np.arange(len(item_ids), dtype=np.int64), index=pd.Index(item_ids))
            out["item"] = lookup.reindex(items_raw.to_numpy()).to_numpy()
            counts = np.bincount(order["domain"].to_numpy(), minlength=len(names))
            item_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        else:
            item_codes, item_ids = pd.factorize(items_raw, sort=True)
            out["item"] = item_codes.astype(np.int64)
            item_offsets = None
            item_ids = np.asarray(item_ids)

        if rating_col is not None:
            rating = pd.to_numeric(frame[rating_col].reset_index(drop=True), errors="coerce")
            bad = rating.isna() | ~np.isfinite(rating.to_numpy(dtype=float, na_value=np.nan))
            if bad.any():
                first = int(np.flatnonzero(bad.to_numpy())[0])
                raise CdrecError(f"{source}: column {rating_col!r} has {int(bad.sum())} non-numeric, NaN or infinite ratings (first at row {first + 1})")
            out["rating"] = rating.to_numpy(dtype=np.float32)
        if timestamp_col is not None:
            ts = _timestamps(frame[timestamp_col].reset_index(drop=True))
            values = ts.to_numpy(dtype=float, na_value=np.nan)
            for bad, what in ((~np.isfinite(values), "non-numeric, NaN or infinite"), (values < 0, "negative")):
                if bad.any():
                    first = int(np.flatnonzero(bad)[0])
                    raise CdrecError(f"{source}: column {timestamp_col!r} has {int(bad.sum())} {what} timestamps (first at row {first + 1}: {show_id(frame[timestamp_col].iloc[first])})")
            out["timestamp"] = ts.to_numpy(dtype=np.int64)
        for col in label_cols:  # binary labels, one per task
            lab = pd.to_numeric(frame[col].reset_index(drop=True), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            bad = ~np.isin(lab, (0.0, 1.0))
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                raise CdrecError(f"{source}: label column {col!r} has {int(bad.sum())} values that are not 0 or 1 (first at row {first + 1}: {show_id(frame[col].iloc[first])})")
            out[col] = lab.astype(np.float32)

        user_ids = np.asarray(user_ids)
        inter = cls(
            frame=out,
            user_ids=user_ids,
            item_ids=np.asarray(item_ids),
            domains=names,
            item_offsets=item_offsets,
            label_columns=tuple(label_cols),
            name=name,
        )
        inter.user_features = _align_features(user_features, user_ids, "user features", source)
        inter.item_features = _align_features(item_features, inter.item_ids, "item features", source)
        return inter

    # ------------------------------------------------------------------ sizes
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_domains(self) -> int:
        return len(self.domains)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def has_rating(self) -> bool:
        return "rating" in self.frame.columns

    @property
    def has_timestamp(self) -> bool:
        return "timestamp" in self.frame.columns

    @property
    def items_by_domain(self) -> bool:
        return self.item_offsets is not None

    def column(self, name: str) -> np.ndarray:
        return self.frame[name].to_numpy()

    @property
    def users(self) -> np.ndarray:
        return self.frame["user"].to_numpy()

    @property
    def items(self) -> np.ndarray:
        return self.frame["item"].to_numpy()

    @property
    def domain(self) -> np.ndarray:
        return self.frame["domain"].to_numpy()

    def domain_index(self, name: str) -> int:
        if name not in self.domains:
            raise CdrecError(f"unknown domain {name!r}; expected one of {self.domains}")
        return self.domains.index(name)

    def domain_item_range(self, d: int) -> tuple[int, int]:
        """``[start, stop)`` of domain ``d``'s items (item-owned layout only)."""
        if self.item_offsets is None:
            raise CdrecError(f"{self.name}: items are not owned by domains, so no per-domain item range")
        return int(self.item_offsets[d]), int(self.item_offsets[d + 1])

    def require_items_owned(self, what: str) -> None:
        """Raise unless every item belongs to one domain; the message names an item found in several."""
        if self.items_by_domain:
            return
        pairs = np.unique(self.items.astype(np.int64) * self.n_domains + self.domain)
        item = pairs // self.n_domains
        shared = np.flatnonzero(np.bincount(item, minlength=self.n_items) > 1)
        where = "its domains are a property of the user (a user-owned domain builder)"
        if len(shared):
            doms = [self.domains[d] for d in pairs[item == shared[0]] % self.n_domains]
            where = f"item {show_id(self.item_ids[shared[0]])} occurs in domains {doms} (the domain column or data.domains)"
        raise CdrecError(f"{self.name}: {what} need each item in one domain, but {where}; give each item one domain or use an item-owned domain builder")

    def item_domain(self) -> np.ndarray:
        """Domain index of every item (item-owned layout only)."""
        if self.item_offsets is None:
            raise CdrecError(f"{self.name}: items are not owned by domains")
        return np.repeat(np.arange(self.n_domains), np.diff(self.item_offsets)).astype(np.int64)

    # ------------------------------------------------------------------ derived tables
    def subset(self, rows: np.ndarray) -> "Interactions":
        """Same id maps and domains, only the given rows (positions or boolean mask)."""
        frame = self.frame.iloc[rows].reset_index(drop=True)
        return replace(self, frame=frame, meta=dict(self.meta))

    def with_frame(self, frame: pd.DataFrame) -> "Interactions":
        return replace(self, frame=frame.reset_index(drop=True), meta=dict(self.meta))

    def raw_frame(self) -> pd.DataFrame:
        """The table with raw ids and domain names (what a user would recognise)."""
        out = self.frame.copy()
        out["user"] = self.user_ids[out["user"].to_numpy()]
        out["item"] = self.item_ids[out["item"].to_numpy()]
        out["domain"] = np.asarray(self.domains, dtype=object)[out["domain"].to_numpy()]
        return out

    def stats(self) -> dict:
        """Counts that loaders are checked against (users/items/interactions overall and per domain)."""
        f = self.frame
        per_domain = {}
        for d, name in enumerate(self.domains):
            sub = f[f["domain"] == d]
            items = (
                int(self.item_offsets[d + 1] - self.item_offsets[d])
                if self.item_offsets is not None
                else int(sub["item"].nunique())
            )
            per_domain[name] = {
                "users": int(sub["user"].nunique()),
                "items": items,
                "interactions": int(len(sub)),
            }
        return {
            "name": self.name,
            "users": int(f["user"].nunique()),
            "items": int(f["item"].nunique()),
            "interactions": int(len(f)),
            "domains": per_domain,
            "fingerprint": self.fingerprint(),
        }

    def fingerprint(self) -> str:
        """A short digest of the rows (users, items, domains, ratings, timestamps, labels, in row order)
        and of the index sizes: a saved run checks it to tell that its data file has changed since."""
        digest = hashlib.blake2b(digest_size=8)
        digest.update(repr((self.n_users, self.n_items, list(self.domains), len(self.frame))).encode())
        for col in (*CORE_COLUMNS, "rating", "timestamp", *self.label_columns):
            if col in self.frame.columns:
                digest.update(col.encode())
                values = self.frame[col]
                raw = values.to_numpy() if values.dtype.kind in "biuf" else pd.util.hash_pandas_object(values, index=False).to_numpy()
                digest.update(np.ascontiguousarray(raw).tobytes())
        return digest.hexdigest()


def _timestamps(raw: pd.Series) -> pd.Series:
    """Numbers as they are (datetime columns as their integer time); text holding ISO 8601 dates or
    datetimes (``2024-01-31``, ``2024-01-31 10:00:00``, with or without offset) as microseconds since
    1970 UTC. Values that are neither stay NaN for the caller's error."""
    ts = pd.to_numeric(raw, errors="coerce")
    if not ts.isna().any() or raw.dtype.kind in "biufmM":
        return ts
    dates = pd.to_datetime(raw, format="ISO8601", errors="coerce", utc=True)
    if dates.notna().sum() <= ts.notna().sum():
        return ts
    micros = dates.dt.tz_localize(None).to_numpy(dtype="datetime64[us]").astype(np.int64).astype(np.float64)
    return pd.Series(np.where(dates.notna().to_numpy(), micros, np.nan))


def require_columns(frame: pd.DataFrame, columns: Sequence[str | None], source: str) -> None:
    """Every named column is in ``frame``; the message lists the columns found."""
    for col in columns:
        if col is not None and col not in frame.columns:
            found = list(map(str, frame.columns))
            hint = ""
            if len(found) == 1 and any(d in found[0] for d in (";", "\t", "|", ",", " ")):
                hint = " (one column only: is the file's delimiter the expected one?)"
            raise CdrecError(f"{source}: missing column {col!r}; found columns {found}{hint}")


def show_id(value: object) -> str:
    """A raw id or value for a message: text quoted, numbers (NumPy scalars too) as written."""
    value = value.item() if isinstance(value, np.generic) else value
    return repr(value) if isinstance(value, str) else str(value)


def _check_ids(raw: pd.Series, col: str, what: str, source: str) -> None:
    """Ids are opaque: numbers or any non-empty text (Unicode and inner spaces included). Missing
    ids, and text ids with leading or trailing whitespace (usually a ``", "`` delimiter or padded
    columns, which would make ``u1`` and `` u1`` two users), are errors naming the first row."""
    missing = raw.isna().to_numpy()
    if missing.any():
        first = int(np.flatnonzero(missing)[0])
        raise CdrecError(f"{source}: column {col!r} has {int(missing.sum())} missing {what} ids (first at row {first + 1})")
    if raw.dtype == object or pd.api.types.is_string_dtype(raw.dtype):
        text = raw.astype(str)
        padded = (text != text.str.strip()).to_numpy()
        if padded.any():
            first = int(np.flatnonzero(padded)[0])
            raise CdrecError(
                f"{source}: column {col!r} row {first + 1}: {what} id {text.iloc[first]!r} has leading/trailing "
                "whitespace or is blank (check the delimiter; ids may contain inner spaces and Unicode)"
            )


def _align_features(
    features: pd.DataFrame | None, raw_ids: np.ndarray, what: str, source: str
) -> pd.DataFrame | None:
    """Reindex a feature table given by raw id onto the dense index order."""
    if features is None:
        return None
    require(features.index.is_unique, f"{source}: {what} have duplicate ids")
    aligned = features.reindex(pd.Index(raw_ids))
    return aligned.reset_index(drop=True)
