"""Diagnostic driver: the recipe's ``mtal-auto`` row (``setting.backbone=auto``: each organization assists with the best
of its Alone fits on its own validation entries) against the ``mtal-aae`` row and the best Alone row of a column.

Each ``mtal-auto`` run is the recipe's own config (:func:`cdrec.experiments.mtal.job_config`), written to ``--out`` (a
finished run there is reused); the ``mtal-aae`` and Alone figures are read from the committed runs
(``docs/reproductions/mtal/runs``) of the same seed. Validation figures pool the organizations' validation entries
(RMSE as a root mean square over entries); the best Alone row is chosen on validation, as an organization chooses.

    PYTHONPATH=. OMP_NUM_THREADS=1 python -m benchmarks.mtal_diagnostics.own_backbone --data-dir ../shared/data \\
        --dataset ml-100k --columns explicit/user/uniform,explicit/user/genre,explicit/item/uniform --seeds 0
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from cdrec.experiments.mtal import AUTO_ROW, BACKBONES, REPORT_HOME, job_config, plan, schedule
from cdrec.experiments.pipeline import run_config
from cdrec.results.schema import RunResult


def pooled_valid(result: RunResult, metric: str) -> float | None:
    """The validation metric over all organizations' entries (an Alone run records it, an MTAL run per organization)."""
    valid = result.valid_metrics
    if metric in valid.get("overall", {}):
        return float(valid["overall"][metric])
    parts = [v for org, v in valid.items() if org != "overall" and metric in v]
    if not parts:
        return None
    n = np.array([v["n"] for v in parts], dtype=float)
    m = np.array([v[metric] for v in parts], dtype=float)
    return float(np.sqrt(np.sum(n * m**2) / n.sum())) if metric == "RMSE" else float(np.sum(n * m) / n.sum())


def committed(dataset: str, column: str, row: str, seed: int) -> RunResult | None:
    path = REPORT_HOME / "runs" / dataset / column / row / f"seed{seed}" / "results.json"
    return RunResult.read(path) if path.exists() else None


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--columns", default="explicit/user/uniform,explicit/user/genre,explicit/item/uniform")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", type=Path, default=Path("runs/own-backbone"))
    args = parser.parse_args()
    sched = schedule(False, None)
    jobs = {j[:3]: j for j in plan(False)}
    print("| column | seed | metric | valid: best Alone | valid: MTAL AAE | valid: own backbone | test: best Alone (on valid) "
          "| test: MTAL AAE | test: own backbone | choices | own backbone train s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for column in args.columns.split(","):
        metric = "RMSE" if column.startswith("explicit") else "MAP@10"
        lower = metric == "RMSE"
        for seed in (int(s) for s in args.seeds.split(",")):
            run_dir = args.out / args.dataset / column / AUTO_ROW / f"seed{seed}"
            if (run_dir / "results.json").exists():
                own = RunResult.read(run_dir / "results.json")
            else:
                own = run_config(job_config(jobs[(args.dataset, column, AUTO_ROW)], seed, sched, args.data_dir, "cpu"), run_dir)
            fixed = committed(args.dataset, column, "mtal-aae", seed)
            alone = [r for r in (committed(args.dataset, column, f"alone-{b}", seed) for b in BACKBONES) if r is not None]
            scored = [(pooled_valid(r, metric), r) for r in alone if pooled_valid(r, metric) is not None]
            best = (min if lower else max)(scored, key=lambda vr: vr[0]) if scored else None
            choices = Counter(rec["chosen"] for rec in own.data_stats.get("backbones", {}).values())
            print(f"| {column} | {seed} | {metric} | {_f(best[0]) if best else '–'} ({best[1].model if best else '–'}) | "
                  f"{_f(pooled_valid(fixed, metric) if fixed else None)} | {_f(pooled_valid(own, metric))} | "
                  f"{_f(best[1].metrics['overall'].get(metric) if best else None)} | "
                  f"{_f(fixed.metrics['overall'].get(metric) if fixed else None)} | {_f(own.metrics['overall'].get(metric))} | "
                  f"{', '.join(f'{b} {n}' for b, n in sorted(choices.items()))} | {own.timing.get('train_s', 0):.0f} |", flush=True)


if __name__ == "__main__":
    main()
