"""Scaling: time per epoch and peak memory against the number of interactions.

The memory-light synthetic generator (3 domains, 400 items each, the default activity law) makes
tables of about 10^5, 10^6 and 10^7 interactions (users scaled to reach the size). Each table is
written once to ``out/scaling-work/`` by its own process; each model then trains in a fresh process
that loads it (so its peak memory is the table + the model + training, not the generator). Timed: the
training passes (sampling + steps) of ``epochs`` epochs, median per epoch. The growth exponent is the
slope of a least-squares line through (log interactions, log value); memory is fitted both on the
whole peak RSS and on the peak above an empty process's (Python + torch + cdrec imported).

Models: BPR-MF (d=64, batch 2048, ``sparse=True``: lazy Adam, a step touches only the batch's rows),
SASRec (``sasrec-dt``, d=64, 2 layers, max_len 20, CE over all items, 64 sequences per batch) and
AAE/MTAL (user-aligned: the 3 domains are 3 organizations sharing users, explicit ratings, 81/9/10
per-user split, AAE of Table 5 with batch 100, eta 0.3).

An MTAL "epoch" is one assistance round in which every organization runs one local epoch of its AAE:
pseudo-residuals and their exchange, each organization's AAE fitted for one pass over all its
pseudo-target rows (own + peers' residuals, every user with any entry), its predictions of the peers'
train and query keys, and the update ``F_t = F_{t-1} + eta sum_j w_j r_hat``. A paper run is T such
rounds with 20 local epochs each; the round's cost is affine in the local epochs, and the local fit is
reported on its own beside the whole round (``fit_cpu_s``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import log, machine, median, run_child, write_json

ITEMS_PER_DOMAIN = 400


def fit_exponent(x: list[float], y: list[float]) -> float:
    """Slope of log(y) on log(x) (least squares)."""
    if len(x) < 2:
        return float("nan")
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


# ----------------------------------------------------------------------------- child processes
def child_generate(spec: dict) -> dict:
    from cdrec.data.synthetic import SyntheticConfig
    from cdrec.data.synthetic_large import make_synthetic_large

    t0 = time.perf_counter()
    data = make_synthetic_large(SyntheticConfig(n_users=spec["n_users"], items_per_domain=ITEMS_PER_DOMAIN, seed=0))
    arrays = {c: data.frame[c].to_numpy() for c in data.frame.columns}
    np.savez(spec["path"], item_offsets=data.item_offsets, n_users=np.asarray(data.n_users), **arrays)
    return {"interactions": len(data), "users": data.n_users, "items": data.n_items, "generate_s": time.perf_counter() - t0}


def load_table(path: str, columns: tuple[str, ...] | None = None):
    from cdrec.data.interactions import Interactions

    z = np.load(path)
    cols = [c for c in z.files if c not in ("item_offsets", "n_users") and (columns is None or c in columns)]
    frame = pd.DataFrame({c: z[c] for c in cols})
    offsets = z["item_offsets"]
    return Interactions(
        frame=frame, user_ids=np.arange(int(z["n_users"])), item_ids=np.arange(int(offsets[-1])),
        domains=[f"D{d}" for d in range(len(offsets) - 1)], item_offsets=offsets, label_columns=tuple(c for c in ("click", "like") if c in cols), name="synthetic-large",
    )


def child_train(spec: dict) -> dict:
    import torch

    from benchmarks.cdrec_driver import EpochClock, last_epoch_validator
    from cdrec.config import TrainConfig
    from cdrec.data.splits import leave_one_out
    from cdrec.train.trainer import Trainer, resolve_device, seed_everything

    torch.set_num_threads(spec["threads"])
    device = resolve_device(spec.get("device", "cpu"))
    if spec["model"] == "empty":
        return {}
    if spec["model"] == "AAE-MTAL":
        return child_mtal(spec)
    t0 = time.perf_counter()
    data = load_table(spec["path"])
    split = leave_one_out(data, mixed=spec["model"] == "SASRec", seed=0)
    seed_everything(0)
    if spec["model"] == "BPR-MF":
        from cdrec.data.samplers import BPRSampler
        from cdrec.models.cf.bprmf import BPRMF, BPRMFParams

        model = BPRMF.from_split(split, BPRMFParams(dim=64, sparse=True))
        sampler = BPRSampler(split.train, 2048, seed=0)
        batches, n_batches = sampler.epoch, len(sampler)
        cfg = TrainConfig(epochs=spec["epochs"], batch_size=2048, patience=10**6, metric="epoch", progress=False, device=str(device))
    else:
        from cdrec.data.sequences import training_sequences
        from cdrec.models.sequential.sasrec import SASRecDT, SASRecParams
        from cdrec.train.sequential import train_batches

        params = SASRecParams(dim=64, n_layers=2, n_heads=2, dropout=0.2, max_len=20, loss="full", warmup_epochs=0)
        model = SASRecDT(data.n_items, data.item_offsets, params)
        train = training_sequences(split, params.max_len)
        batches, n_batches = train_batches(train, 64, 0)
        cfg = TrainConfig(epochs=spec["epochs"], batch_size=64, patience=10**6, metric="epoch", progress=False, device=str(device))
    prep_s = time.perf_counter() - t0
    trainer = Trainer(model, cfg, seed=0, device=device)
    if spec["model"] == "SASRec":
        trainer.optimizers = [torch.optim.Adam(model.parameters(), lr=1e-3)]
        model.schedulers = None
    clock = EpochClock(batches)
    trainer.fit(clock, last_epoch_validator(), n_batches=n_batches)
    return {"epoch_s": clock.wall, "epoch_cpu_s": clock.cpu, "prep_s": prep_s, "batches_per_epoch": n_batches}


class PhaseClock:
    """Wall and CPU seconds per (phase, round) of every organization's MTAL phase methods."""

    PHASES = ("residuals", "fit", "predictions", "update")

    def __init__(self) -> None:
        self.wall: dict[tuple[str, int], float] = {}
        self.cpu: dict[tuple[str, int], float] = {}

    def install(self, org_cls) -> None:
        for name in self.PHASES:
            original = getattr(org_cls, name)

            def timed(org, t, *args, _original=original, _name=name):
                w, c = time.perf_counter(), time.process_time()
                try:
                    return _original(org, t, *args)
                finally:
                    key = (_name, int(t))
                    self.wall[key] = self.wall.get(key, 0.0) + time.perf_counter() - w
                    self.cpu[key] = self.cpu.get(key, 0.0) + time.process_time() - c

            setattr(org_cls, name, timed)

    def round(self, t: int, clock: dict) -> float:
        """Round ``t``: its residuals, fit, predictions and update, summed over the organizations."""
        return sum(clock.get((name, t), 0.0) for name in self.PHASES)


def child_mtal(spec: dict) -> dict:
    """One MTAL run of ``epochs`` assistance rounds x 1 local AAE epoch (module docstring)."""
    import gc

    from cdrec.data.splits import ratio_split
    from cdrec.federated.alignment import build_federation
    from cdrec.federated.mtal import run_mtal
    from cdrec.federated.organization import MTALConfig, Organization
    from cdrec.models.assisted.aae import AAEParams

    t0 = time.perf_counter()
    data = load_table(spec["path"], columns=("user", "item", "domain", "rating"))
    fed = build_federation(data, ratio_split(data, [0.81, 0.09, 0.1], by_user=True, seed=0))
    del data
    gc.collect()
    prep_s = time.perf_counter() - t0
    clock = PhaseClock()
    clock.install(Organization)
    rounds = spec["epochs"]
    run = run_mtal(fed, MTALConfig(rounds=rounds, eta=0.3, model=AAEParams(epochs=1), device=spec.get("device", "cpu")))
    ts = range(1, rounds + 1)
    rmse = [float(np.mean([o.history[t]["test"]["RMSE"] for o in run.orgs])) for t in ts]
    return {
        "epoch_s": [clock.round(t, clock.wall) for t in ts],
        "epoch_cpu_s": [clock.round(t, clock.cpu) for t in ts],
        "fit_s": [clock.wall[("fit", t)] for t in ts],
        "fit_cpu_s": [clock.cpu[("fit", t)] for t in ts],
        "prep_s": prep_s,
        "organizations": len(fed.orgs),
        "train_entries": int(sum(len(o.train) for o in fed.orgs)),
        "test_rmse_by_round": rmse,
    }


def child(spec_path: str, out_path: str) -> None:
    from benchmarks.common import own_peak_rss_mb

    spec = json.loads(Path(spec_path).read_text())
    out = child_generate(spec) if spec["kind"] == "generate" else child_train(spec)
    out["peak_rss_mb"] = own_peak_rss_mb()
    Path(out_path).write_text(json.dumps(out, indent=2))


# ----------------------------------------------------------------------------- orchestration
def run(out: Path, *, device: str, threads: int, sizes: tuple[int, ...] = (100_000, 1_000_000, 10_000_000), models: dict[str, tuple[int, ...]] | None = None, epochs: int = 2, keep_tables: bool = False) -> dict[str, Any]:
    from cdrec.data.synthetic import SyntheticConfig
    from cdrec.data.synthetic_large import make_synthetic_large

    models = models or {"BPR-MF": sizes, "AAE-MTAL": tuple(s for s in sizes if s <= 3_000_000), "SASRec": tuple(s for s in sizes if s <= 1_000_000)}
    work = out / "scaling-work"
    work.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "benchmarks.scaling"]
    pilot = make_synthetic_large(SyntheticConfig(n_users=20_000, items_per_domain=ITEMS_PER_DOMAIN, seed=0))
    per_user = len(pilot) / 20_000
    result: dict[str, Any] = {"benchmark": "scaling", "machine": machine(device, threads), "items_per_domain": ITEMS_PER_DOMAIN, "domains": 3, "epochs": epochs, "tables": {}, "models": {}}
    empty = run_child(argv, {"kind": "train", "model": "empty", "device": device}, work, "empty", threads=threads)
    result["empty_process_rss_mb"] = empty["peak_rss_mb"]
    all_sizes = sorted({s for v in models.values() for s in v})
    for size in all_sizes:
        path = work / f"table-{size}.npz"
        spec = {"kind": "generate", "n_users": max(100, int(round(size / per_user))), "path": str(path)}
        done = work / f"generate-{size}.out.json"
        if path.exists() and done.exists() and json.loads((work / f"generate-{size}.spec.json").read_text()).get("n_users") == spec["n_users"]:
            gen = json.loads(done.read_text())  # the same table from an interrupted run
        else:
            gen = run_child(argv, spec, work, f"generate-{size}", threads=threads)
        result["tables"][str(size)] = gen
        log(f"scaling: table {size:,}: {gen['interactions']:,} interactions, {gen['users']:,} users ({gen['generate_s']:.0f} s)")
    for model, model_sizes in models.items():
        rows = []
        for size in model_sizes:
            path = work / f"table-{size}.npz"
            r = run_child(argv, {"kind": "train", "model": model, "path": str(path), "epochs": epochs, "device": device}, work, f"{model}-{size}", threads=threads)
            r["interactions"] = result["tables"][str(size)]["interactions"]
            r["epoch_median_s"] = median(r["epoch_s"])
            r["epoch_cpu_median_s"] = median(r["epoch_cpu_s"])
            rows.append(r)
            log(f"scaling: {model} at {r['interactions']:,}: {r['epoch_median_s']:.2f} s/epoch ({r['epoch_cpu_median_s']:.2f} CPU), {r['peak_rss_mb']:.0f} MB")
            result["models"][model] = {"runs": rows}
            write_json(out / "scaling.json", result)
        x = [r["interactions"] for r in rows]
        result["models"][model]["exponent"] = {
            "time_wall": fit_exponent(x, [r["epoch_median_s"] for r in rows]),
            "time_cpu": fit_exponent(x, [r["epoch_cpu_median_s"] for r in rows]),
            "memory_total": fit_exponent(x, [r["peak_rss_mb"] for r in rows]),
            "memory_above_empty": fit_exponent(x, [max(r["peak_rss_mb"] - empty["peak_rss_mb"], 1.0) for r in rows]),
            "target_max": 1.1,
        }
    skipped = {m: [s for s in all_sizes if s > max(v)] for m, v in models.items() if v}
    result["skipped_sizes"] = {m: s for m, s in skipped.items() if s}
    if not keep_tables:
        for path in work.glob("table-*.npz"):
            path.unlink()
    write_json(out / "scaling.json", result)
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for model, entry in result["models"].items():
        x = [r["interactions"] for r in entry["runs"]]
        exp = entry.get("exponent", {})
        axes[0].loglog(x, [r["epoch_cpu_median_s"] for r in entry["runs"]], "o-", label=f"{model} CPU (slope {exp.get('time_cpu', float('nan')):.2f})")
        axes[0].loglog(x, [r["epoch_median_s"] for r in entry["runs"]], "x--", alpha=0.6, label=f"{model} wall (slope {exp.get('time_wall', float('nan')):.2f})")
        axes[1].loglog(x, [r["peak_rss_mb"] for r in entry["runs"]], "o-", label=f"{model} (slope {exp.get('memory_total', float('nan')):.2f})")
    xs = sorted({r["interactions"] for e in result["models"].values() for r in e["runs"]})
    if len(xs) >= 2:
        for ax in axes:
            lo, hi = ax.get_ylim()
            ref = np.asarray(xs, float)
            ax.loglog(ref, lo * 1.5 * ref / ref[0], ":", color="gray", label="slope 1")
    axes[0].set(xlabel="interactions", ylabel="seconds per epoch", title="Time per epoch")
    axes[1].set(xlabel="interactions", ylabel="peak RSS (MB)", title="Peak memory")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2])
