"""Diagnostic driver: the Joint AE on the pooled ML-100K genre federation, validation and test RMSE
per epoch. The reported figure is test at the best validation epoch; the per-epoch test column and
the minimum over epochs are printed for reference only (the authors' scripts select on test)."""

from __future__ import annotations

import json
import time

import numpy as np
import scipy.sparse as sp
import torch

from benchmarks.mtal_diagnostics.common import data_parser, federation
from cdrec.federated.baselines import _pool
from cdrec.models.assisted.aae import AE, AAEParams, AutoencoderData, fit_autoencoder, predict_autoencoder
from cdrec.models.assisted.base import BaseModel


def main() -> None:
    parser = data_parser(__doc__, federation_flags=False)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--init", default="xavier")
    parser.add_argument("--sched", default="none")
    parser.add_argument("--clip", type=float, default=0.0)
    parser.add_argument("--bias", default="f0", help="output bias start: f0 (item means) or zero")
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--wd", type=float, default=5e-4)
    args = parser.parse_args()
    fed = federation(args)
    pooled = _pool(fed, list(range(len(fed.orgs))))
    train, valid, test = pooled.train, pooled.valid, pooled.test
    params = AAEParams(epochs=args.epochs, lr=args.lr, init=args.init, lr_schedule=args.sched,
                       grad_clip=args.clip, dropout=args.dropout, weight_decay=args.wd)
    torch.manual_seed(args.seed)
    ratings = sp.csr_matrix((train.y.astype(np.float32), (train.rows, train.cols)), shape=(fed.n_rows, pooled.n_cols))
    inputs = AutoencoderData(ratings)
    model = AE(pooled.n_cols, pooled.n_cols, params)
    if args.bias == "f0":
        f0 = BaseModel(pooled.n_cols, "explicit").fit(train.cols, train.y, n_rows=len(np.unique(train.rows)))
        with torch.no_grad():
            model.out_bias.copy_(torch.as_tensor(f0.values, dtype=torch.float32))
    lo, hi = float(train.y.min()), float(train.y.max())

    def rmse(entries) -> float:
        pred = np.clip(predict_autoencoder(model, inputs, entries.rows, entries.cols), lo, hi)
        return float(np.sqrt(np.mean((pred - entries.y) ** 2)))

    log: list[tuple[float, float]] = []
    start = time.time()

    def validate() -> float:
        v, t = (rmse(valid) if len(valid) else float("nan")), rmse(test)
        log.append((v, t))
        print(f"ep {len(log)} valid {v:.4f} test {t:.4f} {time.time() - start:.0f}s", flush=True)
        return v if len(valid) else t

    fit_autoencoder(model, inputs, ratings, seed=args.seed, epochs=args.epochs, validate=validate, patience=10**9)
    curve = np.array(log)
    summary: dict = {"args": vars(args), "test_last": curve[-1, 1], "min_test(for reference only)": float(curve[:, 1].min())}
    if len(valid):
        best = int(np.nanargmin(curve[:, 0]))
        summary.update(best_valid_epoch=best + 1, valid=curve[best, 0], test_at_best_valid=curve[best, 1])
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
