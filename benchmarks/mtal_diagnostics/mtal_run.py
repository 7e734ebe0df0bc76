"""Scratch driver: MTAL AAE on ML-100K (explicit/implicit, user genre K=18 / user uniform K=8 / item uniform K=8)."""
import argparse, json, time
import numpy as np, torch
torch.set_num_threads(1)
from cdrec.config import DataConfig
from cdrec.data.datasets import load_dataset
from cdrec.data.splits import ratio_split
from cdrec.federated.alignment import build_federation
from cdrec.federated.mtal import run_mtal
from cdrec.federated.organization import MTALConfig
from cdrec.federated.baselines import federation_metrics
from cdrec.federated.task import overall_curve
from cdrec.models.assisted.aae import AAEParams
from cdrec.experiments.mtal import ML100K_GENRES
ap = argparse.ArgumentParser()
ap.add_argument("--data-dir", default="/work/shared/data")
ap.add_argument("--domains", default="genre-random")
ap.add_argument("--alignment", default="user")
ap.add_argument("--feedback", default="explicit")
ap.add_argument("--rounds", type=int, default=10)
ap.add_argument("--epochs", type=int, default=20)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--eta", default="0.3")
ap.add_argument("--init", default="xavier")
ap.add_argument("--sched", default="none")
ap.add_argument("--clip", type=float, default=0.0)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--dataset", default="ml-100k")
ap.add_argument("--batch", type=int, default=100)
ap.add_argument("--base", default="mean")
a = ap.parse_args()
keep = ML100K_GENRES if a.domains == "genre-random" and a.dataset == "ml-100k" else None
data = load_dataset(DataConfig(name=a.dataset, data_dir=a.data_dir, domains=a.domains, keep_domains=keep, min_rating=None))
fed = build_federation(data, ratio_split(data, [0.81, 0.09, 0.1], by_user=True, seed=a.seed), alignment=a.alignment, feedback=a.feedback)
eta = a.eta if a.eta == "optimize" else float(a.eta)
t0 = time.perf_counter()
run = run_mtal(fed, MTALConfig(rounds=a.rounds, eta=eta, feedback=a.feedback, seed=a.seed, base=a.base,
                               model=AAEParams(epochs=a.epochs, lr=a.lr, batch_size=a.batch, init=a.init, lr_schedule=a.sched, grad_clip=a.clip)))
wall = time.perf_counter() - t0
key = "RMSE" if a.feedback == "explicit" else "MAP@10"
clip = run.orgs[0].clip
curve = overall_curve(run.orgs, a.feedback, clip)
pooled_valid = []
for t in range(len(curve)):
    vals = [o.history[t]["valid"] for o in run.orgs]
    n = np.array([v.get("n", 0) for v in vals]); m = np.array([v.get(key, np.nan) for v in vals])
    pooled_valid.append(float(np.sqrt(np.nansum(n * m**2) / n.sum())) if key == "RMSE" else float(np.nansum(n * m) / n.sum()))
test = federation_metrics(fed, "test", [o.test_scores() for o in run.orgs])["overall"]
print("valid by round", " ".join(f"{v:.4f}" for v in pooled_valid))
print("test  by round", " ".join(f"{c['test'][key]:.4f}" for c in curve))
print(json.dumps({"args": vars(a), "test_selected_on_valid": test, "best_rounds": [o.best_round() for o in run.orgs], "wall_s": round(wall, 1)}))
