"""Typed run configuration, layered like RecBole but smaller:

package defaults (``cdrec/configs/defaults.yaml``) < model defaults (``cdrec/configs/models/<name>.yaml``)
< the user's YAML < ``--set key=value`` overrides (dotted keys, values parsed as YAML).
Unknown keys and wrong types raise :class:`~cdrec.errors.CdrecError` naming the key.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from cdrec.errors import CdrecError, require

CONFIG_DIR = Path(__file__).parent / "configs"


# ------------------------------------------------------------------------------ ranges
@dataclass(frozen=True)
class Range:
    """Allowed interval of a numeric field: ``lo``/``hi`` bounds (None: unbounded), open or closed."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, value: float) -> bool:
        if value != value:  # NaN is never in range
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            return False
        return True

    def __str__(self) -> str:
        def num(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else f"{x:g}"

        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{num(self.lo)}, {num(self.hi)}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {num(self.lo)}"
        return f"{'<' if self.hi_open else '<='} {num(self.hi)}"


def bounded(default: Any = dataclasses.MISSING, lo: float | None = None, hi: float | None = None, *,
            lo_open: bool = False, hi_open: bool = False, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field checked against ``[lo, hi]`` (open ends with ``lo_open``/``hi_open``) by
    :func:`build_dataclass` (the message names the config key) and by :func:`check_ranges` (call it
    from ``__post_init__`` to guard direct construction too). ``None`` values are not checked; list
    values (give them a ``default_factory``) are checked element-wise.
    Example: ``mask_ratio: float = bounded(0.3, 0, 1)``."""
    return field(default=default, default_factory=default_factory, metadata={"range": Range(lo, hi, lo_open, hi_open)})


def config_key(where: str, name: str) -> str:
    """The config key a message names: ``train`` + ``lr`` -> ``train.lr``; a qualifier in parentheses
    stays last (``model_params (mmoe)`` + ``n_experts`` -> ``model_params.n_experts (mmoe)``)."""
    if where == "config":
        return name
    base, paren, qualifier = where.partition(" (")
    return f"{base}.{name}" + (f" ({qualifier}" if paren else "")


def _check_range_values(cls: type, values: dict[str, Any], where: str) -> None:
    for f in dataclasses.fields(cls):
        rng = f.metadata.get("range")
        if rng is None or f.name not in values or values[f.name] is None:
            continue
        value = values[f.name]
        items = value if isinstance(value, (list, tuple)) else [value]
        for v in items:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and rng.contains(float(v))
            if not ok:
                raise CdrecError(f"{config_key(where, f.name)}: expected a number {rng}, got {v!r}")


def check_ranges(obj: Any, where: str | None = None) -> None:
    """Raise :class:`CdrecError` when a :func:`bounded` field of dataclass ``obj`` is out of range."""
    _check_range_values(type(obj), {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, where or type(obj).__name__)


@dataclass
class ModelParams:
    """Base of every model's params dataclass: its :func:`bounded` fields are checked whenever one is
    built, from a config or directly (``MMoEParams(n_experts=0)`` raises naming ``model_params.n_experts``)."""

    def __post_init__(self) -> None:
        check_ranges(self, "model_params")


@dataclass
class DataConfig:
    """Which data to load and how to shape it into domains."""

    name: str = "synthetic"
    data_dir: str | None = None
    path: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    sep: str | None = None
    """The delimiter of a ``table`` text file; unset: tab for ``.tsv`` / ``.tab``, else sniffed from the
    first lines (:func:`cdrec.data.loaders.table_separator`)."""
    duplicates: str = "error"
    """A (user, item, domain) pair in several rows: ``error`` | ``first`` | ``last`` | ``mean``
    (:func:`cdrec.data.filters.collapse_repeats`)."""
    domains: str | None = None
    keep_domains: list[str] | None = None
    min_rating: float | None = None
    kcore: int = bounded(0, 0)
    overlap_only: bool = False
    synthetic: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """A relative ``path`` / ``data_dir`` (or one under ``~``) is made absolute against the working
        folder, so the run folder's ``config.yaml`` finds the data from anywhere (``cdrec evaluate``)."""
        for key in ("path", "data_dir"):
            value = getattr(self, key)
            if isinstance(value, str) and value:
                setattr(self, key, str(Path(value).expanduser().absolute()))


@dataclass
class SplitConfig:
    """How to split and which candidates to rank."""

    protocol: str = "loo"
    ratios: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    order: str = "random"
    n_negatives: int = bounded(99, 1)
    full_ranking: bool = False


@dataclass
class TrainConfig:
    """The trainer's loop, optimizer, early stopping and device."""

    epochs: int = bounded(50, 0)
    batch_size: int = bounded(2048, 1)
    lr: float = bounded(1e-3, 0, lo_open=True)
    weight_decay: float = bounded(0.0, 0)
    optimizer: str = "adam"
    patience: int = bounded(5, 0)
    metric: str = "MRR@10"
    device: str = "auto"
    progress: bool = True
    max_batches: int | None = bounded(None, 1)
    logger: str = "none"
    """``tensorboard``: per-epoch training loss and validation metrics under ``<run>/tensorboard/`` (the extra ``cdrec[tensorboard]``)."""


@dataclass
class EvalConfig:
    """Cut-offs, activity buckets and evaluation batch size (rows per batch; unset: 4,096 users for the
    CF tasks, ``train.batch_size`` sequences for the sequential task, whose forward pass is what costs
    memory: MERIT at d = 256 peaks at 9.1 GB with 4,096 rows per batch and 3.2 GB with 256)."""

    ks: list[int] = field(default_factory=lambda: [5, 10], metadata={"range": Range(0, lo_open=True)})
    buckets: list[int] = field(default_factory=lambda: [2, 5, 20])
    batch_size: int | None = bounded(None, 1)
    test: bool = True
    """Evaluate the test split at the end of the run; ``false`` (``cdrec tune``'s trials) leaves ``metrics`` empty and
    keeps only the validation metrics, so model selection never reads the test split (``cdrec evaluate`` can score it later)."""


@dataclass
class RunConfig:
    """Everything one run needs; ``setting`` names what distinguishes runs of one model."""

    model: str = "bprmf"
    scope: str = "joint"
    seed: int = bounded(0, 0, 2**32 - 1)
    model_params: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    setting: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------ building


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """Coerce ``value`` to ``hint`` where safe (int -> float), else raise naming ``where``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, where)
            except CdrecError as exc:
                errors.append(str(exc))
        raise CdrecError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(hint):
        require(isinstance(value, dict), f"{where}: expected a mapping, got {type(value).__name__}")
        return build_dataclass(hint, value, where=where)
    if origin in (list, Sequence, tuple):
        require(isinstance(value, (list, tuple)), f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return [_check_type(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        require(isinstance(value, dict), f"{where}: expected a mapping, got {value!r}")
        inner = args[1] if len(args) == 2 else Any
        return {str(k): _check_type(v, inner, f"{where}.{k}") for k, v in value.items()}
    if hint is bool:
        require(isinstance(value, bool), f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        require(isinstance(value, int) and not isinstance(value, bool), f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
            return float(value)
        require(isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        require(isinstance(value, str), f"{where}: expected a string, got {value!r}")
        return value
    return value


_YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
"""Exponent numbers that YAML 1.1 (PyYAML) reads as strings: ``1e-5``, ``3E4``."""


def build_dataclass(cls: type, values: dict[str, Any], *, where: str = "config") -> Any:
    """Instantiate dataclass ``cls`` from ``values``, checking keys and types."""
    require(isinstance(values, dict), f"{where}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise CdrecError(f"{where}: unknown key {unknown[0]!r}; expected one of {sorted(names)}")
    kwargs = {k: _check_type(v, hints[k], config_key(where, k)) for k, v in values.items()}
    _check_range_values(cls, kwargs, where)
    return cls(**kwargs)


class _RoleOverrides(dict):
    """``data.columns`` roles set one by one (``--set data.columns.rating=stars``): merged into the
    mapping below, where a whole mapping (a YAML file's, ``--set data.columns={...}``) replaces it."""


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and (key != "columns" or isinstance(value, _RoleOverrides)):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise CdrecError(f"{path}: is a directory, expected a YAML config file")
    if not path.exists():
        raise CdrecError(f"{path}: config file not found")
    try:
        loaded = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CdrecError(f"{path}: not valid YAML ({type(exc).__name__})") from None
    except OSError as exc:
        raise CdrecError(f"{path}: cannot read ({exc.strerror})") from None
    if loaded is None:
        return {}
    require(isinstance(loaded, dict), f"{path}: expected a YAML mapping at the top level")
    return loaded


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["train.lr=0.01", "model=uclr"]`` -> nested dict; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for pair in pairs:
        require("=" in pair, f"--set {pair!r}: expected key=value")
        key, raw = pair.split("=", 1)
        require(key.strip() != "", f"--set {pair!r}: empty key")
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, _RoleOverrides() if part == "columns" else {})
            require(isinstance(node, dict), f"--set {pair!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return out


def model_defaults(model: str) -> dict[str, Any]:
    path = CONFIG_DIR / "models" / f"{model}.yaml"
    return read_yaml(path) if path.exists() else {}


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (), base: dict[str, Any] | None = None) -> RunConfig:
    """Layer defaults < model YAML < user YAML (or ``base``) < overrides into a :class:`RunConfig`."""
    user = read_yaml(path) if path is not None else {}
    if base:
        user = _deep_merge(base, user)
    sets = parse_overrides(overrides)
    merged_user = _deep_merge(user, sets)
    model = merged_user.get("model", RunConfig.model)
    require(isinstance(model, str), f"model: expected a model name, got {model!r}")
    layered = _deep_merge(read_yaml(CONFIG_DIR / "defaults.yaml"), model_defaults(model))
    try:
        cfg = build_dataclass(RunConfig, _deep_merge(layered, merged_user))
    except CdrecError as exc:
        if path is not None and _fails_with(lambda: build_dataclass(RunConfig, _deep_merge(layered, user)), str(exc)):
            raise CdrecError(f"{path}: {exc}") from None  # the mistake is in the file, not in an override
        raise
    validate(cfg)
    return cfg


def _fails_with(build: Callable[[], Any], message: str) -> bool:
    """Whether ``build`` raises the same :class:`CdrecError` message."""
    try:
        build()
    except CdrecError as exc:
        return str(exc) == message
    return False


def validate(cfg: RunConfig) -> None:
    """Cross-field checks that dataclass types cannot express."""
    from cdrec.models import registry

    registry.build_params(cfg.model, cfg.model_params)
    require(cfg.scope in ("joint", "single"), f"scope: expected 'joint' or 'single', got {cfg.scope!r}")
    require(cfg.split.protocol in ("loo", "loo-mixed", "ratio"), f"split.protocol: expected loo, loo-mixed or ratio, got {cfg.split.protocol!r}")
    require(cfg.split.n_negatives >= 1, f"split.n_negatives: expected >= 1, got {cfg.split.n_negatives}")
    require(cfg.train.epochs >= 0, f"train.epochs: expected >= 0, got {cfg.train.epochs}")
    require(cfg.train.batch_size >= 1, f"train.batch_size: expected >= 1, got {cfg.train.batch_size}")
    require(cfg.train.lr > 0, f"train.lr: expected > 0, got {cfg.train.lr}")
    require(cfg.train.patience >= 0, f"train.patience: expected >= 0, got {cfg.train.patience}")
    require(cfg.train.device in ("auto", "cpu", "cuda"), f"train.device: expected auto, cpu or cuda, got {cfg.train.device!r}")
    require(cfg.train.logger in ("none", "tensorboard"), f"train.logger: expected none or tensorboard, got {cfg.train.logger!r}")
    if cfg.train.logger == "tensorboard":
        from cdrec.train.logger import require_tensorboard

        require_tensorboard()
    require(cfg.train.optimizer in ("adam", "adamw", "sgd"), f"train.optimizer: expected adam, adamw or sgd, got {cfg.train.optimizer!r}")
    from cdrec.data.filters import DUPLICATE_POLICIES
    from cdrec.data.splits import SPLIT_ORDERS

    require(cfg.data.duplicates in DUPLICATE_POLICIES, f"data.duplicates: expected one of {', '.join(DUPLICATE_POLICIES)}, got {cfg.data.duplicates!r}")
    require(cfg.split.order in SPLIT_ORDERS, f"split.order: expected one of {', '.join(SPLIT_ORDERS)}, got {cfg.split.order!r}")
    ratios = list(cfg.split.ratios)
    require(
        len(ratios) in (2, 3) and all(r >= 0 for r in ratios) and abs(sum(ratios) - 1) < 1e-6,
        f"split.ratios: expected 2 or 3 non-negative numbers summing to 1, got {ratios}",
    )
    require(all(k > 0 for k in cfg.eval.ks), f"eval.ks: every k must be > 0, got {cfg.eval.ks}")
    require(len(cfg.eval.buckets) > 0 and list(cfg.eval.buckets) == sorted(cfg.eval.buckets), f"eval.buckets: expected increasing edges, got {cfg.eval.buckets}")


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


RESUME_FREE_KEYS = {("train", "device"), ("train", "progress"), ("train", "logger"), ("model_params", "pge_cache")}
"""Config keys that may change between a killed run and its ``--resume`` (UCLR's ``pge_cache`` moves
no metric: a cache is used only when its key, the data and PGE settings, matches)."""


def resume_view(config: dict) -> dict:
    """The keys that must agree between a run and its ``--resume``: all but :data:`RESUME_FREE_KEYS`, and
    ``data.sep`` only where a table file is read (run folders written before it was sniffed record ``','``)."""
    view = {k: ({kk: vv for kk, vv in v.items() if (k, kk) not in RESUME_FREE_KEYS} if isinstance(v, dict) else v) for k, v in config.items()}
    if isinstance(view.get("data"), dict) and view["data"].get("name") != "table":
        view["data"].pop("sep", None)
    return view


def differing_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts."""
    out = []
    for key in sorted(set(a) | set(b), key=str):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += differing_keys(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(f"{prefix}{key}")
    return out


def require_choice(params: Any, name: str, choices: Sequence[str]) -> None:
    """Refuse a ``model_params`` option whose value is not one of ``choices``, naming the option."""
    value = getattr(params, name)
    require(value in choices, f"model_params.{name}: expected one of {choices}, got {value!r}")
