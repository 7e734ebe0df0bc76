"""Where a BPR-MF epoch's CPU time goes, per interaction, at each scaling size (not a unit test).

    OMP_NUM_THREADS=1 python -m benchmarks.profile_bprmf --out benchmarks/results/bprmf_profile.json --label after

Reads the tables that ``python -m benchmarks.run_all --only scaling --keep-tables`` leaves in
``scaling-work/`` and, for each, times ``epochs`` epochs of the scaling benchmark's BPR-MF (d=64,
batch 2048, ``sparse=True``) split into *sampling* (the sampler's generator: shuffle, negative
sampling with the exclusion test, batch assembly) and *step* (the closed-form step and lazy Adam),
as process CPU seconds per 10^6 training rows. Run it with ``PYTHONPATH`` on another checkout to
profile that code the same way (the figures before/after a change). Also records a digest of the
trained tables, so two checkouts can be compared for identical results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch


def profile(path: Path, epochs: int) -> dict:
    from benchmarks.scaling import load_table
    from cdrec.config import TrainConfig
    from cdrec.data.samplers import BPRSampler
    from cdrec.data.splits import leave_one_out
    from cdrec.models.cf.bprmf import BPRMF, BPRMFParams
    from cdrec.train.trainer import to_device

    data = load_table(str(path))
    c = time.process_time()
    split = leave_one_out(data, seed=0)
    split_s = time.process_time() - c
    c = time.process_time()
    sampler = BPRSampler(split.train, 2048, seed=0)
    init_s = time.process_time() - c
    torch.manual_seed(0)
    model = BPRMF.from_split(split, BPRMFParams(dim=64, sparse=True))
    opt = model.configure_optimizers(TrainConfig(batch_size=2048))
    rows = len(split.train)
    out = {"interactions": len(data), "train_rows": rows, "users": data.n_users, "items": data.n_items, "optimizer": type(opt).__name__,
           "split_cpu_s": split_s, "sampler_init_cpu_s": init_s, "epochs": []}
    cpu = torch.device("cpu")
    for epoch in range(epochs):
        sampling = step = 0.0
        t = time.process_time()
        for batch in sampler.epoch(epoch):
            now = time.process_time()
            sampling += now - t
            model.closed_form_step(to_device(batch, cpu), [opt])
            t = time.process_time()
            step += t - now
        out["epochs"].append({"sampling_cpu_s": sampling, "step_cpu_s": step,
                              "per_1e6_rows": {"total": (sampling + step) / rows * 1e6, "sampling": sampling / rows * 1e6, "step": step / rows * 1e6}})
    w = [model.user_emb.weight.detach().numpy(), model.item_emb.weight.detach().numpy()]
    out["weights_sha1"] = hashlib.sha1(b"".join(x.tobytes() for x in w)).hexdigest()
    med = lambda k: float(np.median([e["per_1e6_rows"][k] for e in out["epochs"]]))  # noqa: E731
    out["median_per_1e6_rows"] = {k: med(k) for k in ("total", "sampling", "step")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile_bprmf", description=__doc__.splitlines()[0])
    ap.add_argument("--tables", type=Path, default=Path("benchmarks/out/scaling-work"))
    ap.add_argument("--sizes", default="100000,1000000,10000000")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    res = {"label": args.label, "epochs": args.epochs, "sizes": {}}
    for size in args.sizes.split(","):
        r = profile(args.tables / f"table-{size}.npz", args.epochs)
        res["sizes"][size] = r
        m = r["median_per_1e6_rows"]
        print(f"{args.label} {size}: {r['optimizer']}, CPU s per 1e6 rows: total {m['total']:.3f} sampling {m['sampling']:.3f} step {m['step']:.3f}; sampler init {r['sampler_init_cpu_s']:.2f} s; {r['weights_sha1'][:12]}", flush=True)
        args.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
