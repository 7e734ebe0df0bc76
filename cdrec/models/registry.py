"""One registry: every model is found by name (``cdrec.models.registry.get("bprmf")``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from cdrec.errors import CdrecError


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its class, family, the typed params dataclass it accepts and the number
    of domains it can learn from (``min_domains`` > 1: cross-domain by design)."""

    name: str
    family: str
    cls: type
    params: type
    min_domains: int = 1
    max_domains: int | None = None
    needs: str = ""
    """Why the model needs that many domains (ends the refusal's message)."""

    def require_domains(self, n_domains: int | None = None, *, scope: str = "joint", dataset: str = "the data") -> None:
        """Refuse data with fewer (or more) domains than the model can learn from, and ``scope: single``
        (one model per domain, each seeing one) for a model that is cross-domain by design."""
        lo, hi = self.min_domains, self.max_domains
        need = f"exactly {lo}" if lo == hi else f"at least {lo}" if hi is None else f"{lo} to {hi}"
        why = f" ({self.needs})" if self.needs else ""
        if scope == "single" and lo > 1:
            raise CdrecError(f"scope: single trains one {self.name} per domain, but {self.name} is cross-domain by design and needs {need} domains{why}; use scope: joint")
        if n_domains is not None and n_domains < lo:
            raise CdrecError(f"model {self.name}: needs {need} domains{why}, got {n_domains} in {dataset}; "
                             "the data's domain column or a data.domains builder makes them")
        if n_domains is not None and hi is not None and n_domains > hi:
            raise CdrecError(f"model {self.name}: needs {need} domains{why}, got {n_domains} in {dataset}; pick them with data.keep_domains")


_MODELS: dict[str, ModelEntry] = {}


def register(
    name: str, family: str, params: type, *, min_domains: int = 1, max_domains: int | None = None, needs: str = ""
) -> Callable[[type], type]:
    """Class decorator: ``@register("bprmf", family="cf", params=BPRMFParams)``; a cross-domain model
    declares the domains it needs (``min_domains=2, needs="..."``) and every run is checked against it
    (:meth:`ModelEntry.require_domains`)."""

    def wrap(cls: type) -> type:
        if name in _MODELS and _MODELS[name].cls is not cls:
            raise ValueError(f"model name {name!r} registered twice")
        _MODELS[name] = ModelEntry(name, family, cls, params, min_domains, max_domains, needs)
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
    """Typed params for model ``name`` from a dict; unknown keys or wrong types raise CdrecError. A params
    class with a static ``migrate(values)`` first maps keys that saved run folders still hold to their new names."""
    from cdrec.config import build_dataclass

    params = get(name).params
    migrate = getattr(params, "migrate", None)
    return build_dataclass(params, migrate(values) if migrate else values, where=f"model_params ({name})")
