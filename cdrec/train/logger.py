"""Per-epoch logging of training runs (``train.logger``): ``none`` or ``tensorboard``.

:func:`cdrec.experiments.pipeline.run_config` names the run folder for the duration of a run
(:func:`logging_to`); every :class:`~cdrec.train.trainer.Trainer` that fits inside it (any task, and
each stage of a staged model such as UCLR's) asks :func:`epoch_logger` for a writer, which logs the
epoch's mean training loss (``train/loss``) and its validation metrics (``valid/<metric>``) under
``<run>/tensorboard/<trainer>/``, one TensorBoard run per trained model or stage.
"""

from __future__ import annotations

import importlib.util
import math
import re
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator

from cdrec.config import TrainConfig
from cdrec.errors import CdrecError

_RUN_DIR: ContextVar[Path | None] = ContextVar("cdrec_run_dir", default=None)


def require_tensorboard() -> None:
    """``train.logger=tensorboard`` needs the ``tensorboard`` package: one line naming the extra when it is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        raise CdrecError("train.logger=tensorboard needs the 'tensorboard' extra (the tensorboard package is missing): pip install 'cdrec[tensorboard]'")


@contextmanager
def logging_to(run_dir: str | Path) -> Iterator[None]:
    """Trainers fitted inside this block log to ``run_dir`` (when their ``train.logger`` asks for it)."""
    token = _RUN_DIR.set(Path(run_dir))
    try:
        yield
    finally:
        _RUN_DIR.reset(token)


class EpochLogger:
    """Writes one training run's per-epoch scalars to a TensorBoard event file."""

    def __init__(self, log_dir: Path) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = log_dir
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log_epoch(self, epoch: int, loss: float, valid: dict[str, Any]) -> None:
        """``train/loss`` and every finite ``valid/<metric>`` at step ``epoch`` (1-based)."""
        if math.isfinite(loss):
            self.writer.add_scalar("train/loss", loss, epoch)
        for name, value in valid.items():
            if name != "n" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"valid/{name}", float(value), epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def epoch_logger(cfg: TrainConfig, name: str) -> EpochLogger | None:
    """The logger of a trainer called ``name`` (``bprmf:joint``, ``uclr:ae``), or None when
    ``train.logger`` is ``none`` or no run folder is set (a trainer used outside ``run_config``)."""
    run_dir = _RUN_DIR.get()
    if cfg.logger != "tensorboard" or run_dir is None:
        return None
    return EpochLogger(run_dir / "tensorboard" / re.sub(r"[^A-Za-z0-9._-]+", "_", name))
