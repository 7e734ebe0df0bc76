"""A run interrupted after an epoch and resumed with ``--resume`` ends exactly like an uninterrupted
run, for the models whose training carries state outside their parameters and optimizers: the
sequential models' warm-up and plateau LR schedulers, M3oE's step count and held-out batch stream."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cdrec.config import load_config
from cdrec.experiments.pipeline import run_config
from cdrec.train import trainer as trainer_module

COMMON = ["train.progress=false", "train.device=cpu", "train.epochs=4", "train.patience=100", "seed=3"]
SEQUENTIAL = ["data.name=synthetic", "data.synthetic={n_users: 150, n_domains: 2, items_per_domain: 120}", "split.n_negatives=20",
              "model_params.dim=16", "model_params.warmup_epochs=3", "model_params.lr_patience=0", "model_params.lr_factor=0.5"]
CONFIGS = {
    "sasrec-dt": ["model=sasrec-dt", *SEQUENTIAL],
    "merit": ["model=merit", *SEQUENTIAL],
    # 3,311 training rows -> 26 batches of 128 an epoch, which a held-out step every 4th batch does not
    # divide; 414 held-out rows -> 4 held-out batches a pass
    "m3oe": ["model=m3oe", "model_params.mode=mdmt", "model_params.arch_every=4", "train.batch_size=128",
             "data.synthetic={n_users: 600, items_per_domain: 150}"],
}


class Interrupted(BaseException):
    """Stands for a kill right after a checkpoint was written."""


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, epochs: int) -> None:
    save = trainer_module.atomic_torch_save

    def save_then_stop(obj: object, path: Path) -> None:
        save(obj, path)
        if isinstance(obj, dict) and obj.get("epoch") == epochs:
            raise Interrupted

    monkeypatch.setattr(trainer_module, "atomic_torch_save", save_then_stop)


@pytest.mark.parametrize("model", sorted(CONFIGS))
def test_interrupted_then_resumed_run_matches_uninterrupted(model, tmp_path, monkeypatch):
    cfg = load_config(None, [*COMMON, *CONFIGS[model]])
    full = run_config(cfg, tmp_path / "full")
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 2)
        with pytest.raises(Interrupted):
            run_config(cfg, tmp_path / "resumed")
    checkpoints = sorted((tmp_path / "resumed").glob("checkpoint-*.pt"))
    assert checkpoints, "the interrupted run left no checkpoint"
    state = torch.load(checkpoints[0], map_location="cpu", weights_only=False)
    assert state["epoch"] == 2 and state["training_state"] is not None
    resumed = run_config(cfg, tmp_path / "resumed", resume=True)
    assert resumed.history[0]["resumed_from"] == 2
    assert [e["valid"] for e in resumed.history[0]["epochs"]] == [e["valid"] for e in full.history[0]["epochs"]]
    assert resumed.metrics == full.metrics
    assert resumed.valid_metrics == full.valid_metrics
    assert not list((tmp_path / "resumed").glob("checkpoint-*.pt"))


def test_sequential_schedulers_are_restored_not_restarted(tmp_path, monkeypatch):
    """The learning rate after resuming in mid warm-up is the uninterrupted run's, not one multiplied
    by a warm-up that starts over from the already warmed-up rate."""
    from cdrec.models.sequential.base import SequentialModel

    lrs: dict[str, list[float]] = {"full": [], "resumed": []}
    target = lrs["full"]
    end = SequentialModel.on_epoch_end

    def record(self: SequentialModel, epoch: int, valid: dict[str, float]) -> None:
        end(self, epoch, valid)
        target.append(self.schedulers[0].optimizer.param_groups[0]["lr"])

    monkeypatch.setattr(SequentialModel, "on_epoch_end", record)
    cfg = load_config(None, [*COMMON, *CONFIGS["sasrec-dt"]])
    run_config(cfg, tmp_path / "full")
    target = lrs["resumed"]
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 1)
        with pytest.raises(Interrupted):
            run_config(cfg, tmp_path / "resumed")
    run_config(cfg, tmp_path / "resumed", resume=True)
    assert lrs["resumed"] == lrs["full"]
    assert max(lrs["full"]) <= cfg.train.lr
