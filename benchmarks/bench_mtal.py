"""MTAL benchmark (not a unit test), two modes.

``--compare REF``: runs of `cdrec reproduce mtal`'s plan, trained one after the other in one fresh one-thread
process as the recipe trains them, by the code at git ``REF`` and then by this tree; prints wall and CPU seconds
of each run and asserts that both give the same metrics, bit for bit (test and validation metrics per
organization and overall). ``--new-set KEY=VALUE`` sets an option on this tree's side only: the metrics are then
compared and their largest difference printed instead of asserted.

    OMP_NUM_THREADS=1 python benchmarks/bench_mtal.py --compare 4cf9e74 --data-dir ../shared/data \\
        [--job ml-100k/explicit/user/uniform/mtal-aae ...] [--set setting.rounds=2 ...] [--new-set KEY=VALUE]

Without ``--compare``: wall time of a full ML-100K user-aligned genre run (K=18 organizations, 10 assistance
rounds, the papers' 20 local epochs) and peak memory as the number of organizations grows, as a Markdown table
(memory against the K=2 run of the same invocation).

    OMP_NUM_THREADS=1 python benchmarks/bench_mtal.py --data-dir ../shared/data [--epochs 20 --rounds 10]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time, torch
torch.set_num_threads(1)
from cdrec.config import DataConfig
from cdrec.data.datasets import load_dataset
from cdrec.data.splits import ratio_split
from cdrec.federated.alignment import build_federation
from cdrec.federated.mtal import run_mtal
from cdrec.federated.organization import MTALConfig
from cdrec.models.assisted.aae import AAEParams
from cdrec.experiments.mtal import ML100K_GENRES
data_dir, domains, rounds, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
keep = ML100K_GENRES if domains == "genre-random" else None
data = load_dataset(DataConfig(name="ml-100k", data_dir=data_dir, domains=domains, keep_domains=keep))
fed = build_federation(data, ratio_split(data, [0.81, 0.09, 0.1], by_user=True, seed=0))
t0 = time.perf_counter()
run = run_mtal(fed, MTALConfig(rounds=rounds, eta=0.3, model=AAEParams(epochs=epochs)))
wall = time.perf_counter() - t0
import numpy as np
from cdrec.federated.baselines import federation_metrics
rmse = federation_metrics(fed, "test", [o.test_scores() for o in run.orgs])["overall"]["RMSE"]
cpu = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"K": len(fed.orgs), "wall_s": wall, "cpu_s": cpu.ru_utime + cpu.ru_stime,
                  "peak_rss_mb": cpu.ru_maxrss / 1024, "rmse": rmse}))
"""

PLANNED = r"""
import contextlib, json, sys, tempfile, time, torch
torch.set_num_threads(1)
from pathlib import Path
from cdrec.config import load_config
from cdrec.experiments import mtal
from cdrec.experiments.pipeline import run_config
try:  # what `cdrec reproduce mtal` shares between its runs, where the code has it
    from cdrec.federated.shared_fits import sharing_fits
except ImportError:
    sharing_fits = contextlib.nullcontext
job_names, data_dir, sets = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
jobs = {job[:3]: job for job in mtal.plan_sections(False, tuple(mtal.SECTIONS))}
out = {}
with sharing_fits():
    for name in job_names:
        dataset, *column, row = name.split("/")
        cfg = mtal.job_config(jobs[(dataset, "/".join(column), row)], 0, mtal.schedule(False, None), Path(data_dir), "cpu")
        cfg = load_config(None, sets, base=cfg.to_dict()) if sets else cfg
        wall, cpu = time.perf_counter(), time.process_time()
        res = run_config(cfg, tempfile.mkdtemp(prefix="bench_mtal_"))
        out[name] = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "metrics": res.metrics,
                     "valid": res.valid_metrics, "reused_fits": res.timing.get("reused_fits", 0)}
print(json.dumps(out))
"""


DEFAULT_JOBS = [f"ml-100k/explicit/user/uniform/{row}" for row in ("mtal-aae", "mtal-aae-heldout", "ablation-eta-0.3", "ablation-eta-1.0")]
"""``--compare``'s runs: the ML-100K ablation column's MTAL rows, in the plan's order."""


def measure(data_dir: str, domains: str, rounds: int, epochs: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, data_dir, domains, str(rounds), str(epochs)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def checkout(ref: str, into: Path) -> Path:
    """The ``cdrec`` package of git ``ref`` of this repository, unpacked under ``into``."""
    archive = into / "ref.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), ref, "cdrec"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


def run_planned(code: Path, jobs: list[str], data_dir: str, sets: list[str]) -> dict:
    """Planned runs trained one after the other by the ``cdrec`` package under ``code`` in one fresh one-thread
    process, as `cdrec reproduce mtal` trains them (sharing what that code shares between runs)."""
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PLANNED, json.dumps(jobs), data_dir, json.dumps(sets)], capture_output=True, text=True, env=env, cwd=code)
    if out.returncode:
        raise SystemExit(f"{jobs} under {code} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def largest_difference(a: object, b: object) -> float:
    """Largest absolute difference between the numbers of two nested metric dicts (inf where their keys differ)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return math.inf
        return max((largest_difference(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return 0.0 if a == b or (math.isnan(a) and math.isnan(b)) else abs(a - b)
    return 0.0 if a == b else math.inf


def compare(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_mtal_ref_") as tmp:
        ref_code = checkout(args.compare, Path(tmp))
        data_dir = str(Path(args.data_dir).resolve())
        ref = run_planned(ref_code, args.job, data_dir, args.set)
        new = run_planned(REPO, args.job, data_dir, args.set + args.new_set)
    label = {"ref": args.compare, "new": "this tree" + (f" ({' '.join(args.new_set)})" if args.new_set else "")}
    print("| run | code | wall s | CPU s | local fits reused | overall test metrics |")
    print("|---|---|---|---|---|---|")
    diffs = {}
    for job in args.job:
        for side, r in (("ref", ref[job]), ("new", new[job])):
            overall = ", ".join(f"{k} {v:.6f}" for k, v in r["metrics"]["overall"].items() if k != "n")
            print(f"| {job} | {label[side]} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['reused_fits']} | {overall} |")
        diffs[job] = max(largest_difference(ref[job]["metrics"], new[job]["metrics"]), largest_difference(ref[job]["valid"], new[job]["valid"]))
    cpu = {side: sum(r["cpu_s"] for r in runs.values()) for side, runs in (("ref", ref), ("new", new))}
    print(f"\nCPU s in all: {label['ref']} {cpu['ref']:.1f}, {label['new']} {cpu['new']:.1f} (x{cpu['ref'] / max(cpu['new'], 1e-9):.2f})")
    if args.new_set:
        print(f"largest metric difference: {max(diffs.values()):.2e}")
        return
    differing = {job: d for job, d in diffs.items() if d != 0.0}
    assert not differing, f"metrics differ from {args.compare}'s: {differing}"
    print("metrics (test and validation, per organization and overall) identical bit for bit")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--compare", metavar="REF", help="git ref whose code the runs are compared with (e.g. 4cf9e74)")
    ap.add_argument("--job", action="append", help="dataset/column/row of the mtal plan, in plan order (repeatable; default: DEFAULT_JOBS)")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE override of every compared run, both sides")
    ap.add_argument("--new-set", action="append", default=[], help="KEY=VALUE override of this tree's side only")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--memory-ks", default="2,4,8,16")
    ap.add_argument("--skip-full", action="store_true")
    args = ap.parse_args()
    if args.compare:
        args.job = args.job or DEFAULT_JOBS
        compare(args)
        return
    rows = []
    if not args.skip_full:
        t0 = time.perf_counter()
        full = measure(args.data_dir, "genre-random", args.rounds, args.epochs)
        rows.append(("genre-random (K=18), full run", full))
        print(f"full run: {full} ({time.perf_counter() - t0:.0f} s incl. start-up)", flush=True)
    mem = [(f"uniform-items:{k}, 1 round x 1 epoch", measure(args.data_dir, f"uniform-items:{k}", 1, 1)) for k in map(int, args.memory_ks.split(","))]
    base_mem = mem[0][1]["peak_rss_mb"]
    print("| run | K | wall s | CPU s | peak RSS MiB | RSS / first | test RMSE |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows + mem:
        print(f"| {name} | {r['K']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] / base_mem:.2f} | {r['rmse']:.4f} |")


if __name__ == "__main__":
    main()
