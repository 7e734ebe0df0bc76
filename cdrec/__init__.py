"""cdrec: multi-domain and cross-domain recommendation with one data model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdrec.errors import CdrecError

if TYPE_CHECKING:
    from pathlib import Path

    from cdrec.predict import Predictor

__version__ = "0.1.0"

__all__ = ["CdrecError", "__version__", "load"]


def load(run_dir: str | Path, *, device: str | None = None) -> Predictor:
    """Load a trained run directory as a predictor (see :mod:`cdrec.predict`)."""
    from cdrec.predict import load as _load

    return _load(run_dir, device=device)
