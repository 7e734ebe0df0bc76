"""Demo step of the sequential family: SASRec per domain (-st) and on the mixed sequence (-dt),
BERT4Rec-dt and MERIT on synthetic two-domain sequences whose next item's theme follows the user's
latest item in the other domain (mixed leave-one-out, 1+49 candidates)."""

from __future__ import annotations

import json
from pathlib import Path

from cdrec.experiments.demo import FamilyResult, flag, train_family
from cdrec.results.tables import markdown_table

SEQ_DATA = {"n_users": 400, "n_domains": 2, "items_per_domain": 300, "min_activity": 5, "max_activity": 10, "signal": 1.5,
            "n_themes": 12, "seq_cross": 0.5, "seq_intra": 0.2}
SEQ_RUNS: list[tuple[str, list[str]]] = [(model, [f"model={model}"]) for model in ("sasrec-st", "sasrec-dt", "bert4rec-dt", "merit")]
"""The sequential models of the demo, in table order: (label, config overrides)."""
SEQ_SCHEDULE = ["train.epochs=4", "train.batch_size=128", "train.lr=0.002", "train.weight_decay=0.0", "model_params.dim=32",
                "model_params.warmup_epochs=1", "model_params.max_len=20"]
"""The training schedule every sequential model shares."""
FLAGSHIP = "merit"


def demo(out: Path, device: str) -> FamilyResult:
    common = ["data.name=synthetic", "data.synthetic=" + json.dumps(SEQ_DATA), "split.n_negatives=49", *SEQ_SCHEDULE]
    results = train_family(out / "seq", device, SEQ_RUNS, common)
    domains = [d for d in next(iter(results.values())).metrics if d != "overall"]
    rows = [[flag(label, FLAGSHIP), *(f"{r.metrics['overall'][m]:.4f}" for m in ("HR@10", "NDCG@10", "MRR")),
             *(f"{r.metrics[d]['NDCG@10']:.4f}" for d in domains)] for label, r in results.items()]
    return FamilyResult(
        title="Cross-domain sequential (mixed leave-one-out, 1+49 candidates)",
        data=(f"Data: {SEQ_DATA['n_users']} users, 2 domains of {SEQ_DATA['items_per_domain']} items in {SEQ_DATA['n_themes']} themes "
              "shared by both, events of the two domains interleaved at random; an event's theme is that of the user's latest "
              f"event in the other domain with probability {SEQ_DATA['seq_cross']}, the next theme after the latest one in its own "
              f"domain with probability {SEQ_DATA['seq_intra']}, else free."),
        table=markdown_table(["model", "HR@10", "NDCG@10", "MRR", *(f"NDCG@10 {d}" for d in domains)], rows),
        metric="NDCG@10", higher_is_better=True,
        scores={label: r.metrics["overall"]["NDCG@10"] for label, r in results.items()}, flagship=FLAGSHIP,
    )
