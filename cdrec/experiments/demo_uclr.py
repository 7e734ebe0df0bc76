"""Demo step of UCLR: PGE vs UCLR on synthetic data (one shared PGE pretraining), ~30 s on 2 cores."""

from __future__ import annotations

from pathlib import Path

from cdrec.config import load_config
from cdrec.experiments.pipeline import run_config
from cdrec.results.tables import markdown_table


def demo(out: Path, device: str) -> list[str]:
    rows = []
    common = [
        "train.epochs=8", "train.patience=2", "train.lr=0.01", "train.batch_size=512", "train.progress=false", f"train.device={device}",
        "data.synthetic.n_users=600", "data.synthetic.items_per_domain=200", "data.synthetic.signal=1.0",
        "data.synthetic.max_activity_share=0.5", "eval.ks=[10]",
    ]
    ladder = ["model_params.dim=32", "model_params.ae_epochs=4", "model_params.ae_passes=5", "model_params.ft_epochs=2",
              f"model_params.pge_cache={out / 'uclr' / 'pge-cache.pt'}"]
    for model in ("pge", "uclr"):
        cfg = load_config(None, [f"model={model}", *common, *ladder])
        res = run_config(cfg, out / "uclr" / model)
        for dom, vals in res.metrics.items():
            rows.append([model, dom, f"{vals['HR@10']:.4f}", f"{vals['NDCG@10']:.4f}", f"{vals['MRR@10']:.4f}"])
    return ["## UCLR (PGE -> contrastive autoencoder -> per-domain LoRA; synthetic, leave-one-out 1+99)", "",
            markdown_table(["model", "domain", "HR@10", "NDCG@10", "MRR@10"], rows)]
