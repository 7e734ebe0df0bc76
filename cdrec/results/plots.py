"""Saving figures atomically (a kill never leaves half a PNG that a report links to)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cdrec.results.schema import atomic_path


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """``fig.savefig`` through a temporary file and rename; the format follows ``path``'s suffix."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **kwargs)
    return path
