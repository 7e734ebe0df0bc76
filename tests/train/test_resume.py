"""A run interrupted after an epoch and resumed with ``--resume`` ends exactly like an uninterrupted
run, for the models whose training carries state outside their parameters and optimizers: the
sequential models' warm-up and plateau LR schedulers, M3oE's step count and held-out batch stream."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

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


# ------------------------------------------------------------------------------ multi-stage models
STAGED_COMMON = ["data.synthetic={n_users: 120, n_domains: 3, items_per_domain: 80, seed: 5}", "split.n_negatives=10",
                 "train.progress=false", "train.device=cpu", "train.epochs=3", "seed=3", "model_params.dim=16"]
STAGED = {
    # model: settings, the (module, class, training method) of the first and of the second stage, the
    # checkpoint and epoch of a later stage to stop after, and what Ctrl-C says at either stop
    "cat-art": (["model=cat-art", "model_params.hidden=[32]", "model_params.cat_epochs=2", "model_params.cat_passes=2", "model_params.art_epochs=2"],
                ("cdrec.models.cf.cat_art", "_DomainMFStage", "train_step"), ("cdrec.models.cf.cat_art", "_CATStage", "loss"),
                ("checkpoint-cat.pt", 1),
                {"second stage": "stage mf (finished, checkpoint-mf.pt)",
                 "later checkpoint": "stage mf (finished, checkpoint-mf.pt), epoch 1/2 (checkpoint-cat.pt)"}),
    "uclr": (["model=uclr", "model_params.hidden=[16,8]", "model_params.ae_epochs=2", "model_params.ae_passes=2", "model_params.ft_epochs=2"],
             ("cdrec.models.cf.uclr", "_PGEStage", "loss"), ("cdrec.models.cf.uclr", "_AEStage", "train_step"),
             ("checkpoint-finetune-0.pt", 1),
             {"second stage": "stage pge (finished, checkpoint-pge.pt)",
              "later checkpoint": "stage pge (finished, checkpoint-pge.pt), stage ae (finished, checkpoint-ae.pt), epoch 1/2 (checkpoint-finetune-0.pt)"}),
}


def _stage_method(where: tuple[str, str, str]) -> tuple[type, str, Callable]:
    import importlib

    module, cls, method = where
    stage_cls = getattr(importlib.import_module(module), cls)
    return stage_cls, method, getattr(stage_cls, method)


@pytest.mark.parametrize("stop", ["second stage", "later checkpoint"])
@pytest.mark.parametrize("model", sorted(STAGED))
def test_interrupted_multi_stage_run_keeps_its_finished_stages(model, stop, tmp_path, monkeypatch):
    """Interrupted in its second stage's first step, or after a later stage's checkpoint, CAT-ART and
    UCLR keep their finished stages (Ctrl-C names them, a plain rerun is refused), and ``--resume``
    trains no batch of the first stage again and ends with the uninterrupted run's metrics."""
    from cdrec.cli.out_dir import check_out_dir, interrupted_message
    from cdrec.errors import CdrecError

    sets, first, second, (stop_file, stop_epoch), holds = STAGED[model]
    cfg = load_config(None, [*STAGED_COMMON, *sets])
    first_cls, first_method, first_train = _stage_method(first)
    first_stage_batches = {"n": 0}

    def counted(self, *args):
        first_stage_batches["n"] += 1
        return first_train(self, *args)

    monkeypatch.setattr(first_cls, first_method, counted)
    full = run_config(cfg, tmp_path / "full")
    full_batches, first_stage_batches["n"] = first_stage_batches["n"], 0
    assert full_batches > 0

    out = tmp_path / "resumed"
    with monkeypatch.context() as patch:
        if stop == "second stage":
            second_cls, second_method, _ = _stage_method(second)

            def fail(self, *args):
                raise Interrupted

            patch.setattr(second_cls, second_method, fail)
        else:
            save = trainer_module.atomic_torch_save

            def save_then_stop(obj: object, path: Path) -> None:
                save(obj, path)
                if path.name == stop_file and obj["epoch"] == stop_epoch:
                    raise Interrupted

            patch.setattr(trainer_module, "atomic_torch_save", save_then_stop)
        with pytest.raises(Interrupted):
            run_config(cfg, out)
    assert first_stage_batches["n"] == full_batches
    message = interrupted_message(out, cfg.train.epochs, ["run", "--out", str(out)])
    assert message.splitlines()[0] == f"interrupted: {out} holds {holds[stop]}"
    with pytest.raises(CdrecError, match=r"unfinished run \(stage "):
        check_out_dir(out, resume=False, overwrite=False, epochs=cfg.train.epochs)

    first_stage_batches["n"] = 0
    resumed = run_config(cfg, out, resume=True)
    assert first_stage_batches["n"] == 0, "the finished first stage was trained again"
    assert resumed.metrics == full.metrics
    assert resumed.valid_metrics == full.valid_metrics
    assert not list(out.glob("checkpoint-*.pt"))
    assert not list((tmp_path / "full").glob("checkpoint-*.pt"))
