"""Scratch driver: Joint AE on ML-100K (genre-random K=18 federation pooled), per-epoch valid/test RMSE.
Selection on validation; test printed per epoch only for reporting."""
import argparse, json, time, sys
import numpy as np, scipy.sparse as sp, torch
torch.set_num_threads(1)
from cdrec.config import DataConfig
from cdrec.data.datasets import load_dataset
from cdrec.data.splits import ratio_split
from cdrec.federated.alignment import build_federation
from cdrec.federated.baselines import _pool
from cdrec.models.assisted.aae import AAEParams, AE, AutoencoderData, fit_autoencoder, predict_autoencoder
from cdrec.models.assisted.base import BaseModel
from cdrec.experiments.mtal import ML100K_GENRES
ap = argparse.ArgumentParser()
ap.add_argument("--data-dir", default="/work/shared/data")
ap.add_argument("--epochs", type=int, default=200)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--init", default="xavier")
ap.add_argument("--sched", default="none")
ap.add_argument("--clip", type=float, default=0.0)
ap.add_argument("--bias", default="f0")
ap.add_argument("--dropout", type=float, default=0.5)
ap.add_argument("--wd", type=float, default=5e-4)
ap.add_argument("--ratios", default="0.81,0.09,0.1")
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
data = load_dataset(DataConfig(name="ml-100k", data_dir=a.data_dir, domains="genre-random", keep_domains=ML100K_GENRES))
fed = build_federation(data, ratio_split(data, [float(x) for x in a.ratios.split(",")], by_user=True, seed=a.seed))
b = _pool(fed, list(range(len(fed.orgs))))
tr, va, te = b.train, b.valid, b.test
n_rows = fed.n_rows
p = AAEParams(epochs=a.epochs, lr=a.lr, init=a.init, lr_schedule=a.sched, grad_clip=a.clip, dropout=a.dropout, weight_decay=a.wd)
torch.manual_seed(a.seed)
X = sp.csr_matrix((tr.y.astype(np.float32), (tr.rows, tr.cols)), shape=(n_rows, b.n_cols))
data_ = AutoencoderData(X)
model = AE(b.n_cols, b.n_cols, p)
if a.bias == "f0":
    f0 = BaseModel(b.n_cols, "explicit").fit(tr.cols, tr.y, n_rows=len(np.unique(tr.rows)))
    with torch.no_grad():
        model.out_bias.copy_(torch.as_tensor(f0.values, dtype=torch.float32))
lo, hi = float(tr.y.min()), float(tr.y.max())
def rmse(e):
    f = np.clip(predict_autoencoder(model, data_, e.rows, e.cols), lo, hi)
    return float(np.sqrt(np.mean((f - e.y) ** 2)))
log = []
t0 = time.time()
def validate():
    v = rmse(va) if len(va) else float("nan"); t = rmse(te)
    log.append((v, t)); print(f"ep {len(log)} valid {v:.4f} test {t:.4f} {time.time()-t0:.0f}s", flush=True)
    return v if len(va) else t
fit_autoencoder(model, data_, X, seed=a.seed, epochs=a.epochs, validate=validate, patience=10**9)
v = np.array(log)
if len(va):
    i = int(np.nanargmin(v[:, 0]))
    print(json.dumps({"args": vars(a), "best_valid_epoch": i + 1, "valid": v[i, 0], "test_at_best_valid": v[i, 1], "test_last": v[-1, 1], "min_test(for reference only)": float(v[:, 1].min())}))
else:
    print(json.dumps({"args": vars(a), "test_last": v[-1, 1], "min_test(for reference only)": float(v[:, 1].min()), "argmin": int(v[:, 1].argmin()) + 1}))
