"""Typed run configuration, layered like RecBole but smaller:

package defaults (``cdrec/configs/defaults.yaml``) < model defaults (``cdrec/configs/models/<name>.yaml``)
< the user's YAML < ``--set key=value`` overrides (dotted keys, values parsed as YAML).
Unknown keys and wrong types raise :class:`~cdrec.errors.CdrecError` naming the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from cdrec.errors import CdrecError, require

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class DataConfig:
    """Which data to load and how to shape it into domains."""

    name: str = "synthetic"
    data_dir: str | None = None
    path: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    domains: str | None = None
    keep_domains: list[str] | None = None
    min_rating: float | None = None
    kcore: int = 0
    overlap_only: bool = False
    synthetic: dict[str, Any] = field(default_factory=dict)


@dataclass
class SplitConfig:
    """How to split and which candidates to rank."""

    protocol: str = "loo"
    ratios: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    order: str = "random"
    n_negatives: int = 99
    full_ranking: bool = False


@dataclass
class TrainConfig:
    """The trainer's loop, optimizer, early stopping and device."""

    epochs: int = 50
    batch_size: int = 2048
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    patience: int = 5
    metric: str = "MRR@10"
    device: str = "auto"
    progress: bool = True
    max_batches: int | None = None


@dataclass
class EvalConfig:
    """Cut-offs, activity buckets and evaluation batch size."""

    ks: list[int] = field(default_factory=lambda: [5, 10])
    buckets: list[int] = field(default_factory=lambda: [2, 5, 20])
    batch_size: int = 4096


@dataclass
class RunConfig:
    """Everything one run needs; ``setting`` names what distinguishes runs of one model."""

    model: str = "bprmf"
    scope: str = "joint"
    seed: int = 0
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
        require(isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        require(isinstance(value, str), f"{where}: expected a string, got {value!r}")
        return value
    return value


def build_dataclass(cls: type, values: dict[str, Any], *, where: str = "config") -> Any:
    """Instantiate dataclass ``cls`` from ``values``, checking keys and types."""
    require(isinstance(values, dict), f"{where}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise CdrecError(f"{where}: unknown key {unknown[0]!r}; expected one of {sorted(names)}")
    kwargs = {k: _check_type(v, hints[k], f"{where}.{k}" if where != "config" else k) for k, v in values.items()}
    return cls(**kwargs)


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "columns":
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
            node = node.setdefault(part, {})
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
    cfg = build_dataclass(RunConfig, _deep_merge(layered, merged_user))
    validate(cfg)
    return cfg


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
    require(all(k > 0 for k in cfg.eval.ks), f"eval.ks: every k must be > 0, got {cfg.eval.ks}")
    require(len(cfg.eval.buckets) > 0 and list(cfg.eval.buckets) == sorted(cfg.eval.buckets), f"eval.buckets: expected increasing edges, got {cfg.eval.buckets}")


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
