"""Data-parallel training: torchrun with 2 CPU processes (gloo on loopback) against one process.

Tolerance. Each rank trains on its half of every batch and its loss is weighted by its share, so the
averaged DDP gradient is the gradient of the mean loss over the whole batch: mathematically the
one-process update. What differs is floating-point summation order (two half-batch means averaged vs
one mean), about 1e-7 relative per step; over a few epochs that can flip a near-tie between two
candidates' scores and move a ranking metric by one row. So metrics must agree within 0.02 absolute
(about 2 of 100 test rows) and the training loss within 1e-4 relative; on this data they usually agree
exactly.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from cdrec.config import TrainConfig
from cdrec.train import distributed as dist_
from cdrec.train.trainer import Trainer

METRIC_TOL = 0.02
LOSS_RTOL = 1e-4


@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_one_process(tmp_path):
    from cdrec.config import load_config
    from cdrec.experiments.pipeline import run_config
    from tests.train._runs import REPO, cli_env, results, tiny_config

    cfg_path = tiny_config(tmp_path / "tiny.yaml")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "cdrec", "run", str(cfg_path), "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=cli_env(), cwd=REPO, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote ") == 1  # only rank 0 prints and writes
    ddp = results(tmp_path / "ddp")
    one = run_config(load_config(cfg_path), tmp_path / "one").to_dict()
    for domain, values in one["metrics"].items():
        for name, value in values.items():
            assert ddp["metrics"][domain][name] == pytest.approx(value, abs=METRIC_TOL), (domain, name)
    loss_one = [e["loss"] for e in one["history"][0]["epochs"]]
    loss_ddp = [e["loss"] for e in ddp["history"][0]["epochs"]]
    assert np.allclose(loss_ddp, loss_one, rtol=LOSS_RTOL, atol=0)
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["config.yaml", "model.pt", "results.json", "results.md"]


@pytest.mark.parametrize("n", [0, 1, 2, 5, 7, 256])
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_shards_partition_every_batch(n, ranks):
    batch = {"user": np.arange(n), "pos": np.arange(n) * 10, "graph": np.ones((3, 3))}
    rows, weights = [], []
    for r in range(ranks):
        part, w = dist_.shard_batch(batch, ranks, r)
        assert part["graph"].shape == (3, 3)  # not a row array: passed whole
        assert np.array_equal(part["pos"], part["user"] * 10)
        if w > 0:
            rows.append(part["user"])
        weights.append(w)
    got = np.concatenate(rows) if rows else np.zeros(0, dtype=int)
    assert np.array_equal(got, np.arange(n))  # contiguous, in order, each row once
    if n:
        assert sum(weights) == pytest.approx(ranks)  # mean of the weighted shard means = batch mean


class _CustomStep(nn.Module):
    """A model with its own optimizers and train_step (the bi-level / multi-optimizer path)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(4))

    def configure_optimizers(self, cfg):
        return [torch.optim.SGD(self.parameters(), lr=0.1)]

    def train_step(self, batch, optimizers):
        opt = optimizers[0]
        opt.zero_grad()
        loss = ((batch["x"].to(self.w.dtype) @ self.w - batch["y"].to(self.w.dtype)) ** 2).mean()
        loss.backward()
        opt.step()
        return loss.item()


def test_custom_train_step_single_process_trains_without_wrapper():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 3.0])
    model = _CustomStep()
    trainer = Trainer(model, TrainConfig(epochs=30, patience=100, progress=False), seed=0, device=torch.device("cpu"), metric="neg_loss")
    fit = trainer.fit(lambda e: [{"user": np.arange(64), "x": x, "y": y}], lambda: {"neg_loss": -float(((x @ model.w.detach().numpy() - y) ** 2).mean())})
    assert trainer._ddp is None and trainer.world_size == 1
    assert fit.history[-1]["loss"] < 0.05 * fit.history[0]["loss"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toy_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4))
    return x, x @ np.array([1.0, -2.0, 0.5, 3.0])


class _LossModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(4, dtype=torch.float64))

    def loss(self, batch):
        return ((batch["x"] @ self.w - batch["y"]) ** 2).mean()


def _toy_fit(model: nn.Module) -> np.ndarray:
    x, y = _toy_data()
    cfg = TrainConfig(epochs=3, patience=100, progress=False, optimizer="sgd", lr=0.05)
    batches = lambda e: ({"user": np.arange(s, min(s + 16, 50)), "x": x[s : s + 16], "y": y[s : s + 16]} for s in range(0, 50, 16))  # noqa: E731
    Trainer(model, cfg, seed=0, device=torch.device("cpu"), metric="m").fit(batches, lambda: {"m": float(model.w.sum())})
    return model.w.detach().numpy().copy()


def _worker(rank: int, port: int, out: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist_.init_from_env("cpu")
    w_loss = _toy_fit(_LossModel())
    w_custom = _toy_fit(_CustomStep().double())
    gathered = dist_.all_gather_object((w_loss, w_custom))
    if rank == 0:
        np.save(out, np.stack([np.concatenate(g) for g in gathered]))
    dist_.teardown()
    # leave without the interpreter's exit-time destructors: gloo's threads can abort a rank there
    # ("terminate called without an active exception") after the group was already torn down cleanly
    os._exit(0)


@pytest.mark.slow
def test_two_ranks_loss_and_custom_step_models(tmp_path):
    """2 gloo ranks (torch.multiprocessing, free loopback port): a loss() model ends with the
    one-process weights (batches of 16, 17 and 17 rows with last batch 2 rows: unequal shards are
    weighted); a custom train_step model stays identical across ranks (parameter averaging)."""
    import torch.multiprocessing as mp

    out = str(tmp_path / "w.npy")
    mp.spawn(_worker, args=(_free_port(), out), nprocs=2, join=True)
    per_rank = np.load(out)
    assert np.array_equal(per_rank[0], per_rank[1])  # ranks in sync, both models
    single = _toy_fit(_LossModel())
    assert np.allclose(per_rank[0][:4], single, rtol=1e-12, atol=1e-12)
    assert not np.allclose(per_rank[0][4:], 0)  # the custom model trained
