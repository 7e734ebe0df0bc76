"""One Trainer for every model that trains by mini-batches.

The loop is seeded per epoch (``torch.manual_seed`` and the sampler's ``epoch_rng``), so a run
resumed from its checkpoint draws exactly what an uninterrupted run would have drawn. After each
epoch it validates, tracks the best state for early stopping, and writes an atomic checkpoint.

A model plugs in through ``loss(batch) -> Tensor``. Models that need more control (several
optimizers, bi-level steps) implement ``configure_optimizers(train_config)`` and/or
``train_step(batch, optimizers) -> float``; ``on_epoch_end(epoch, valid_metrics)`` runs after
validation (schedulers). A model whose training carries state outside its parameters and optimizers
(LR schedulers, step counters, a held-out batch stream) returns it from ``training_state() -> dict``
and takes it back in ``load_training_state(state)``; the checkpoint stores it, so a resumed run
continues that state instead of restarting it. A ``loss()``-based model whose ``zero_grad_each_step``
is False (MERIT under ``authors_code: [epoch_grad_accumulation]``) has its gradients zeroed once at
the start of each epoch instead of before every step, so each step uses the sum of the epoch's
gradients so far. Each epoch's loss and validation metrics also go to ``train.logger``
(:mod:`cdrec.train.logger`: TensorBoard under the run folder).

Under ``torchrun`` (world size > 1) the same loop trains data-parallel: see
:mod:`cdrec.train.distributed` for how batches, gradients, evaluation and checkpoints are split. With
one process nothing is wrapped and the loop is the plain one.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from cdrec.config import TrainConfig
from cdrec.errors import CdrecError
from cdrec.results.schema import atomic_path, peak_rss_mb
from cdrec.train import distributed as dist_
from cdrec.train import progress
from cdrec.train.logger import epoch_logger

Batch = dict[str, "np.ndarray | torch.Tensor"]


def resolve_device(name: str, option: str = "train.device") -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is a user error (named as ``option``)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise CdrecError(f"{option}: 'cuda' asked but no CUDA GPU is available; use auto or cpu")
    if name not in ("cpu", "cuda"):
        raise CdrecError(f"{option}: expected auto, cpu or cuda, got {name!r}")
    if name == "cuda" and dist_.env_world_size() > 1:  # torchrun: one GPU per local rank
        count = torch.cuda.device_count()
        if dist_.local_rank() >= count:
            raise CdrecError(f"torchrun: local rank {dist_.local_rank()} needs GPU {dist_.local_rank()} but this node has {count}; use --nproc-per-node {count}")
        return torch.device("cuda", dist_.local_rank())
    return torch.device(name)


def seed_everything(seed: int) -> None:
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def to_device(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in batch.items():
        tensor = torch.as_tensor(value)
        out[key] = tensor.to(device, non_blocking=True)
    return out


def atomic_torch_save(obj: object, path: Path) -> None:
    """``torch.save`` through a temporary file and rename (a kill never leaves half a checkpoint)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


class DenseGradients:
    """An optimizer step pre-hook replacing every sparse (row) gradient of the optimizer's parameters
    by its dense equivalent (dense Adam, fused or not, takes dense gradients only).

    On the CPU the rows are scattered into one zeroed buffer per parameter, kept from step to step
    (allocating a table-sized tensor each step costs page faults and a fill, more than the scatter);
    the buffer is the parameter's ``grad`` until the next ``zero_grad``. On a GPU ``to_dense``."""

    def __init__(self) -> None:
        self.buffers: dict[int, torch.Tensor] = {}

    def __call__(self, optimizer: torch.optim.Optimizer, *_: object) -> None:
        for group in optimizer.param_groups:
            for param in group["params"]:
                grad = param.grad
                if grad is None or not grad.is_sparse:
                    continue
                if grad.is_cuda or grad.sparse_dim() != 1:
                    param.grad = grad.to_dense()
                    continue
                buffer = self.buffers.get(id(param))
                if buffer is None or buffer.shape != param.shape or buffer.dtype != param.dtype or buffer.device != param.device:
                    buffer = self.buffers[id(param)] = torch.empty_like(param)
                param.grad = buffer.zero_().index_add_(0, grad._indices()[0], grad._values())


def make_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig, *, fused: bool = False, sparse_gradients: bool = False) -> torch.optim.Optimizer:
    """The optimizer of ``cfg``; ``fused`` asks Adam for its fused kernel (one pass over each tensor per
    step, the same update) where every parameter lives on the CPU or a CUDA device. ``sparse_gradients``
    (parameters of ``nn.Embedding(..., sparse=True)`` tables) makes every sparse gradient dense before
    each step (:class:`DenseGradients`), so the optimizer is still the dense one over whole tables."""
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "adam":
        fused = fused and all(p.device.type in ("cpu", "cuda") for p in params)
        optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **({"fused": True} if fused else {}))
    elif cfg.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise CdrecError(f"train.optimizer: expected adam, adamw or sgd, got {cfg.optimizer!r}")
    if sparse_gradients:
        optimizer.register_step_pre_hook(DenseGradients())
    return optimizer


@dataclass
class FitResult:
    best_epoch: int
    best_metric: float
    history: list[dict] = field(default_factory=list)
    train_s: float = 0.0
    peak_rss_mb: float = 0.0
    resumed_from: int = 0
    """Epochs already done in the checkpoint this fit resumed from (0: started fresh)."""

    def history_entry(self, scope: str, **extra: object) -> dict:
        """The ``history`` record of one trained scope in ``results.json``."""
        entry = {"scope": scope, "best_epoch": self.best_epoch, **extra, "epochs": self.history}
        if self.resumed_from:
            entry["resumed_from"] = self.resumed_from
        return entry


class _LossForward(nn.Module):
    """``forward(batch) = model.loss(batch) * weight``: DistributedDataParallel hooks ``forward``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor], weight: float) -> torch.Tensor:
        loss = self.model.loss(batch)
        return loss * weight if weight != 1.0 else loss


class Trainer:
    """Train ``model`` on ``batches(epoch)``, validate with ``validate()`` (higher is better)."""

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        *,
        seed: int,
        device: torch.device,
        checkpoint: Path | None = None,
        metric: str | None = None,
        minimize: bool = False,
        desc: str = "train",
    ) -> None:
        dist_.init_from_env(device.type)  # no-op for one process or when `cdrec run` already joined
        self.model = model.to(device)
        self.cfg = cfg
        self.seed = seed
        self.device = device
        self.checkpoint = checkpoint
        self.metric = metric or cfg.metric
        self.sign = -1.0 if minimize else 1.0
        self.desc = desc
        if hasattr(model, "configure_optimizers"):
            opt = model.configure_optimizers(cfg)
            self.optimizers = list(opt) if isinstance(opt, (list, tuple)) else [opt]
        else:
            self.optimizers = [make_optimizer(model.parameters(), cfg)]
        self.world_size = dist_.world_size()
        self.rank = dist_.rank()
        self._ddp: nn.Module | None = None
        self.zero_grad_each_step = bool(getattr(model, "zero_grad_each_step", True))

    # -------------------------------------------------------------------- checkpointing
    def _state(self, epoch: int, best: dict, history: list) -> dict:
        """The checkpoint after ``epoch`` epochs; ``epochs`` and ``finished`` (the last epoch, or early
        stopping reached) let ``cdrec run`` say what an interrupted run holds."""
        return {
            "epoch": epoch,
            "epochs": self.cfg.epochs,
            "finished": epoch >= self.cfg.epochs or best["bad"] >= self.cfg.patience,
            "model": self.model.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "best": best,
            "history": history,
            "training_state": self.model.training_state() if hasattr(self.model, "training_state") else None,
        }

    def _load(self) -> tuple[int, dict, list]:
        """Restore the checkpoint (rank 0 reads it and broadcasts it to the other ranks)."""
        assert self.checkpoint is not None
        path = self.checkpoint

        def read() -> dict:
            try:
                return torch.load(path, map_location="cpu", weights_only=False)
            except Exception as exc:  # a foreign or damaged file: torch raises several types
                raise CdrecError(f"{path}: cannot read the checkpoint ({type(exc).__name__}); delete it to start over") from None

        state = dist_.on_main(read)
        self.model.load_state_dict(state["model"])
        for opt, opt_state in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(opt_state)
        if state.get("training_state") is not None and hasattr(self.model, "load_training_state"):
            self.model.load_training_state(state["training_state"])
        return state["epoch"], state["best"], state["history"]

    def _has_checkpoint(self) -> bool:
        return bool(dist_.on_main(lambda: self.checkpoint is not None and self.checkpoint.exists()))

    # -------------------------------------------------------------------- loop
    def step(self, batch: dict[str, torch.Tensor], weight: float = 1.0) -> float:
        """One optimisation step; ``weight`` is this rank's share of a distributed batch."""
        if hasattr(self.model, "train_step"):
            loss = float(self.model.train_step(batch, self.optimizers))
            dist_.average_parameters(self.model)
            return loss
        opt = self.optimizers[0]
        if self.zero_grad_each_step:
            opt.zero_grad(set_to_none=True)
        if self._ddp is not None:
            loss = self._ddp(batch, weight)
        else:
            loss = self.model.loss(batch)
        loss.backward()
        opt.step()
        return float(loss.detach())

    def _wrap(self) -> None:
        """DistributedDataParallel around ``loss`` when several ranks train a loss()-based model."""
        if self.world_size <= 1 or hasattr(self.model, "train_step") or self._ddp is not None:
            return
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        self._ddp = DistributedDataParallel(_LossForward(self.model), device_ids=ids, find_unused_parameters=True)

    def _epoch_batches(self, batches: Iterable[Batch]) -> Iterable[tuple[Batch, float]]:
        """This rank's part of every batch (all of it with one process)."""
        for batch in batches:
            if self.world_size <= 1:
                yield batch, 1.0
            else:
                yield dist_.shard_batch(batch, self.world_size, self.rank)

    def fit(
        self,
        batches: Callable[[int], Iterable[Batch]],
        validate: Callable[[], dict[str, float]],
        *,
        n_batches: int | None = None,
        resume: bool = False,
    ) -> FitResult:
        start_epoch, history = 0, []
        best = {"epoch": 0, "score": -np.inf, "state": None, "bad": 0}
        if resume and self.checkpoint is not None and self._has_checkpoint():
            start_epoch, best, history = self._load()
        resumed_from = start_epoch
        self._wrap()
        logger = epoch_logger(self.cfg, self.desc) if self.rank == 0 else None
        t0 = time.perf_counter()
        for epoch in range(start_epoch, self.cfg.epochs):
            if best["bad"] > 0 and best["bad"] >= self.cfg.patience:
                break
            torch.manual_seed(self.seed * 100_003 + epoch)
            self.model.train()
            if not self.zero_grad_each_step:
                for opt in self.optimizers:
                    opt.zero_grad(set_to_none=True)
            losses = []
            show = self.cfg.progress and self.rank == 0
            epoch_start = time.perf_counter()
            epoch_batches = progress.bar(batches(epoch), total=n_batches, desc=f"{self.desc} epoch {epoch + 1}/{self.cfg.epochs}", enabled=show)
            for i, (batch, weight) in enumerate(self._epoch_batches(epoch_batches)):
                if self.cfg.max_batches is not None and i >= self.cfg.max_batches:
                    break
                losses.append(self.step(to_device(batch, self.device), weight))
            self.model.eval()
            with torch.no_grad():
                valid = dist_.on_main(validate)
            score = self.sign * float(valid.get(self.metric, np.nan))
            improved = bool(np.isfinite(score)) and score > best["score"]
            if improved or best["state"] is None:
                best = {"epoch": epoch + 1, "score": score if np.isfinite(score) else -np.inf, "state": copy.deepcopy(self.model.state_dict()), "bad": 0}
            else:
                best["bad"] += 1
            epoch_loss = float(np.mean(losses)) if losses else float("nan")
            if self.world_size > 1:  # each rank's loss carries weight n_rank * world / n: their mean is the batch mean
                epoch_loss = float(dist_.all_reduce_mean([epoch_loss], self.device)[0])
            history.append({"epoch": epoch + 1, "loss": epoch_loss, "valid": valid})
            shown = f", {self.metric} {float(valid[self.metric]):.4f}" if isinstance(valid.get(self.metric), (float, np.floating)) else ""
            progress.line(f"{self.desc} epoch {epoch + 1}/{self.cfg.epochs}: loss {epoch_loss:.4g}{shown} ({time.perf_counter() - epoch_start:.1f} s)", enabled=show)
            if logger is not None:
                logger.log_epoch(epoch + 1, epoch_loss, valid)
            if hasattr(self.model, "on_epoch_end"):
                self.model.on_epoch_end(epoch, valid)
            if self.checkpoint is not None and self.rank == 0:
                atomic_torch_save(self._state(epoch + 1, best, history), self.checkpoint)
        if logger is not None:
            logger.close()
        if best["state"] is not None:
            self.model.load_state_dict(best["state"])
        self.model.eval()
        return FitResult(
            best_epoch=best["epoch"],
            best_metric=self.sign * best["score"] if np.isfinite(best["score"]) else float("nan"),
            history=history,
            train_s=round(time.perf_counter() - t0, 3),
            peak_rss_mb=peak_rss_mb(),
            resumed_from=resumed_from,
        )
