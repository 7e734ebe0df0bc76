"""One organization's private data directory: what a SuperNode loads from its ``data-path``.

``write_federation`` is the *data owner's* step of a simulation (split one dataset into K
organizations, as ``cdrec run`` does in-process); in a real deployment every organization produces
its own directory. A directory holds ``org.npz`` (its rating entries per part, the row ids it may
align on, its side information) and ``org.json`` (name, sizes, feedback and its local MTAL / AAE
settings). Nothing in it is about another organization. Needs no Flower.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cdrec.errors import CdrecError, require
from cdrec.federated.alignment import Entries, Federation, OrgHoldings
from cdrec.federated.organization import MTALConfig, Organization
from cdrec.models.assisted.aae import AAEParams
from cdrec.results.schema import atomic_write_text
from cdrec.results.schema import atomic_path

if TYPE_CHECKING:
    from cdrec.config import RunConfig

PARTS = ("train", "valid", "test")
FIELDS = ("rows", "cols", "y", "users", "items")


def safe_dirname(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def save_holdings(h: OrgHoldings, out: Path, *, feedback: str, alignment: str, mtal: MTALConfig) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    arrays = {f"{p}.{f}": getattr(getattr(h, p), f) for p in PARTS for f in FIELDS}
    arrays["shareable"] = h.shareable
    arrays["col_ids"] = h.col_ids
    if h.row_side is not None:
        arrays["row_side"] = h.row_side
    if h.col_side is not None:
        arrays["col_side"] = h.col_side
    with atomic_path(out / "org.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    meta = {"name": h.name, "n_rows": int(h.n_rows), "n_cols": int(h.n_cols), "feedback": feedback, "alignment": alignment,
            "mtal": dataclasses.asdict(mtal)}
    atomic_write_text(out / "org.json", json.dumps(meta, indent=2))
    return out


def write_federation(fed: Federation, mtal: MTALConfig, out: Path) -> dict[str, Path]:
    """One directory per organization under ``out`` (``out/<name>/``) plus ``out/federation.json``
    (the roster the operator needs to start the SuperNodes). Returns name -> directory."""
    dirs = {}
    for h in fed.orgs:
        dirs[h.name] = save_holdings(h, out / safe_dirname(h.name), feedback=fed.feedback, alignment=fed.alignment, mtal=mtal)
    atomic_write_text(out / "federation.json", json.dumps(
        {"organizations": {n: str(d.resolve()) for n, d in dirs.items()}, "alignment": fed.alignment, "feedback": fed.feedback}, indent=2))
    return dirs


def load_holdings(path: str | Path) -> tuple[OrgHoldings, dict]:
    """An organization's holdings and ``org.json`` from its own directory (CdrecError when missing)."""
    path = Path(path)
    require((path / "org.json").is_file() and (path / "org.npz").is_file(),
            f"{path}: not an organization directory (expected org.json and org.npz; create one with `cdrec federated split`)")
    meta = json.loads((path / "org.json").read_text())
    with np.load(path / "org.npz") as z:
        parts = {p: Entries(*(z[f"{p}.{f}"] for f in FIELDS)) for p in PARTS}
        h = OrgHoldings(name=meta["name"], n_rows=meta["n_rows"], n_cols=meta["n_cols"], col_ids=z["col_ids"],
                        shareable=z["shareable"], row_side=z["row_side"] if "row_side" in z else None,
                        col_side=z["col_side"] if "col_side" in z else None, **parts)
    return h, meta


def mtal_config(meta: dict) -> MTALConfig:
    raw = dict(meta["mtal"])
    try:
        raw["model"] = AAEParams(**raw["model"])
        return dataclasses.replace(MTALConfig(**raw), feedback=meta["feedback"])
    except TypeError as e:
        raise CdrecError(f"org.json of {meta.get('name')!r}: bad mtal settings ({e})") from e


def organization_from_dir(path: str | Path, roster: list[str]) -> Organization:
    """Build an organization from its own directory; ``roster`` names every member of the federation
    (as :func:`cdrec.federated.mtal.build_organizations` does in-process)."""
    h, meta = load_holdings(path)
    require(h.name in roster, f"{path}: organization {h.name!r} is not in the federation's roster {roster}")
    return Organization(h, roster, mtal_config(meta))


def federation_from_config(cfg: RunConfig, device: str = "cpu") -> tuple[Federation, MTALConfig]:
    """The federation and MTAL settings a ``cdrec run`` of ``cfg`` (model ``aae``, ``setting.mode=mtal``)
    would use: the same split (:meth:`cdrec.federated.task.MTALTask.prepare`) and the same
    :class:`MTALConfig` as :meth:`~cdrec.federated.task.MTALTask.execute` builds."""
    from cdrec.federated.task import MTALTask, mtal_config_of
    from cdrec.models import registry

    require(cfg.model == "aae", f"model: the federation runs MTAL with model aae, got {cfg.model!r}")
    prepared = MTALTask().prepare(cfg)
    registry.get(cfg.model).require_domains(prepared.data.n_domains, dataset=prepared.data.name)
    s = prepared.setting
    require(s.mode == "mtal", f"setting.mode: the federation runs mtal, got {s.mode!r}")
    require(s.base == "mean", "setting.base: the deployed federation runs the papers' F0 (mean); with zero, round 1 would send each organization's ratings (2 x rating) to its peers")
    require(s.backbone == "aae", f"setting.backbone={s.backbone}: the deployed federation (Flower) runs the AAE local model only; "
            "other backbones run in process (`cdrec run`)")
    return prepared.fed, mtal_config_of(s, prepared.params, cfg, device)
