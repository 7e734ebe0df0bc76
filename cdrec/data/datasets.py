"""Datasets by name: a loader, then domain builder, then filters, as a :class:`DataConfig` says."""

from __future__ import annotations

from typing import Callable

import numpy as np

from cdrec.config import DataConfig
from cdrec.data import domains as dom
from cdrec.data import filters, loaders
from cdrec.data.interactions import Interactions
from cdrec.data.synthetic import SyntheticConfig, make_synthetic
from cdrec.errors import CdrecError, require


def _synthetic(cfg: DataConfig, seed: int) -> Interactions:
    from cdrec.config import build_dataclass

    params = build_dataclass(SyntheticConfig, {"seed": seed, **cfg.synthetic}, where="data.synthetic")
    return make_synthetic(params)


def _needs_path(kind: str, fn: Callable[[DataConfig], Interactions]) -> Callable[[DataConfig, int], Interactions]:
    def load(cfg: DataConfig, seed: int) -> Interactions:
        require(cfg.path is not None, f"data.path: the {kind!r} dataset needs a file path")
        return fn(cfg)

    return load


LOADERS: dict[str, Callable[[DataConfig, int], Interactions]] = {
    "synthetic": _synthetic,
    "ml-100k": lambda c, s: loaders.load_ml100k(c.data_dir),
    "ml-1m": lambda c, s: loaders.load_ml1m(c.data_dir),
    "afk": lambda c, s: loaders.load_amazon_cdsr("afk", c.data_dir),
    "abe": lambda c, s: loaders.load_amazon_cdsr("abe", c.data_dir),
    "douban": lambda c, s: loaders.load_douban(c.data_dir),
    "mdmt-ml-1m": lambda c, s: loaders.load_mdmt_sample("ml-1m", c.data_dir),
    "mdmt-douban": lambda c, s: loaders.load_mdmt_sample("douban", c.data_dir),
    "mdmt-kuairand": lambda c, s: loaders.load_mdmt_sample("kuairand", c.data_dir),
    "recbole": _needs_path("recbole", lambda c: loaders.load_recbole(c.path, domain_field=c.columns.get("domain"), duplicates=c.duplicates)),
    "table": _needs_path("table", lambda c: loaders.load_table(c.path, columns=c.columns, sep=c.sep, duplicates=c.duplicates)),
}
ALIASES = {"amazon-afk": "afk", "amazon-abe": "abe", "ml100k": "ml-100k", "ml1m": "ml-1m"}

DOMAIN_SPECS = "genre | genre-random | uniform-items:K | uniform-users:K | age-bins | age-edges:A,B,..."


def build_domains(inter: Interactions, spec: str | None, *, seed: int = 0, keep: list[str] | None = None) -> Interactions:
    """Apply a domain builder named by ``spec`` (see :data:`DOMAIN_SPECS`), then keep only the domains
    ``keep`` names (the genre builders pick each item's genre first and drop the items whose genre is
    not kept)."""
    kind = (spec or "").partition(":")[0]
    if kind in ("genre", "genre-first", "genre-random"):
        return dom.by_item_attribute(inter, "genres", choice="random" if kind == "genre-random" else "first", seed=seed, keep=keep)
    built = _build_domains(inter, spec, seed=seed)
    if not keep:
        return built
    unknown = [k for k in keep if k not in built.domains]
    if unknown:
        raise CdrecError(f"data.keep_domains: unknown domain {unknown[0]!r}; expected some of {built.domains}")
    rows = np.flatnonzero(np.isin(built.domain, [built.domains.index(k) for k in keep]))
    return dom.reassign_domains(built.subset(rows), built.domain[rows], built.domains, items_by_domain=built.items_by_domain)


def _build_domains(inter: Interactions, spec: str | None, *, seed: int) -> Interactions:
    if spec in (None, "", "none", "as-loaded"):
        return inter
    kind, _, arg = spec.partition(":")
    if kind in ("uniform-items", "uniform-users"):
        try:
            k = int(arg)
        except ValueError:
            raise CdrecError(f"data.domains: {spec!r} needs a number of domains, e.g. {kind}:8") from None
        if k < 1:
            raise CdrecError(f"data.domains: {spec!r} asks for {k} domains; expected 1 or more, e.g. {kind}:8")
        return (dom.uniform_items if kind == "uniform-items" else dom.uniform_users)(inter, k, seed=seed)
    if kind == "age-bins":
        return dom.by_user_bins(inter, "age", dom.M3OE_AGE_BINS)
    if kind == "age-edges":
        try:
            edges = [float(x) for x in arg.split(",")]
        except ValueError:
            raise CdrecError(f"data.domains: {spec!r} needs numeric edges, e.g. age-edges:25,35") from None
        return dom.by_user_bins(inter, "age", edges=edges)
    raise CdrecError(f"data.domains: unknown domain builder {spec!r}; expected {DOMAIN_SPECS}")


def load_dataset(cfg: DataConfig, seed: int = 0) -> Interactions:
    """Load ``cfg.name``, resolve repeated (user, item, domain) pairs by ``cfg.duplicates``, then apply
    threshold, domains, k-core and overlap filters in that order. The ``table`` and ``recbole`` loaders
    resolve repeats themselves (an error names the file line); the built-in sets have none, so the
    check below leaves them as they are."""
    name = ALIASES.get(cfg.name, cfg.name)
    if name not in LOADERS:
        raise CdrecError(f"data.name: unknown dataset {cfg.name!r}; expected one of {sorted(LOADERS)}")
    inter = filters.collapse_repeats(LOADERS[name](cfg, seed), cfg.duplicates)
    if cfg.min_rating is not None:
        inter = filters.rating_threshold(inter, cfg.min_rating)
    inter = build_domains(inter, cfg.domains, seed=seed, keep=cfg.keep_domains)
    if cfg.kcore > 0:
        inter = filters.kcore(inter, cfg.kcore)
    if cfg.overlap_only:
        inter = filters.overlapping_users(inter)
    empty = [d for d, s in inter.stats()["domains"].items() if s["interactions"] == 0]
    if empty:
        raise CdrecError(f"{inter.name}: domain {empty[0]!r} has no interactions after filtering")
    return inter
