"""cdrec: multi-domain and cross-domain recommendation with one data model."""

from cdrec.errors import CdrecError

__version__ = "0.1.0"

__all__ = ["CdrecError", "__version__"]
