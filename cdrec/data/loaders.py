"""Loaders for the real datasets in ``../shared/data`` and for users' own files.

Each loader returns an :class:`~cdrec.data.interactions.Interactions` and reproduces the statistics
given in ``shared/data/README.md``. Compressed files (``.gz``, ``.xz``) are read as they are.
Every mistake in a file (missing, empty, wrong columns, non-numeric values) raises
:class:`~cdrec.errors.CdrecError` naming the file.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import itertools
import json
import lzma
import os
import zipfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from cdrec.data.filters import collapse_repeats
from cdrec.data.interactions import Interactions, require_columns
from cdrec.errors import CdrecError, require

DEFAULT_DATA_DIR = Path("../shared/data")

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
]


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The shared data folder: ``path``, else ``$CDREC_DATA_DIR``, else ``../shared/data``."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get("CDREC_DATA_DIR", DEFAULT_DATA_DIR))


def _need_file(path: Path) -> Path:
    if path.is_dir():
        raise CdrecError(f"{path}: is a directory, expected a data file")
    if not path.exists():
        raise CdrecError(f"{path}: file not found")
    if not os.access(path, os.R_OK):
        raise CdrecError(f"{path}: file is not readable (permission denied)")
    if path.stat().st_size == 0:
        raise CdrecError(f"{path}: file is empty (0 bytes)")
    return path


def _read_table(
    path: Path,
    names: Sequence[str],
    sep: str,
    *,
    encoding: str = "utf-8",
    numeric: Sequence[str] = (),
    header: int | None = None,
) -> pd.DataFrame:
    """Read a delimited file with fixed columns; check column count and numeric columns."""
    _need_file(path)
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            names=list(names) if header is None else None,
            header=header,
            engine="python" if len(sep) > 1 else "c",
            encoding=encoding,
            compression="infer",
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            index_col=False,
        )
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, lzma.LZMAError, gzip.BadGzipFile, OSError) as exc:
        raise CdrecError(f"{path}: cannot parse as {len(names)} columns separated by {sep!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    require(len(frame) > 0, f"{path}: no rows")
    missing = frame[names[-1]].isna() if header is None else None
    if missing is not None and missing.any():
        row = int(np.flatnonzero(missing.to_numpy())[0])
        raise CdrecError(f"{path}: row {row + 1} has fewer than {len(names)} fields separated by {sep!r}")
    for col in numeric:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise CdrecError(f"{path}: column {col!r} row {row + 1}: expected a number, got {frame[col].iloc[row]!r}")
        frame[col] = values
    return frame


# ---------------------------------------------------------------------------- MovieLens
def load_ml100k(root: str | os.PathLike | None = None) -> Interactions:
    """MovieLens-100K: ``u.data`` ratings, ``u.item`` genre lists, ``u.user`` profiles (943 x 1682, 100,000)."""
    base = data_dir(root) / "ml-100k"
    ratings = _read_table(base / "u.data", ["user", "item", "rating", "timestamp"], "\t", numeric=["user", "item", "rating", "timestamp"])
    items = _read_table(base / "u.item", ["item", "title", "release", "video", "url", *ML100K_GENRES], "|", encoding="latin-1", numeric=["item", *ML100K_GENRES])
    flags = items[ML100K_GENRES].to_numpy(dtype=np.int64) > 0
    genres = pd.Series([list(np.asarray(ML100K_GENRES)[row]) for row in flags])
    item_features = pd.DataFrame({"title": items["title"].to_numpy(), "genres": genres.to_numpy(), "first_genre": [g[0] if g else "unknown" for g in genres]}, index=pd.Index(items["item"].astype(np.int64)))
    users = _read_table(base / "u.user", ["user", "age", "gender", "occupation", "zip"], "|", numeric=["user", "age"])
    user_features = users.set_index(users["user"].astype(np.int64)).drop(columns="user")
    user_features["age"] = user_features["age"].astype(np.int64)
    ratings = ratings.astype({"user": np.int64, "item": np.int64})
    return Interactions.from_frame(
        ratings, domain_col=None, rating_col="rating", timestamp_col="timestamp",
        user_features=user_features, item_features=item_features, name="ml-100k", source=str(base / "u.data"),
    )


def load_ml1m(root: str | os.PathLike | None = None) -> Interactions:
    """MovieLens-1M: ``ratings.dat.xz``, ``movies.dat`` genres, ``users.dat`` (6,040 x 3,706, 1,000,209)."""
    base = data_dir(root) / "ml-1m"
    ratings_path = base / "ratings.dat.xz"
    if not ratings_path.exists() and (base / "ratings.dat").exists():
        ratings_path = base / "ratings.dat"
    ratings = _read_fast(ratings_path, ["user", "item", "rating", "timestamp"], "::")
    movies = _read_table(base / "movies.dat", ["item", "title", "genres"], "::", encoding="latin-1", numeric=["item"])
    genre_lists = movies["genres"].str.split("|")
    item_features = pd.DataFrame(
        {"title": movies["title"].to_numpy(), "genres": genre_lists.to_numpy(), "first_genre": genre_lists.str[0].to_numpy()},
        index=pd.Index(movies["item"].astype(np.int64)),
    )
    users = _read_table(base / "users.dat", ["user", "gender", "age", "occupation", "zip"], "::", numeric=["user", "age", "occupation"])
    user_features = users.set_index(users["user"].astype(np.int64)).drop(columns="user")
    user_features["age"] = user_features["age"].astype(np.int64)
    user_features["occupation"] = user_features["occupation"].astype(np.int64)
    return Interactions.from_frame(
        ratings, domain_col=None, rating_col="rating", timestamp_col="timestamp",
        user_features=user_features, item_features=item_features, name="ml-1m", source=str(ratings_path),
    )


def _read_fast(path: Path, names: list[str], sep: str) -> pd.DataFrame:
    """Read an all-integer file with a multi-character separator quickly (ML-1M ratings)."""
    _need_file(path)
    opener: Callable = lzma.open if path.suffix == ".xz" else gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="ascii") as handle:
            text = handle.read()
    except (OSError, EOFError, lzma.LZMAError, UnicodeDecodeError) as exc:
        raise CdrecError(f"{path}: cannot read ({type(exc).__name__})") from None
    rows = text.strip().count("\n") + 1
    try:
        flat = np.array(text.replace(sep, " ").split(), dtype=np.int64)
    except ValueError:
        raise CdrecError(f"{path}: expected integers separated by {sep!r}") from None
    require(flat.size == rows * len(names), f"{path}: expected {len(names)} fields separated by {sep!r} on every line")
    return pd.DataFrame(flat.reshape(rows, len(names)), columns=names)


# ---------------------------------------------------------------------------- Amazon CDSR (MERIT)
AMAZON_SETS = {"afk": ("Food", "Kitchen"), "abe": ("Beauty", "Electronics")}


def load_amazon_cdsr(name: str, root: str | os.PathLike | None = None) -> Interactions:
    """MERIT's Amazon mixed-domain sequences (``afk`` Food-Kitchen, ``abe`` Beauty-Electronics).

    Rows keep each user's file order (chronological; ties in day-resolution timestamps keep the file
    order), which :func:`cdrec.data.splits.leave_one_out` relies on via the ``seq`` column.
    """
    require(name in AMAZON_SETS, f"unknown Amazon set {name!r}; expected one of {sorted(AMAZON_SETS)}")
    base = data_dir(root) / "amazon-cdsr-merit" / name
    path = _need_file(base / f"{name}_50_preprocessed.txt.gz")
    item_map_path = _need_file(base / "map_item_50.txt.gz")
    try:
        with gzip.open(path, "rt") as handle:
            lines = handle.read().split("\n")
        with gzip.open(item_map_path, "rt") as handle:
            item_map = json.load(handle)
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CdrecError(f"{path}: cannot read ({type(exc).__name__})") from None
    lines = [ln for ln in lines if ln.strip()]
    tokens = [ln.split() for ln in lines]
    lengths = np.fromiter((len(t) - 1 for t in tokens), dtype=np.int64, count=len(tokens))
    users = np.repeat(np.array([t[0] for t in tokens]), lengths)
    events = np.array([e for t in tokens for e in t[1:]])
    pairs = np.char.partition(events.astype(str), "|")
    try:
        item = pairs[:, 0].astype(np.int64)
        ts = pairs[:, 2].astype(np.int64)
        users = users.astype(np.int64)
    except ValueError:
        raise CdrecError(f"{path}: expected lines 'user item|timestamp ...' of integers") from None
    n_a = sum(1 for v in item_map.values() if int(v[1]) == 0)
    seq = np.arange(len(item)) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # position within each user's line
    a, b = AMAZON_SETS[name]
    frame = pd.DataFrame({"user": users, "item": item, "domain": np.where(item <= n_a, a, b), "timestamp": ts, "seq": seq})
    inter = Interactions.from_frame(frame, timestamp_col="timestamp", domain_names=[a, b], name=name, source=str(path))
    inter.frame["seq"] = seq
    return inter


# ---------------------------------------------------------------------------- Douban
def load_douban(root: str | os.PathLike | None = None, domains: Sequence[str] = ("book", "music")) -> Interactions:
    """Douban Book and Music ratings (GA-DTCDR); user ids are shared across domains, items are not."""
    base = data_dir(root) / "douban-ga-dtcdr"
    parts = []
    for dom in domains:
        part = _read_table(base / f"douban_{dom}_ratings.dat.gz", ["user", "item", "rating"], "\t", numeric=["user", "item", "rating"])
        part["item"] = dom + ":" + part["item"].astype(np.int64).astype(str)
        part["domain"] = dom
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    frame["user"] = frame["user"].astype(np.int64)
    return Interactions.from_frame(frame, rating_col="rating", domain_names=list(domains), name="douban", source=str(base))


# ---------------------------------------------------------------------------- multi-domain multi-task samples
def load_mdmt_sample(which: str, root: str | os.PathLike | None = None) -> Interactions:
    """Small CTR samples: ``ml-1m`` (M3oE), ``douban`` (Scenario-Wise-Rec), ``kuairand``."""
    base = data_dir(root) / "mdmt-samples"
    if which == "ml-1m":
        path = _need_file(base / "ml-1m-sample_M3oE.csv")
        frame = _read_csv(path)
        frame["click"] = (frame["rating"] > 3).astype(np.float32)
        frame["like"] = (frame["rating"] > 4).astype(np.float32)
        feats = frame.drop_duplicates("user_id").set_index("user_id")[["gender", "age", "occupation", "zip"]]
        items = frame.drop_duplicates("movie_id").set_index("movie_id")[["title", "genres"]].copy()
        items["genres"] = items["genres"].str.split("|")
        items["first_genre"] = items["genres"].str[0]
        inter = Interactions.from_frame(frame, user_col="user_id", item_col="movie_id", domain_col=None, rating_col="rating", timestamp_col="timestamp", label_cols=["click", "like"], user_features=feats, item_features=items, items_by_domain=False, name="ml-1m-sample", source=str(path))
        from cdrec.data.domains import M3OE_AGE_BINS, by_user_bins

        return by_user_bins(inter, "age", M3OE_AGE_BINS)
    if which == "douban":
        path = _need_file(base / "douban_sample_ScenarioWiseRec.csv")
        frame = _read_csv(path)
        feats = frame.drop_duplicates("user_id").set_index("user_id")[["living_place", "join_time"]]
        return Interactions.from_frame(frame, user_col="user_id", item_col="item_id", domain_col="domain", label_cols=["rating"], user_features=feats, items_by_domain=False, name="douban-sample", source=str(path))
    if which == "kuairand":
        path = _need_file(base / "kuairand_sample_ScenarioWiseRec.csv")
        frame = _read_csv(path)
        user_cols = [c for c in frame.columns if c.startswith(("user_", "follow", "fans", "friend", "register", "is_", "onehot")) and c not in ("user_id", "is_click")]
        feats = frame.drop_duplicates("user_id").set_index("user_id")[user_cols]
        return Interactions.from_frame(frame, user_col="user_id", item_col="video_id", domain_col="tab", label_cols=["is_click"], user_features=feats, items_by_domain=False, name="kuairand-sample", source=str(path))
    raise CdrecError(f"unknown mdmt sample {which!r}; expected ml-1m, douban or kuairand")


def _read_csv(path: Path, sep: str = ",", id_columns: Sequence[str] = (), sep_origin: str | None = None) -> pd.DataFrame:
    """The file as a frame; ``id_columns`` are kept as written (:func:`_ids_as_written`). ``sep_origin``
    (a user's table: where ``sep`` came from, see :func:`table_separator`) puts ``data.sep`` in the error."""
    _need_file(path)
    try:
        frame = pd.read_csv(path, sep=sep, compression="infer", dtype={c: str for c in id_columns})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError, OSError, EOFError, lzma.LZMAError, gzip.BadGzipFile) as exc:
        how = "CSV" if sep_origin is None else f"fields separated by {sep!r} ({sep_origin}; data.sep sets the delimiter)"
        raise CdrecError(f"{path}: cannot parse as {how} ({_one_line(exc)})") from None
    for col in id_columns:
        if col in frame.columns:
            frame[col] = _ids_as_written(frame[col])
    return frame


def _ids_as_written(raw: pd.Series) -> pd.Series:
    """Id text as written in the file (``00034`` stays ``00034``); a column whose every id is a plain
    integer (no sign, no leading zero) becomes integers, which keeps their numeric order."""
    text = raw.astype(object)
    if text.isna().any() or not text.str.fullmatch(r"0|[1-9][0-9]{0,17}").all():
        return text
    return text.astype(np.int64)


def _one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (pandas puts the offending line number there)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1][:160]}" if text else type(exc).__name__


def _file_lines(path: Path, sep: str, user_column: int) -> Callable[[Sequence[int]], list[str]]:
    """Data row -> ``line N`` of a delimited file with a header (line 1), for messages. pandas skips
    blank lines, so the file is read again keeping them: every data row has a user id (in column
    position ``user_column``), a blank line has none. (A quoted field spanning lines counts as one.)"""

    def locate(rows: Sequence[int]) -> list[str]:
        users = pd.read_csv(path, sep=sep, usecols=[user_column], dtype=str, compression="infer", skip_blank_lines=False).iloc[:, 0]
        lines = np.flatnonzero(users.notna().to_numpy() & (users.str.strip() != "").to_numpy()) + 2
        return [f"line {lines[r]}" for r in rows]

    return locate


# ---------------------------------------------------------------------------- user files
def load_recbole(path: str | os.PathLike, *, domain_field: str | None = None, duplicates: str = "error") -> Interactions:
    """RecBole atomic files: ``NAME.inter`` (+ optional ``NAME.user`` / ``NAME.item``) with typed headers
    such as ``user_id:token item_id:token rating:float timestamp:float``. ``path`` is the ``.inter`` file
    or the folder holding it. ``duplicates`` resolves repeated (user, item, domain) pairs
    (:func:`~cdrec.data.filters.collapse_repeats`)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.inter"))
        require(len(found) == 1, f"{path}: expected exactly one .inter file in the folder, found {len(found)}")
        path = found[0]
    inter_frame = _read_atomic(path)
    for col in ("user_id", "item_id"):
        require(col in inter_frame.columns, f"{path}: missing field '{col}:token' in the header; found {list(inter_frame.columns)}")
    user_feats = item_feats = None
    if path.with_suffix(".user").exists():
        user_feats = _read_atomic(path.with_suffix(".user")).drop_duplicates("user_id").set_index("user_id")
    if path.with_suffix(".item").exists():
        item_feats = _read_atomic(path.with_suffix(".item")).drop_duplicates("item_id").set_index("item_id")
    inter = Interactions.from_frame(
        inter_frame, user_col="user_id", item_col="item_id", domain_col=domain_field,
        rating_col="rating" if "rating" in inter_frame.columns else None,
        timestamp_col="timestamp" if "timestamp" in inter_frame.columns else None,
        user_features=user_feats, item_features=item_feats, name=path.stem, source=str(path),
    )
    return collapse_repeats(inter, duplicates, source=str(path), locate=_file_lines(path, "\t", inter_frame.columns.get_loc("user_id")))


def _read_atomic(path: Path) -> pd.DataFrame:
    _need_file(path)
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, compression="infer")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError, OSError, EOFError, lzma.LZMAError, gzip.BadGzipFile) as exc:
        raise CdrecError(f"{path}: cannot parse as a RecBole atomic file ({_one_line(exc)})") from None
    fields = {}
    for col in frame.columns:
        name, _, kind = str(col).partition(":")
        require(kind in ("token", "float", "token_seq", "float_seq"), f"{path}: header field {col!r} must look like name:token or name:float")
        fields[col] = name
        if kind == "float":
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
            require(not frame[col].isna().any(), f"{path}: field {col!r} has non-numeric values")
    return frame.rename(columns=fields)


OPTIONAL_ROLES = ("domain", "rating", "timestamp")  # picked up by name when a table's mapping leaves them out
SNIFFED_DELIMITERS = ",\t;|"
TAB_SUFFIXES = (".tsv", ".tab")
_TEXT_OPENERS: dict[str, Callable] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _first_lines(path: Path, n: int = 20) -> str:
    """The first ``n`` lines of a text file, decompressed (``.gz``, ``.bz2``, ``.xz``, ``.zip``); empty
    when they cannot be read (reading the whole file then reports why)."""
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as archive, archive.open(archive.namelist()[0]) as raw:
                return "".join(itertools.islice(io.TextIOWrapper(raw, encoding="utf-8", errors="replace"), n))
        opener = _TEXT_OPENERS.get(path.suffix.lower(), open)
        with opener(path, "rt", encoding="utf-8", errors="replace") as text:
            return "".join(itertools.islice(text, n))
    except (OSError, EOFError, IndexError, lzma.LZMAError, zipfile.BadZipFile):
        return ""


def table_separator(path: Path, sep: str | None) -> tuple[str, str]:
    """The delimiter of a ``table`` text file and where it came from (for messages): ``data.sep`` when
    given (``\\t`` written as two characters means tab); tab for a ``.tsv`` / ``.tab`` file (also
    compressed, ``.tsv.gz``); else sniffed by :class:`csv.Sniffer` among comma, tab, semicolon and
    ``|`` on the first 20 lines; comma when the sniffer cannot tell."""
    if sep is not None:
        require(sep != "", "data.sep: empty delimiter (in --set, quote a YAML special character: --set 'data.sep=\"|\"')")
        return ("\t" if sep == "\\t" else sep), "data.sep"
    suffixes = [x.lower() for x in path.suffixes]
    if suffixes and (suffixes[-1] in _TEXT_OPENERS or suffixes[-1] == ".zip"):
        suffixes.pop()
    if suffixes and suffixes[-1] in TAB_SUFFIXES:
        return "\t", f"the {suffixes[-1]} suffix"
    try:
        return csv.Sniffer().sniff(_first_lines(path), delimiters=SNIFFED_DELIMITERS).delimiter, "sniffed from the first lines"
    except csv.Error:
        return ",", "the default"


def load_table(
    path: str | os.PathLike,
    *,
    columns: dict[str, str] | None = None,
    sep: str | None = None,
    name: str | None = None,
    duplicates: str = "error",
) -> Interactions:
    """A CSV / TSV (any compression) or Parquet file with a column mapping; ``sep`` None picks the
    delimiter by :func:`table_separator`.

    ``columns`` maps cdrec roles to the file's column names: ``user``, ``item`` (required),
    ``domain``, ``rating``, ``timestamp`` and ``labels`` (comma-separated list). A role left out of the
    mapping uses the column of its own name when the file has one (``user``, ``item``, ``domain``,
    ``rating``, ``timestamp``), so a file with those headers needs no mapping. ``duplicates`` resolves
    repeated (user, item, domain) pairs (:func:`~cdrec.data.filters.collapse_repeats`); its error names
    the file line of a CSV (the header is line 1) and the row of a Parquet file.
    """
    path = Path(path)
    _need_file(path)
    mapping = {"user": "user", "item": "item", **(columns or {})}
    unknown = set(mapping) - {"user", "item", "domain", "rating", "timestamp", "labels"}
    require(not unknown, f"column mapping has unknown roles {sorted(unknown)}; expected user, item, domain, rating, timestamp, labels")
    if path.suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise CdrecError(f"{path}: cannot read as Parquet ({type(exc).__name__})") from None
    else:
        sep, origin = table_separator(path, sep)
        frame = _read_csv(path, sep=sep, id_columns=(mapping["user"], mapping["item"]), sep_origin=origin)
        needed = [c for c in (mapping["user"], mapping["item"]) if c not in frame.columns]
        if len(frame.columns) == 1 and needed:
            raise CdrecError(f"{path}: read as one column {str(frame.columns[0])[:60]!r} with delimiter {sep!r} ({origin}), so "
                             f"column {needed[0]!r} is missing; set data.sep to the file's delimiter")
    mapping.update({role: role for role in OPTIONAL_ROLES if role not in mapping and role in frame.columns})
    labels = [c for c in mapping.get("labels", "").split(",") if c]
    repeated = sorted({c for c in labels if labels.count(c) > 1})
    if repeated:
        raise CdrecError(f"data.columns.labels: label column {repeated[0]!r} is listed twice")
    roles = {role: mapping[role] for role in ("user", "item", "domain", "timestamp") if role in mapping}
    for role, col in roles.items():
        other = [r for r, c in roles.items() if c == col and r != role] + (["labels"] if col in labels else [])
        if other:
            raise CdrecError(f"data.columns: roles {role!r} and {other[0]!r} both map to column {col!r}; give each role its own column")
    used = [mapping["user"], mapping["item"], mapping.get("domain"), mapping.get("rating"), mapping.get("timestamp")]
    require_columns(frame, [*used, *labels], str(path))
    inter = Interactions.from_frame(
        frame, user_col=mapping["user"], item_col=mapping["item"], domain_col=mapping.get("domain"),
        rating_col=mapping.get("rating"), timestamp_col=mapping.get("timestamp"), label_cols=labels,
        name=name or path.stem, source=str(path),
    )
    if path.suffix == ".parquet":
        return collapse_repeats(inter, duplicates, source=str(path))
    return collapse_repeats(inter, duplicates, source=str(path), locate=_file_lines(path, sep, frame.columns.get_loc(mapping["user"])))
