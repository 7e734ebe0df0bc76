"""MTAL benchmark (not a unit test): wall time of a full ML-100K user-aligned genre run (K=18 organizations,
10 assistance rounds, the papers' 20 local epochs) and peak memory as the number of organizations grows.

    OMP_NUM_THREADS=1 python benchmarks/bench_mtal.py --data-dir ../shared/data [--epochs 20 --rounds 10]

Prints a Markdown table. Each measurement runs in a fresh subprocess so that its peak RSS is its own;
memory is reported against the K=2 run of the same invocation (ratio), time against one round.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

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


def measure(data_dir: str, domains: str, rounds: int, epochs: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, data_dir, domains, str(rounds), str(epochs)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--memory-ks", default="2,4,8,16")
    ap.add_argument("--skip-full", action="store_true")
    args = ap.parse_args()
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
