"""Demo step of the assisted family: three organizations of synthetic data whose users share
preferences across organizations; each Alone backbone vs MTAL with AAE (explicit RMSE)."""

from __future__ import annotations

import json
from pathlib import Path

from cdrec.experiments.demo import FamilyResult, flag, train_family
from cdrec.results.tables import markdown_table

MTAL_DATA = {"n_users": 300, "n_domains": 3, "items_per_domain": 80, "min_activity": 8, "max_activity": 40, "signal": 1.0,
             "max_activity_share": 0.5, "shared_weight": 0.7}
MTAL_RUNS: list[tuple[str, list[str]]] = [
    ("alone base", ["model=assisted-base", "setting.mode=alone"]),
    ("alone mlp", ["model=assisted-mlp", "setting.mode=alone"]),
    ("alone ae", ["model=assisted-ae", "setting.mode=alone", "model_params.epochs=8"]),
    ("mtal aae", ["model=aae", "setting.mode=mtal", "model_params.epochs=8", "model_params.batch_size=50", "setting.rounds=4", "setting.eta=0.5"]),
]
"""The assisted runs of the demo, in table order: (label, config overrides)."""
MTAL_SCHEDULE = ["train.epochs=10"]
"""The Alone baselines' schedule (the AAE's local schedule is its model_params, as in the papers)."""
FLAGSHIP = "mtal aae"


def demo(out: Path, device: str) -> FamilyResult:
    common = ["data.name=synthetic", "data.synthetic=" + json.dumps(MTAL_DATA), *MTAL_SCHEDULE]
    results = train_family(out / "mtal", device, MTAL_RUNS, common)
    orgs = list(next(iter(results.values())).metrics)
    rows = [[flag(label, FLAGSHIP), *(f"{r.metrics[o]['RMSE']:.4f}" for o in orgs)] for label, r in results.items()]
    return FamilyResult(
        title="Decentralized multi-target (AAE + MTAL, explicit ratings)",
        data=(f"Data: {MTAL_DATA['n_users']} users, 3 organizations (domains) of {MTAL_DATA['items_per_domain']} items; "
              f"{MTAL_DATA['shared_weight']:.0%} of each user's preference is shared by the organizations. RMSE per organization."),
        table=markdown_table(["run", *(f"RMSE {o}" for o in orgs)], rows),
        metric="RMSE", higher_is_better=False,
        scores={label: r.metrics["overall"]["RMSE"] for label, r in results.items()}, flagship=FLAGSHIP,
    )
