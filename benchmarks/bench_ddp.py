"""Data-parallel overhead and agreement: the same BPR-MF run with 1 process and with ``torchrun``
N processes (gloo on CPU unless ``--device cuda``), on the built-in synthetic data.

    python -m benchmarks.bench_ddp [--procs 2] [--epochs 5] [--device cpu] [--out benchmarks/out]

Prints a Markdown table (train seconds, ratio to one process, NDCG@10 and its difference) and writes
``ddp.json``. Both runs are measured in the same invocation, so the ratio compares like with like;
on a machine with fewer free cores than processes the ratio measures contention, not scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run([*cmd, "--out", str(out)], env=env, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"benchmark run failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    return json.loads((out / "results.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    args = ap.parse_args()
    cfg = {
        "model": "bprmf", "seed": 1, "data": {"name": "synthetic"}, "split": {"n_negatives": 99},
        "train": {"epochs": args.epochs, "batch_size": 1024, "lr": 0.005, "device": args.device, "progress": False, "patience": 100},
        "model_params": {"dim": 64},
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cfg.yaml"
        path.write_text(yaml.safe_dump(cfg))
        one = _run([sys.executable, "-m", "cdrec", "run", str(path)], Path(tmp) / "one")
        many = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.procs),
                     "-m", "cdrec", "run", str(path)], Path(tmp) / "ddp")
    rows = []
    for name, res in (("1 process", one), (f"torchrun x{args.procs}", many)):
        rows.append({
            "run": name, "train_s": res["timing"]["train_s"],
            "ratio": res["timing"]["train_s"] / one["timing"]["train_s"],
            "NDCG@10": res["metrics"]["overall"]["NDCG@10"],
            "diff": res["metrics"]["overall"]["NDCG@10"] - one["metrics"]["overall"]["NDCG@10"],
        })
    from cdrec.results.schema import atomic_write_text
    from cdrec.results.tables import markdown_table

    atomic_write_text(args.out / "ddp.json", json.dumps({"config": cfg, "rows": rows}, indent=2) + "\n")
    print(markdown_table(["run", "train s", "ratio to 1 process", "NDCG@10", "difference"],
                         [[r["run"], f"{r['train_s']:.3f}", f"{r['ratio']:.2f}", f"{r['NDCG@10']:.6f}", f"{r['diff']:+.1e}"] for r in rows]))
    print(f"wrote {args.out / 'ddp.json'}")


if __name__ == "__main__":
    main()
