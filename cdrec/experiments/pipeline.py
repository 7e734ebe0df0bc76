"""``cdrec run``: config -> task.prepare (checks, no output) -> run dir -> task.execute -> results.

A paper recipe is data (which datasets, models, settings, seeds) and runs through this same path.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from cdrec.config import RunConfig, differing_keys, dump_config, load_config, resume_view
from cdrec.errors import CdrecError, require
from cdrec.models import registry
from cdrec.results.schema import RunResult, atomic_write_text, require_model_file, write_result
from cdrec.train import distributed as dist_
from cdrec.train.logger import logging_to
from cdrec.train.tasks import task_for

def resolved(cfg: RunConfig) -> RunConfig:
    """``cfg`` with ``model_params`` spelled out: every field of the model's parameters, defaults
    included, so ``config.yaml`` and ``results.json`` record what the run used."""
    params = registry.build_params(cfg.model, cfg.model_params)
    return dataclasses.replace(cfg, model_params=dataclasses.asdict(params))


def config_changes(cfg: RunConfig, run_dir: Path) -> list[str]:
    """Dotted keys (besides :data:`RESUME_FREE_KEYS`) where ``cfg`` differs from the ``config.yaml`` a
    started run in ``run_dir`` saved; empty when they agree or nothing was saved."""
    saved = run_dir / "config.yaml"
    if not saved.exists():
        return []
    return differing_keys(resume_view(resolved(load_config(saved)).to_dict()), resume_view(resolved(cfg).to_dict()))


def run_config(cfg: RunConfig, out_dir: str | Path, *, resume: bool = False, prepared: Any = None) -> RunResult:
    """Train and evaluate one config, writing ``config.yaml``, ``results.json`` and ``results.md``
    into ``out_dir``. Nothing is written when the config or data are wrong.

    Under ``torchrun`` every rank runs this (joining the process group first); only rank 0 writes.
    """
    from cdrec.train.trainer import resolve_device

    out_dir = Path(out_dir)
    require(not out_dir.is_file(), f"--out {out_dir}: is a file, expected a directory")
    cfg = resolved(cfg)
    dist_.init_from_env(resolve_device(cfg.train.device).type)
    task = task_for(cfg.model)
    if prepared is None:
        prepared = task.prepare(cfg)
    registry.get(cfg.model).require_domains(prepared.data.n_domains, scope=cfg.scope, dataset=prepared.data.name)
    if resume:
        require(out_dir.is_dir(), f"--resume: {out_dir} does not exist; nothing to resume")
        changed = config_changes(cfg, out_dir)
        require(
            not changed,
            f"--resume: the config differs from the one in {out_dir / 'config.yaml'} ({', '.join(changed)}); resume with the same config or start a new --out",
        )
    elif out_dir.exists() and dist_.is_main():  # a fresh start: nothing of a replaced run may be resumed or read back
        for stale in ("results.json", "results.md", "model.pt", *(p.name for p in out_dir.glob("checkpoint-*.pt"))):
            (out_dir / stale).unlink(missing_ok=True)
        shutil.rmtree(out_dir / "tensorboard", ignore_errors=True)  # the curves of the replaced run
    created = not out_dir.exists()
    if dist_.is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
        for leftover in out_dir.glob(".*.tmp"):  # temporary files of writes a kill interrupted
            leftover.unlink(missing_ok=True)
        if not (resume and (out_dir / "config.yaml").exists()):  # a resumed run keeps its (equal) config
            atomic_write_text(out_dir / "config.yaml", dump_config(cfg))
    dist_.barrier()
    try:
        with logging_to(out_dir):  # train.logger=tensorboard: every Trainer of the run writes under out_dir
            result = task.execute(prepared, cfg, out_dir, resume=resume)
    except CdrecError:
        if dist_.is_main() and not resume and not any(out_dir.glob("checkpoint*.pt")):
            if created:
                shutil.rmtree(out_dir, ignore_errors=True)
            else:
                (out_dir / "config.yaml").unlink(missing_ok=True)
        raise
    if dist_.is_main():
        write_result(out_dir, result)
    return result


def load_run_config(run_dir: str | Path) -> RunConfig:
    run_dir = Path(run_dir)
    require(run_dir.is_dir(), f"{run_dir}: not a run directory")
    require((run_dir / "config.yaml").exists(), f"{run_dir}: no config.yaml; is this a cdrec run directory?")
    return load_config(run_dir / "config.yaml")


def evaluate_run(run_dir: str | Path, *, part: str = "test", device: str | None = None) -> RunResult:
    """Rebuild a run's data and split from its config, load its model and evaluate ``part``."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    require(part in ("valid", "test"), f"--part: expected valid or test, got {part!r}")
    task = task_for(cfg.model)
    if task.saves_model:
        require_model_file(run_dir)
    if device is not None:
        cfg.train.device = device
    return task.evaluate_saved(cfg, run_dir, part)
