"""cdrec's SASRec (``sasrec-dt`` on one domain = plain SASRec) for the peer comparison on ML-100K.

Matched to RecBole's SASRec: d=64, 2 layers, 2 heads, inner 256, dropout 0.5, max_len 50, CE over
all items, Adam at a constant lr 1e-3 (the sequential family's warm-up / plateau schedule is turned
off, as RecBole has none), leave-one-out, 1+99 sampled test candidates.

One difference is structural and stated in the report: RecBole trains on every prefix of every
training sequence (one target per sample), cdrec on one right-aligned window per user with a target
at every position (the original SASRec). So that a step sees the same number of targets, cdrec's
batch holds ``batch_size`` *target positions* (2048 in RecBole = 2048 targets per step).
"""

from __future__ import annotations

import time

import torch

from benchmarks.cdrec_driver import EpochClock, last_epoch_validator
from cdrec.config import RunConfig, TrainConfig
from cdrec.data.candidates import add_sampled_candidates
from cdrec.data.loaders import load_ml100k
from cdrec.data.sequences import training_sequences
from cdrec.data.splits import leave_one_out
from cdrec.models.sequential.sasrec import SASRecDT, SASRecParams
from cdrec.train.sequential import eval_view, evaluate_view, train_batches
from cdrec.train.trainer import Trainer, resolve_device, seed_everything


def run(spec: dict, out: dict) -> None:
    device = resolve_device(spec.get("device", "cpu"))
    data = load_ml100k(spec["data_dir"])
    split = add_sampled_candidates(leave_one_out(data, mixed=True, seed=0), 99, seed=0)
    max_len = spec.get("max_len", 50)
    params = SASRecParams(
        dim=spec["dim"], n_layers=spec["layers"], n_heads=spec.get("heads", 2), inner_size=4 * spec["dim"],
        dropout=spec.get("dropout", 0.5), max_len=max_len, loss="full", warmup_epochs=0,
    )
    seed_everything(0)
    model = SASRecDT(data.n_items, data.item_offsets, params)
    train = training_sequences(split, max_len)
    n_targets = int((train.targets > 0).sum())
    per_batch = max(1, round(spec["batch_size"] * len(train) / max(n_targets, 1)))
    batches, n_batches = train_batches(train, per_batch, 0)
    cfg = TrainConfig(epochs=spec["epochs"], batch_size=per_batch, lr=spec.get("lr", 1e-3), patience=10**6, metric="epoch", progress=False, device=str(device))
    trainer = Trainer(model, cfg, seed=0, device=device)
    trainer.optimizers = [torch.optim.Adam(model.parameters(), lr=cfg.lr)]
    model.schedulers = None
    clock = EpochClock(batches)
    autocast = spec.get("bf16", False)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        trainer.fit(clock, last_epoch_validator(), n_batches=n_batches)
    run_cfg = RunConfig()
    run_cfg.eval.ks = [10]
    w, c = time.perf_counter(), time.process_time()
    view = eval_view(split, "test", max_len, None)
    ev = evaluate_view(model, split, view, run_cfg, device)
    out.update(
        epoch_s=clock.wall, epoch_cpu_s=clock.cpu, eval_s=time.perf_counter() - w, eval_cpu_s=time.process_time() - c,
        metrics={"hit@10": ev.metrics["overall"]["HR@10"], "ndcg@10": ev.metrics["overall"]["NDCG@10"], "n": ev.metrics["overall"]["n"]},
        train_sequences=len(train), train_targets=n_targets, sequences_per_batch=per_batch, batches_per_epoch=n_batches,
    )
