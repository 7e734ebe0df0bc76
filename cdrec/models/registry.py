"""One registry: every model is found by name (``cdrec.models.registry.get("bprmf")``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from cdrec.errors import CdrecError


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its class, family and the typed params dataclass it accepts."""

    name: str
    family: str
    cls: type
    params: type


_MODELS: dict[str, ModelEntry] = {}


def register(name: str, family: str, params: type) -> Callable[[type], type]:
    """Class decorator: ``@register("bprmf", family="cf", params=BPRMFParams)``."""

    def wrap(cls: type) -> type:
        if name in _MODELS and _MODELS[name].cls is not cls:
            raise ValueError(f"model name {name!r} registered twice")
        _MODELS[name] = ModelEntry(name, family, cls, params)
        cls.registry_name = name
        return cls

    return wrap


def _load_builtin() -> None:
    import cdrec.models  # noqa: F401  (imports every family, which registers its models)


def get(name: str) -> ModelEntry:
    _load_builtin()
    if name not in _MODELS:
        raise CdrecError(f"unknown model {name!r}; expected one of: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def names(family: str | None = None) -> list[str]:
    _load_builtin()
    return sorted(n for n, e in _MODELS.items() if family is None or e.family == family)


def entries() -> dict[str, ModelEntry]:
    _load_builtin()
    return dict(_MODELS)


def build_params(name: str, values: dict[str, Any]) -> Any:
    """Typed params for model ``name`` from a dict; unknown keys or wrong types raise CdrecError."""
    from cdrec.config import build_dataclass

    return build_dataclass(get(name).params, values, where=f"model_params ({name})")
