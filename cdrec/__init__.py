"""cdrec: multi-domain and cross-domain recommendation with one data model."""

from cdrec.errors import CdrecError

__version__ = "0.1.0"

__all__ = ["CdrecError", "__version__", "load"]


def load(run_dir, *, device=None):
    """Load a trained run directory as a predictor (see :mod:`cdrec.predict`)."""
    from cdrec.predict import load as _load

    return _load(run_dir, device=device)
