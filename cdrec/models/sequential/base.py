"""Contract of the sequential family and what its models share beyond layers: the training
schedule of the MERIT authors' code (AdamW, linear warm-up, ReduceLROnPlateau on validation MRR)
and the per-domain sampled loss of dual-target models.

A sequential model is built from the data sizes (``n_items``, ``item_offsets``: domain ``d`` owns
global items ``item_offsets[d]:item_offsets[d+1]``; ids in batches are shifted by +1, 0 = padding)
and exposes ``loss(batch)`` over a training window batch (``items``, ``domains``, ``targets``,
``domain_targets`` ``[B, L]``) and ``score(batch)`` over an evaluation batch (``items``,
``domains`` ``[n, L]`` histories, ``candidates [n, C]`` (+1 shifted), ``target_domain [n]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from cdrec.config import ModelParams, TrainConfig, bounded
from cdrec.models.sequential.blocks import domain_info_nce, full_softmax_ce


@dataclass
class ScheduleParams(ModelParams):
    """Warm-up and plateau schedule of the authors' code (LinearLR from 1e-5, then halve the
    learning rate after ``lr_patience`` epochs without a better validation MRR sum).

    ``warmup_start_factor``: the learning rate of the first warm-up epoch as a share of ``lr``; it
    rises linearly and reaches ``lr`` after ``warmup_epochs`` epochs. 1e-5 is the authors'
    ``LinearLR`` (``trainer.py`` L33, stepped per epoch by ``main.py`` L97-100), whose first epoch
    therefore learns nearly nothing; e.g. ``1 / warmup_epochs`` makes it count (10 warm-up epochs
    at 0.1, 0.19, ..., 0.91 of ``lr``)."""

    warmup_epochs: int = bounded(10, 0)
    warmup_start_factor: float = bounded(1e-5, 0, 1, lo_open=True)
    lr_factor: float = bounded(0.5, 0, 1, lo_open=True)
    lr_patience: int = bounded(30, 0)


class SequentialModel(nn.Module):
    """Base of SASRec, BERT4Rec and MERIT."""

    task: ClassVar[str] = "sequential"
    registry_name: ClassVar[str] = ""
    single_target: ClassVar[bool] = False
    """True: one model per domain on that domain's sequence ("-st"); False: the mixed sequence."""
    mixed_input: ClassVar[bool] = False
    """With ``single_target``: the model of each domain reads the mixed sequence and learns (and is
    evaluated on) the targets of its domain only (MERIT's ST-CDSR baselines)."""
    cloze: ClassVar[bool] = False
    """True: training windows keep every event (masked-item models)."""

    def __init__(self, n_items: int, item_offsets: np.ndarray, params: Any) -> None:
        super().__init__()
        self.n_items = int(n_items)
        self.params = params
        self.register_buffer("offsets", torch.as_tensor(np.asarray(item_offsets, dtype=np.int64)), persistent=False)
        self.n_domains = len(item_offsets) - 1
        # each domain's global item ids [start, stop) as Python ints: no device sync per training step
        offsets = np.asarray(item_offsets, dtype=np.int64).tolist()
        self.item_ranges = [(offsets[d], offsets[d + 1]) for d in range(self.n_domains)]
        self.schedulers: tuple[Any, Any] | None = None

    # ------------------------------------------------------------------ helpers
    def item_domain(self, items: torch.Tensor) -> torch.Tensor:
        """Domain of +1-shifted item ids (-1 for padding)."""
        dom = torch.bucketize(items - 1, self.offsets[1:-1], right=True)
        return torch.where(items > 0, dom, torch.full_like(dom, -1))

    def domain_loss(
        self,
        h: torch.Tensor,
        targets: torch.Tensor,
        seen: torch.Tensor,
        item_emb: nn.Embedding,
        domains: list[int] | None = None,
        *,
        all_rows: bool = False,
        per_position: bool = False,
    ) -> torch.Tensor:
        """Sum over domains of the loss on the positions whose target lies in that domain, with
        negatives from that domain (dual-target SASRec/BERT4Rec, MERIT's A and B losses);
        ``all_rows``, ``per_position``: see :func:`~cdrec.models.sequential.blocks.domain_info_nce`."""
        p = self.params
        tdom = self.item_domain(targets)
        total = h.new_zeros(())
        for d in domains if domains is not None else range(self.n_domains):
            weight = tdom == d
            if not bool(weight.any()):
                continue
            if p.loss == "full":
                total = total + full_softmax_ce(h, item_emb.weight[: self.n_items + 1], targets, weight)
                continue
            total = total + domain_info_nce(h, targets, [weight], seen, item_emb, [self.item_ranges[d]], p.n_negatives, p.temperature, per_position=per_position, all_rows=all_rows)
        return total

    def attach_training(self, split: Any) -> None:
        """Called once after construction (before training or loading weights) with the
        :class:`~cdrec.data.splits.Split`, for models that read the training part beyond the
        batches (C2DSR's item graphs); the default reads nothing."""

    # ------------------------------------------------------------------ trainer hooks
    def configure_optimizers(self, cfg: TrainConfig) -> torch.optim.Optimizer:
        opt = torch.optim.AdamW(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched: ScheduleParams = self.params
        start = sched.warmup_start_factor if sched.warmup_epochs > 0 else 1.0
        warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=start, end_factor=1.0, total_iters=max(sched.warmup_epochs, 1))
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=sched.lr_factor, patience=sched.lr_patience)
        self.schedulers = (warm, plateau)
        return opt

    def on_epoch_end(self, epoch: int, valid: dict[str, float]) -> None:
        if self.schedulers is None:
            return
        warm, plateau = self.schedulers
        if epoch < self.params.warmup_epochs:
            warm.step()
        elif "MRR_sum" in valid and np.isfinite(valid["MRR_sum"]):
            plateau.step(valid["MRR_sum"])

    def training_state(self) -> dict[str, Any]:
        """The warm-up and plateau schedulers' counters, kept in the checkpoint for ``--resume``."""
        return {"schedulers": [s.state_dict() for s in self.schedulers] if self.schedulers is not None else None}

    def load_training_state(self, state: dict[str, Any]) -> None:
        if self.schedulers is not None and state.get("schedulers") is not None:
            for scheduler, saved in zip(self.schedulers, state["schedulers"]):
                scheduler.load_state_dict(saved)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} must implement loss")

    def score(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} must implement score")


def last_valid_index(valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the latest valid position per row (``[n]``) and whether the row has any."""
    pos = torch.arange(valid.shape[1], device=valid.device)
    idx = torch.where(valid, pos, torch.full_like(pos, -1)).max(dim=1).values
    return idx.clamp(min=0), idx >= 0


def gather_positions(h: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``h[b, idx[b]]`` for ``h [B, L, d]``."""
    return h[torch.arange(len(h), device=h.device), idx]
