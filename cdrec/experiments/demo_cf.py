"""Demo step of cross-domain CF: BPR-MF per domain and pooled, and UCLR, on synthetic data
whose users share preferences across domains and half of whom are sparse outside a home domain."""

from __future__ import annotations

import json
from pathlib import Path

from cdrec.experiments.demo import FamilyResult, flag, train_family
from cdrec.results.tables import markdown_table

CF_DATA = {"n_users": 500, "n_domains": 3, "items_per_domain": 200, "signal": 1.0, "max_activity_share": 0.5, "min_activity": 4, "max_activity": 40,
           "shared_weight": 0.8, "n_themes": 12, "sparse_share": 0.5, "sparse_activity": 3}
EMBEDDING = "model_params.dim=32"
"""The embedding size of every trained CF model (``pop`` and ``itemknn`` have none)."""
UCLR_LADDER = ["model_params.ae_epochs=4", "model_params.ae_passes=5", "model_params.ft_epochs=2"]
CF_RUNS: list[tuple[str, list[str]]] = [
    ("pop", ["model=pop", "scope=single"]),
    ("itemknn", ["model=itemknn", "scope=single"]),
    ("bprmf single", ["model=bprmf", "scope=single", EMBEDDING]),
    ("bprmf joint", ["model=bprmf", "scope=joint", EMBEDDING]),
    ("uclr", ["model=uclr", EMBEDDING, *UCLR_LADDER]),
]
"""The CF models of the demo, in table order: (label, config overrides)."""
CF_SCHEDULE = ["train.epochs=20", "train.patience=3", "train.lr=0.01", "train.batch_size=512", "eval.ks=[10]"]
"""The training schedule every trained CF model shares (the one-pass ``pop`` and ``itemknn`` ignore it)."""
FLAGSHIP = "uclr"
SPARSE_BUCKET = "1-2"


def sparse_metric(buckets: dict[str, dict[str, dict[str, float]]], metric: str) -> float:
    """``metric`` over the users with ``SPARSE_BUCKET`` training interactions in a domain, all domains
    pooled (the buckets' means weighted by their user counts)."""
    parts = [b[SPARSE_BUCKET] for b in buckets.values() if SPARSE_BUCKET in b]
    n = sum(p["n"] for p in parts)
    return sum(p[metric] * p["n"] for p in parts) / n if n else float("nan")


def demo(out: Path, device: str) -> FamilyResult:
    common = ["data.name=synthetic", "data.synthetic=" + json.dumps(CF_DATA), *CF_SCHEDULE]
    results = train_family(out / "cf", device, CF_RUNS, common)
    rows = [[flag(label, FLAGSHIP), *(f"{r.metrics['overall'][m]:.4f}" for m in ("HR@10", "NDCG@10", "MRR@10")),
             f"{sparse_metric(r.buckets, 'NDCG@10'):.4f}"] for label, r in results.items()]
    return FamilyResult(
        title="Cross-domain CF (leave-one-out, 1+99 candidates)",
        data=(f"Data: {CF_DATA['n_users']} users, {CF_DATA['n_domains']} domains of {CF_DATA['items_per_domain']} items; "
              f"{CF_DATA['shared_weight']:.0%} of each user's preference is shared by all domains and "
              f"{CF_DATA['sparse_share']:.0%} of the users have only {CF_DATA['sparse_activity']} interactions "
              "(1 for training) outside a home domain."),
        table=markdown_table(["model", "HR@10", "NDCG@10", "MRR@10", f"NDCG@10, users with {SPARSE_BUCKET} training interactions in the domain"], rows),
        metric="NDCG@10", higher_is_better=True,
        scores={label: r.metrics["overall"]["NDCG@10"] for label, r in results.items()}, flagship=FLAGSHIP,
    )
