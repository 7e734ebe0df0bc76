"""CPU seconds per training epoch and per validation pass of ``cdrec reproduce uclr``'s second phase
(not a unit test).

    OMP_NUM_THREADS=1 python -m benchmarks.bench_uclr_phase2 --dataset douban --epochs 3 --out bench.json
    OMP_NUM_THREADS=1 python -m benchmarks.bench_uclr_phase2 --models neumf --param negatives=1 --epochs 8

Builds each model's run config exactly as the recipe does (:func:`cdrec.experiments.uclr._config` at
:data:`~cdrec.experiments.uclr.SCHEDULE`, CPU), caps every training stage at ``--epochs`` epochs and
trains it with the ranking task's normal path (sampler, Trainer, validation on MRR@10). Every
``Trainer.fit`` (a staged model's stages too) is timed in process CPU seconds, split into its epochs'
training (batches and steps) and validation passes. Also records each stage's validation metric per
epoch and a digest of the trained weights, so two checkouts can be compared (``PYTHONPATH`` names the
checkout to measure). ``--param KEY=VALUE`` (repeatable) sets a model option on top of the recipe's.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import yaml

PHASE2 = ["neumf", "lightgcn", "pge-lightgcn", "uclr-lightgcn", "herograph", "ga-mtcdr", "cat-art"]


def _capped(cfg: Any, epochs: int) -> Any:
    """``cfg`` with every training stage capped at ``epochs`` epochs (the staged models' own caps too)."""
    from cdrec.models import registry

    train = dataclasses.replace(cfg.train, epochs=epochs)
    params = dict(cfg.model_params or {})
    names = {f.name for f in dataclasses.fields(registry.get(cfg.model).params)}
    for key in ("ae_epochs", "ft_epochs", "cat_epochs", "art_epochs"):
        if key in names:
            params[key] = min(int(params.get(key, epochs)), epochs)
    params.pop("pge_cache", None)  # no shared pretraining: every model trains its own
    return dataclasses.replace(cfg, train=train, model_params=params)


def timing_trainer(records: list[dict]) -> type:
    """A :class:`~cdrec.train.trainer.Trainer` whose ``fit`` appends, per call, the CPU seconds of every
    epoch's training and validation to ``records`` (a staged model's stages use the same class)."""
    from cdrec.train.trainer import Trainer

    class TimingTrainer(Trainer):
        def fit(self, batches: Callable[[int], Iterable], validate: Callable[[], dict], **kw: Any) -> Any:
            record: dict[str, Any] = {"stage": self.desc, "train_cpu_s": [], "valid_cpu_s": [], "valid": []}
            records.append(record)
            clock = {"start": 0.0}

            def timed_batches(epoch: int) -> Iterable:
                clock["start"] = time.process_time()
                return batches(epoch)

            def timed_validate() -> dict:
                now = time.process_time()
                record["train_cpu_s"].append(now - clock["start"])
                out = validate()
                record["valid_cpu_s"].append(time.process_time() - now)
                record["valid"].append(out.get(self.metric))
                return out

            return super().fit(timed_batches, timed_validate, **kw)

    return TimingTrainer


def bench(model_name: str, dataset: str, epochs: int, data_dir: Path | None, params: dict[str, Any] | None = None) -> dict:
    from cdrec.experiments import uclr
    from cdrec.train import tasks
    from cdrec.train.trainer import seed_everything

    cfg = _capped(uclr._config(model_name, dataset, 0, uclr.SCHEDULE, data_dir, "cpu"), epochs)
    cfg = dataclasses.replace(cfg, model_params={**cfg.model_params, **(params or {})})
    task = tasks.task_for(model_name)
    prepared = task.prepare(cfg)
    records: list[dict] = []
    original = tasks.Trainer
    tasks.Trainer = timing_trainer(records)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for scope, split in prepared.scopes:
                seed_everything(cfg.seed)
                model = task.build_model(cfg, split, prepared.params)
                c = time.process_time()
                task.train(model, split, scope, cfg, prepared.device, Path(tmp) / scope)
                total = time.process_time() - c
                records.append({"scope": scope, "total_cpu_s": total,
                                "weights_sha1": hashlib.sha1(b"".join(t.detach().cpu().numpy().tobytes() for t in model.state_dict().values())).hexdigest()})
    finally:
        tasks.Trainer = original
    return {"model": model_name, "dataset": dataset, "epochs": epochs, "params": params or {}, "records": records}


def summary(result: dict) -> list[str]:
    """One line per stage: median CPU seconds per training epoch and per validation pass."""
    lines = []
    for r in result["records"]:
        if "stage" in r and r["train_cpu_s"]:
            lines.append(f"{result['model']:>14} {r['stage']:<26} train/epoch {np.median(r['train_cpu_s']):7.2f} s  valid {np.median(r['valid_cpu_s']):6.2f} s  "
                         f"metric {[round(v, 4) if isinstance(v, float) else v for v in r['valid']]}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="douban")
    parser.add_argument("--models", nargs="*", default=PHASE2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a model option over the recipe's (YAML value)")
    args = parser.parse_args()
    params = {key: yaml.safe_load(value) for key, _, value in (p.partition("=") for p in args.param)}
    torch.set_num_threads(1)
    results = []
    for name in args.models:
        result = bench(name, args.dataset, args.epochs, args.data_dir, params)
        results.append(result)
        print("\n".join(summary(result)), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
