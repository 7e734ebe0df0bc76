"""Demo step of the sequential family: SASRec-dt, BERT4Rec-dt and MERIT on synthetic
two-domain sequences (mixed leave-one-out, 1 + 49 candidates), a few epochs each."""

from __future__ import annotations

from pathlib import Path

from cdrec.config import load_config
from cdrec.experiments.pipeline import run_config
from cdrec.results.tables import markdown_table


def demo(out: Path, device: str) -> list[str]:
    rows = []
    for model in ("sasrec-dt", "bert4rec-dt", "merit"):
        cfg = load_config(None, [
            f"model={model}", "data.name=synthetic", "data.synthetic={n_users: 400, n_domains: 2, items_per_domain: 600}",
            "split.n_negatives=49", "train.epochs=3", "train.progress=false", f"train.device={device}", "train.lr=0.002",
            "train.weight_decay=0.0", "model_params.dim=32", "model_params.warmup_epochs=1", "model_params.max_len=30",
        ])
        res = run_config(cfg, out / model)
        for dom, vals in res.metrics.items():
            rows.append([model, dom, f"{vals['HR@10']:.4f}", f"{vals['NDCG@10']:.4f}", f"{vals['MRR']:.4f}"])
    return ["## Cross-domain sequential (mixed leave-one-out, 1+49 candidates)", "", markdown_table(["model", "domain", "HR@10", "NDCG@10", "MRR"], rows)]
