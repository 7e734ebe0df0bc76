"""Demo step of multi-domain multi-task CTR: MMoE and M3oE (one model for all domains and tasks) and
STAR (one multi-domain model per task) on synthetic click / like data whose domains share part of
each user's preference and whose like task has a signal of its own."""

from __future__ import annotations

import json
from pathlib import Path

from cdrec.experiments.demo import FamilyResult, flag, train_family
from cdrec.results.tables import markdown_table

CTR_DATA = {"n_users": 1000, "shared_weight": 0.7, "like_own": 0.5}
CTR_RUNS: list[tuple[str, list[str]]] = [(f"{model} {mode}", [f"model={model}", f"model_params.mode={mode}"])
                                         for model, mode in (("mmoe", "mdmt"), ("star", "mdl"), ("m3oe", "mdmt"))]
"""The CTR models of the demo, in table order: (label, config overrides)."""
CTR_SCHEDULE = ["train.epochs=3", "train.batch_size=1024"]
"""The training schedule every CTR model shares."""
FLAGSHIP = "m3oe mdmt"
TASKS = ("click", "like")


def mean_auc(metrics: dict[str, float]) -> float:
    """The overall AUC averaged over the tasks."""
    return sum(metrics[f"AUC[{t}]"] for t in TASKS) / len(TASKS)


def demo(out: Path, device: str) -> FamilyResult:
    common = ["data.name=synthetic", "data.synthetic=" + json.dumps(CTR_DATA), *CTR_SCHEDULE]
    results = train_family(out / "ctr", device, CTR_RUNS, common)
    rows = [[flag(label, FLAGSHIP), f"{mean_auc(r.metrics['overall']):.4f}",
             *(f"{r.metrics['overall'][f'{m}[{t}]']:.4f}" for m in ("AUC", "LogLoss") for t in TASKS)] for label, r in results.items()]
    return FamilyResult(
        title="Multi-domain multi-task CTR (8:1:1 split)",
        data=(f"Data: {CTR_DATA['n_users']} users, the generator's 3 item domains D0-D2 of 400 items; "
              f"{CTR_DATA['shared_weight']:.0%} of each user's preference is shared by the domains; click = rating > 3, and "
              f"whether a click is liked mixes the click signal with a like-only affinity (weight {CTR_DATA['like_own']})."),
        table=markdown_table(["model", "AUC (mean of tasks)", *(f"{m}[{t}]" for m in ("AUC", "LogLoss") for t in TASKS)], rows),
        metric="AUC (mean of tasks)", higher_is_better=True,
        scores={label: mean_auc(r.metrics["overall"]) for label, r in results.items()}, flagship=FLAGSHIP,
    )
