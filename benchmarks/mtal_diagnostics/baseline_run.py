"""Diagnostic driver: one Joint / Alone baseline row through ``run_baseline`` (selection on validation)."""

from __future__ import annotations

import json
import time

from benchmarks.mtal_diagnostics.common import data_parser, federation
from cdrec.federated.baselines import BaselineConfig, run_baseline
from cdrec.models.assisted.aae import AAEParams


def main() -> None:
    parser = data_parser(__doc__)
    parser.add_argument("--mode", default="alone")
    parser.add_argument("--backbone", default="ae")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--sched", default="cosine")
    parser.add_argument("--bias", default="zero")
    parser.add_argument("--batch", type=int, default=100, help="AE batch size; also the papers' evaluation batch (implicit)")
    parser.add_argument("--cf-batch", type=int, default=256)
    args = parser.parse_args()
    fed = federation(args)
    start = time.perf_counter()
    ae = AAEParams(epochs=args.epochs, lr_schedule=args.sched, batch_size=args.batch)
    cfg = BaselineConfig(epochs=args.epochs, batch_size=args.cf_batch, seed=args.seed, ae=ae, ae_bias_init=args.bias)
    out = run_baseline(fed, args.mode, args.backbone, cfg, args.batch)
    print(json.dumps({"args": vars(args), "valid": out["valid"]["overall"], "test": out["test"]["overall"],
                      "wall_s": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
