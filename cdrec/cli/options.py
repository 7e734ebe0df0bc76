"""Checks of options that several ``cdrec`` commands share (kept apart so every command module can import them)."""

from __future__ import annotations


def check_device(device: str | None) -> None:
    """``--device`` (when given) must name a device this machine has, before any output is written."""
    from cdrec.train.trainer import resolve_device

    if device is not None:
        resolve_device(device, option="--device")
