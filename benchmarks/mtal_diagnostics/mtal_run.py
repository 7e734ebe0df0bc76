"""Diagnostic driver: MTAL with the AAE on one column (explicit/implicit; user genre K=18, user uniform
K=8 or item uniform K=8 via ``--domains``/``--alignment``), printing the pooled validation and test
curves by round and the test figure of each organization's round chosen on its validation."""

from __future__ import annotations

import json
import time

import numpy as np

from benchmarks.mtal_diagnostics.common import data_parser, federation
from cdrec.federated.baselines import federation_metrics, rating_clip
from cdrec.federated.mtal import run_mtal
from cdrec.federated.organization import MTALConfig
from cdrec.federated.task import overall_curve
from cdrec.models.assisted.aae import AAEParams


def pooled_validation(orgs: list, key: str, n_rounds: int, part: str = "valid") -> list[float]:
    """The organizations' validation metric per round (``part``: all of validation, or with ``--fit valid-split``
    its ``select`` half), pooled by entry count (RMSE as a root mean square)."""
    out = []
    for t in range(n_rounds):
        vals = [o.history[t][part] for o in orgs]
        n = np.array([v.get("n", 0) for v in vals], dtype=float)
        m = np.array([v.get(key, np.nan) for v in vals], dtype=float)
        out.append(float(np.sqrt(np.nansum(n * m**2) / n.sum())) if key == "RMSE" else float(np.nansum(n * m) / n.sum()))
    return out


def main() -> None:
    parser = data_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eta", default="0.3", help="a constant rate, or 'optimize'")
    parser.add_argument("--init", default="xavier")
    parser.add_argument("--sched", default="none")
    parser.add_argument("--clip", type=float, default=0.0)
    parser.add_argument("--batch", type=int, default=100, help="AAE batch; also the papers' evaluation batch (implicit)")
    parser.add_argument("--base", default="mean")
    parser.add_argument("--fit", default="train", help="entries w / an optimized eta are fitted on: train | valid | valid-split")
    parser.add_argument("--wopt", action="store_true", help="optimize the gradient-assistance weights w (Eq. 8)")
    args = parser.parse_args()
    fed = federation(args)
    eta = args.eta if args.eta == "optimize" else float(args.eta)
    model = AAEParams(epochs=args.epochs, lr=args.lr, batch_size=args.batch, init=args.init,
                      lr_schedule=args.sched, grad_clip=args.clip)
    start = time.perf_counter()
    run = run_mtal(fed, MTALConfig(rounds=args.rounds, eta=eta, feedback=args.feedback, seed=args.seed,
                                   base=args.base, assist_fit=args.fit, optimize_w=args.wopt, model=model))
    wall = time.perf_counter() - start
    key = "RMSE" if args.feedback == "explicit" else "MAP@10"
    curve = overall_curve(run.orgs, args.feedback, rating_clip(fed), args.batch)
    test = federation_metrics(fed, "test", [o.test_scores() for o in run.orgs], args.batch)["overall"]
    print("valid by round", " ".join(f"{v:.4f}" for v in pooled_validation(run.orgs, key, len(curve))))
    if args.fit == "valid-split":
        print("select-half valid by round", " ".join(f"{v:.4f}" for v in pooled_validation(run.orgs, key, len(curve), "select")))
    print("test  by round", " ".join(f"{c['test'][key]:.4f}" for c in curve))
    if args.feedback == "implicit":
        print("test  by round, papers' scoring", " ".join(f"{c['test'][key + '[paper]']:.4f}" for c in curve))
    print(json.dumps({"args": vars(args), "test_selected_on_valid": test,
                      "best_rounds": [o.best_round() for o in run.orgs], "wall_s": round(wall, 1)}))


if __name__ == "__main__":
    main()
