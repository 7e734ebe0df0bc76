"""Time per training epoch and peak memory of cdrec's MERIT on Food-Kitchen (d=256, batch 256).

Reference (issue 9, measured on the authors' public code on this machine with 2 CPU cores):
450 s per training epoch, 42 s per validation pass, 16 GB peak memory. Targets: <= 0.5x the time
and <= 0.25x the memory at the same d and batch size.

A full epoch is long on a shared CPU, so by default the script times ``--batches`` training
batches (after one warm-up batch) and extrapolates to the epoch's batch count; it says so in its
output. ``--batches 0`` runs the full epoch. Peak memory is the process's peak resident set
(``ru_maxrss``) on CPU, plus ``torch.cuda.max_memory_allocated`` on GPU; ``peak_rss_train_mb`` is the
peak before validation. Validation runs ``train.batch_size`` rows per batch as ``cdrec run`` does by
default (``--eval-batch`` overrides it).

    OMP_NUM_THREADS=2 python benchmarks/bench_merit.py [--batches 6] [--valid-rows 1024] [--device auto] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from cdrec.config import load_config
from cdrec.data.candidates import add_sampled_candidates
from cdrec.data.loaders import load_amazon_cdsr
from cdrec.data.sequences import training_sequences
from cdrec.data.splits import leave_one_out
from cdrec.models import registry
from cdrec.results.schema import peak_rss_mb
from cdrec.train.sequential import EvalView, eval_rows, eval_view, evaluate_view, train_batches
from cdrec.train.trainer import resolve_device, to_device

REF_EPOCH_S = 450.0
REF_VALID_S = 42.0
REF_PEAK_GB = 16.0


def matmul_gflops(device: torch.device) -> float:
    """Throughput of a plain matmul of the expert's shape right now: the machine is shared, so
    this tells how much compute the timed batches could get."""
    a = torch.randn(4096, 256, device=device)
    w = torch.randn(256, 683, device=device)
    a @ w
    t0 = time.perf_counter()
    for _ in range(10):
        a @ w
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 10 * 2 * 4096 * 256 * 683 / (time.perf_counter() - t0) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="afk")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=6, help="training batches to time (0 = full epoch)")
    ap.add_argument("--valid-rows", type=int, default=1024, help="validation rows to time (0 = all)")
    ap.add_argument("--eval-batch", type=int, default=0, help="rows per validation batch (0 = the default: the training batch)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = resolve_device(args.device)

    data = load_amazon_cdsr(args.data)
    split = add_sampled_candidates(leave_one_out(data, mixed=True, seed=0), 999, seed=0)
    params = registry.build_params("merit", {"dim": args.dim})
    view = training_sequences(split, params.max_len)
    model = registry.get("merit").cls(data.n_items, data.item_offsets, params).to(device)
    opt = model.configure_optimizers(load_config(None, ["model=merit"]).train)
    batches, n_batches = train_batches(view, args.batch, seed=0)
    # the warm-up schedule starts at lr * 1e-5; the cost per step does not depend on it
    model.train()
    timed, t_train = 0, 0.0
    for i, batch in enumerate(batches(0)):
        batch = to_device(batch, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model.loss(batch).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i > 0:  # batch 0 is warm-up
            t_train += time.perf_counter() - t0
            timed += 1
        if args.batches and timed >= args.batches:
            break
    per_batch = t_train / max(timed, 1)
    epoch_s = per_batch * n_batches
    full_epoch = args.batches == 0 or timed >= n_batches - 1
    train_peak_mb = peak_rss_mb()

    sets = ["model=merit", f"train.batch_size={args.batch}"] + ([f"eval.batch_size={args.eval_batch}"] if args.eval_batch else [])
    cfg = load_config(None, sets)
    valid: EvalView = eval_view(split, "valid", params.max_len, None)
    n_valid = len(valid.rows)
    if args.valid_rows and args.valid_rows < n_valid:
        valid = EvalView(valid.rows[: args.valid_rows], type(valid.history)(valid.history.users[: args.valid_rows], valid.history.items[: args.valid_rows], valid.history.domains[: args.valid_rows]), valid.candidates[: args.valid_rows], valid.target_domain[: args.valid_rows])
    t0 = time.perf_counter()
    evaluate_view(model, split, valid, cfg, device)
    valid_s = (time.perf_counter() - t0) * n_valid / len(valid.rows)

    peak_mb = peak_rss_mb()
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    out = {
        "device": str(device),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "matmul_gflops_now": round(matmul_gflops(device), 1),
        "threads": args.threads,
        "dim": args.dim,
        "batch_size": args.batch,
        "eval_batch_size": eval_rows(cfg),
        "n_batches_per_epoch": n_batches,
        "timed_batches": timed,
        "extrapolated": not full_epoch,
        "train_s_per_batch": round(per_batch, 3),
        "train_s_per_epoch": round(epoch_s, 1),
        "valid_s_per_pass": round(valid_s, 1),
        "valid_extrapolated_from_rows": len(valid.rows),
        "peak_rss_mb": peak_mb,
        "peak_rss_train_mb": train_peak_mb,
        "peak_gpu_mb": None if gpu_mb is None else round(gpu_mb, 1),
        "ratio_epoch_time_vs_authors": round(epoch_s / REF_EPOCH_S, 3),
        "ratio_valid_time_vs_authors": round(valid_s / REF_VALID_S, 3),
        "ratio_peak_memory_vs_authors": round(peak_mb / (REF_PEAK_GB * 1024), 3),
        "targets": {"epoch_time_ratio": 0.5, "peak_memory_ratio": 0.25},
    }
    print(json.dumps(out, indent=2))
    note = "extrapolated from" if out["extrapolated"] else "measured over"
    print(f"MERIT {args.data} d={args.dim} batch={args.batch} on {device} ({args.threads} threads): "
          f"{epoch_s:.1f} s/epoch ({note} {timed} of {n_batches} batches; authors' code 450 s -> x{out['ratio_epoch_time_vs_authors']}), "
          f"validation {valid_s:.1f} s (authors 42 s), peak RSS {peak_mb:.0f} MB (authors 16 GB -> x{out['ratio_peak_memory_vs_authors']})")
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
