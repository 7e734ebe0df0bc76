"""The generic mini-batch Trainer and the tasks that turn a RunConfig into a trained, evaluated run."""

from cdrec.train.trainer import FitResult, Trainer, resolve_device, seed_everything

__all__ = ["FitResult", "Trainer", "resolve_device", "seed_everything"]
