"""Demo step of the collaborative-filtering family: BPR-MF single-domain vs joint on synthetic data."""

from __future__ import annotations

from pathlib import Path

from cdrec.config import load_config
from cdrec.experiments.pipeline import run_config
from cdrec.results.tables import markdown_table


def demo(out: Path, device: str) -> list[str]:
    rows = []
    for scope in ("single", "joint"):
        cfg = load_config(None, [f"scope={scope}", "train.epochs=20", "train.lr=0.01", "train.batch_size=1024", "train.progress=false", f"train.device={device}", "model_params.dim=32"])
        res = run_config(cfg, out / f"bprmf-{scope}")
        for dom, vals in res.metrics.items():
            rows.append([f"bprmf ({scope})", dom, f"{vals['HR@10']:.4f}", f"{vals['NDCG@10']:.4f}", f"{vals['MRR@10']:.4f}"])
    return ["## Cross-domain CF (leave-one-out, 1+99 candidates)", "", markdown_table(["model", "domain", "HR@10", "NDCG@10", "MRR@10"], rows)]
