"""Scratch driver: a Joint / Alone baseline row through run_baseline (selection on validation)."""
import argparse, json, time
import torch
torch.set_num_threads(1)
from cdrec.config import DataConfig
from cdrec.data.datasets import load_dataset
from cdrec.data.splits import ratio_split
from cdrec.federated.alignment import build_federation
from cdrec.federated.baselines import BaselineConfig, run_baseline
from cdrec.models.assisted.aae import AAEParams
from cdrec.experiments.mtal import ML100K_GENRES
ap = argparse.ArgumentParser()
ap.add_argument("--data-dir", default="/work/shared/data")
ap.add_argument("--domains", default="genre-random")
ap.add_argument("--alignment", default="user")
ap.add_argument("--feedback", default="explicit")
ap.add_argument("--mode", default="alone")
ap.add_argument("--backbone", default="ae")
ap.add_argument("--epochs", type=int, default=200)
ap.add_argument("--sched", default="cosine")
ap.add_argument("--bias", default="zero")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--dataset", default="ml-100k")
ap.add_argument("--batch", type=int, default=100)
ap.add_argument("--cf-batch", type=int, default=256)
a = ap.parse_args()
keep = ML100K_GENRES if a.domains == "genre-random" and a.dataset == "ml-100k" else None
data = load_dataset(DataConfig(name=a.dataset, data_dir=a.data_dir, domains=a.domains, keep_domains=keep, min_rating=None))
fed = build_federation(data, ratio_split(data, [0.81, 0.09, 0.1], by_user=True, seed=a.seed), alignment=a.alignment, feedback=a.feedback)
t0 = time.perf_counter()
out = run_baseline(fed, a.mode, a.backbone, BaselineConfig(epochs=a.epochs, batch_size=a.cf_batch, seed=a.seed, ae=AAEParams(epochs=a.epochs, lr_schedule=a.sched, batch_size=a.batch), ae_bias_init=a.bias))
print(json.dumps({"args": vars(a), "valid": out["valid"]["overall"], "test": out["test"]["overall"], "wall_s": round(time.perf_counter() - t0, 1)}))
