"""Time per training epoch and peak memory of cdrec's MERIT on Food-Kitchen (d=256, batch 256),
side by side with the authors' public code (github.com/DiMarzioBian/MERIT) in the same run.

``--authors-repo`` names a git directory holding the authors' code (default: the mirror under
``/work/.mirror``); the script writes the files of the pinned commit :data:`AUTHORS_COMMIT` (its
code and the afk data files it ships) to a temporary folder, never into this repository, and in a
child process with the same thread count builds the authors' ``Trainer`` (d=256, batch 256, their
per-position negatives) and times the same number of training batches, each with its data loading
(their ``DataLoader`` draws the negatives, so their epoch time includes it; cdrec draws them inside
the loss). Both epoch times are extrapolated from the timed batches to the epoch's 28 batches; the
peak resident memory of each side is its own process's. Without ``--authors-repo`` (or with
``--authors-repo none``) the ratios fall back to figures measured earlier on the authors' code on
this machine (issue 9: 450 s per epoch, 42 s per validation pass, 16 GB peak), and the output says so.

A full epoch is long on a shared CPU, so by default the script times ``--batches`` training
batches (after one warm-up batch) and extrapolates to the epoch's batch count; it says so in its
output. ``--batches 0`` runs the full epoch. Peak memory is the process's peak resident set
(``ru_maxrss``) on CPU, plus ``torch.cuda.max_memory_allocated`` on GPU; ``peak_rss_train_mb`` is the
peak before validation. Validation runs ``train.batch_size`` rows per batch as ``cdrec run`` does by
default (``--eval-batch`` overrides it). Targets (issue 29): epoch time <= 0.10x and peak memory
<= 0.25x the authors'.

    python benchmarks/bench_merit.py [--batches 6] [--valid-rows 1024] [--device auto] [--threads 2] [--authors-repo PATH|none]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

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

AUTHORS_COMMIT = "932ebee5d6aa06e1121687c36974a86bab7bccef"
"""The authors' latest public commit (the one ``cdrec.models.sequential.merit`` cites)."""
AUTHORS_MIRROR = Path("/work/.mirror/DiMarzioBian+MERIT/repo")
AUTHORS_CODE_FILES = (
    "trainer.py",
    "noter.py",
    "models/MERIT.py",
    "models/attention.py",
    "models/ffn.py",
    "models/utils/initialization.py",
    "models/utils/position.py",
    "models/data/dataloader.py",
    "models/data/evaluation.py",
)


def write_authors_tree(repo: Path, dest: Path, data: str) -> None:
    """The authors' code and the ``data`` files it reads with ``--raw`` at :data:`AUTHORS_COMMIT`,
    written under ``dest`` from the git directory ``repo``."""
    for path in (*AUTHORS_CODE_FILES, f"data/{data}/{data}_50_preprocessed.txt", f"data/{data}/map_item_50.txt"):
        shown = subprocess.run(["git", "--git-dir", str(repo), "show", f"{AUTHORS_COMMIT}:{path}"], capture_output=True)
        if shown.returncode != 0:
            raise SystemExit(f"error: --authors-repo {repo}: cannot read {path} at {AUTHORS_COMMIT[:7]}: {shown.stderr.decode().strip()}")
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(shown.stdout)


def time_authors(repo: Path, args: argparse.Namespace) -> dict:
    """Run :func:`authors_child` in a fresh process on a temporary copy of the authors' code; its
    figures (last line of its output, JSON)."""
    with tempfile.TemporaryDirectory(prefix="merit-authors-") as tmp:
        write_authors_tree(repo, Path(tmp), args.data)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--authors-child", tmp, "--data", args.data, "--dim", str(args.dim),
               "--batch", str(args.batch), "--batches", str(args.batches), "--threads", str(args.threads), "--device", args.device]
        repo_root = str(Path(__file__).resolve().parents[1])  # cdrec stays importable from the temporary folder
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": os.pathsep.join(filter(None, [repo_root, os.environ.get("PYTHONPATH")]))}
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, env=env)
    if done.returncode != 0:
        raise SystemExit(f"error: the authors' code failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def authors_child(args: argparse.Namespace) -> None:
    """Inside the temporary copy: the authors' ``Trainer`` at their defaults (``main.py``) with
    ``--data``, ``--dim``, ``--batch``, ``--device``; times ``--batches`` training batches after one warm-up
    batch, each with its loading (their ``TrainDataset`` draws 128 negatives per position and domain)
    and their ``train_batch`` (forward, loss, backward, AdamW step). Prints one JSON line."""
    import random

    root = Path(args.authors_child)
    sys.path.insert(0, str(root))
    torch.set_num_threads(args.threads)
    random.seed(3407)
    np.random.seed(3407)
    torch.manual_seed(3407)
    from trainer import Trainer  # the authors' module, from the temporary copy

    path_data = root / "data" / args.data
    device = resolve_device(args.device)
    ns = argparse.Namespace(
        name="MERIT", ver="0", data=args.data, raw=True, len_max=50, n_neg=128, n_mtc=999, d_embed=args.dim, n_attn=1, n_head=2,
        dropout=0.5, temp=0.75, cuda="cpu", seed=3407, bs=args.batch, n_worker=0, n_epoch=500, n_warmup=10, lr=1e-4, l2=5.0,
        lr_g=0.5, lr_p=30, device=device, len_trim=47, es_p=61, bse=args.batch * 4, path_root=str(root),
        path_data=str(path_data), path_log=str(root / "log"), f_raw=str(path_data / f"{args.data}_50_preprocessed.txt"),
        f_data=str(path_data / f"{args.data}_50_seq.pkl"),
    )
    trainer = Trainer(ns, SimpleNamespace(log_num_param=lambda model: None, log_msg=lambda msg: None))
    trainer.model.train()
    trainer.optimizer.zero_grad()  # once per epoch, as their run_epoch does
    n_batches = len(trainer.trainloader)
    loader = iter(trainer.trainloader)
    timed, t_load, t_step = 0, 0.0, 0.0
    for i in range(n_batches):
        t0 = time.perf_counter()
        batch = next(loader)
        t1 = time.perf_counter()
        trainer.train_batch(batch)  # ends with loss.item(): synchronized on GPU
        t2 = time.perf_counter()
        if i > 0:  # batch 0 is warm-up
            t_load, t_step, timed = t_load + t1 - t0, t_step + t2 - t1, timed + 1
        if args.batches and timed >= args.batches:
            break
    per_batch = (t_load + t_step) / max(timed, 1)
    print(json.dumps({
        "commit": AUTHORS_COMMIT, "n_batches_per_epoch": n_batches, "timed_batches": timed,
        "load_s_per_batch": round(t_load / max(timed, 1), 3), "step_s_per_batch": round(t_step / max(timed, 1), 3),
        "train_s_per_batch": round(per_batch, 3), "train_s_per_epoch": round(per_batch * n_batches, 1), "peak_rss_mb": peak_rss_mb(),
    }))


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
    ap.add_argument("--authors-repo", default=str(AUTHORS_MIRROR) if AUTHORS_MIRROR.exists() else "none",
                    help="git directory of github.com/DiMarzioBian/MERIT to time side by side ('none': the issue-9 constants)")
    ap.add_argument("--authors-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.authors_child:
        authors_child(args)
        return
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
    loader = batches(0)
    for i in range(n_batches):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()  # with the batch's loading, as the authors' side is timed
        batch = to_device(next(loader), device)
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
    if args.authors_repo != "none":
        authors = time_authors(Path(args.authors_repo), args)
        ref_epoch_s, ref_peak_mb = authors["train_s_per_epoch"], authors["peak_rss_mb"]
        authors["source"] = f"measured side by side in this run (commit {AUTHORS_COMMIT[:7]}, {args.threads} threads, same batch count)"
    else:
        ref_epoch_s, ref_peak_mb = REF_EPOCH_S, REF_PEAK_GB * 1024
        authors = {"source": "constants of issue 9 (measured earlier on this machine, 2 cores): --authors-repo none",
                   "train_s_per_epoch": REF_EPOCH_S, "peak_rss_mb": ref_peak_mb}
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
        "authors": authors,
        "ratio_epoch_time_vs_authors": round(epoch_s / ref_epoch_s, 3),
        "ratio_valid_time_vs_authors_issue9": round(valid_s / REF_VALID_S, 3),
        "ratio_peak_memory_vs_authors": round(peak_mb / ref_peak_mb, 3),
        "targets": {"epoch_time_ratio": 0.10, "peak_memory_ratio": 0.25},
    }
    print(json.dumps(out, indent=2))
    note = "extrapolated from" if out["extrapolated"] else "measured over"
    print(f"MERIT {args.data} d={args.dim} batch={args.batch} on {device} ({args.threads} threads): "
          f"{epoch_s:.1f} s/epoch ({note} {timed} of {n_batches} batches; authors' code {ref_epoch_s:.1f} s -> x{out['ratio_epoch_time_vs_authors']}), "
          f"validation {valid_s:.1f} s (authors 42 s, issue 9), peak RSS {peak_mb:.0f} MB (authors {ref_peak_mb:.0f} MB -> x{out['ratio_peak_memory_vs_authors']}); "
          f"authors' figures: {authors['source']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
