"""Demo step of the CTR family: M3oE against MMoE and STAR on synthetic click/like data (~30 s)."""

from __future__ import annotations

from pathlib import Path

from cdrec.config import load_config
from cdrec.experiments.pipeline import run_config
from cdrec.results.tables import markdown_table

RUNS = [("mmoe", "mdmt"), ("star", "mdl"), ("m3oe", "mdmt")]


def demo(out: Path, device: str) -> list[str]:
    rows = []
    for model, mode in RUNS:
        cfg = load_config(None, [
            f"model={model}", f"model_params.mode={mode}", "train.epochs=3", "train.batch_size=1024",
            "train.progress=false", f"train.device={device}", "data.domains=age-edges:28,38",
        ])
        res = run_config(cfg, out / f"ctr-{model}-{mode}")
        for dom, vals in res.metrics.items():
            rows.append([f"{model} ({mode})", dom, f"{vals['AUC[click]']:.4f}", f"{vals['AUC[like]']:.4f}", f"{vals['LogLoss[click]']:.4f}", f"{vals['LogLoss[like]']:.4f}"])
    return [
        "## Multi-domain multi-task CTR (domains = user age bins, tasks click / like; 8:1:1 split)",
        "",
        markdown_table(["model", "domain", "AUC[click]", "AUC[like]", "LogLoss[click]", "LogLoss[like]"], rows),
    ]
