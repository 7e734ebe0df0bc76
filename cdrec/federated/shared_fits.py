"""Local fits that are the same computation, trained once per process (``cdrec reproduce mtal``).

Runs of one column that differ only in the assistance settings (eta, w, ``assist_fit``, the number of rounds) start
from the same base model ``F_0``, so every organization's round-1 pseudo-targets, inputs, model settings and seed
are the same, and so is its round-1 local model: the recipe's ``mtal-aae`` and ``mtal-aae-heldout`` rows, the
eta / w ablations. Inside :func:`sharing_fits`, :meth:`Organization.fit` looks its fit up by a digest of everything
:func:`~cdrec.models.assisted.aae.fit_autoencoder` reads (inputs, side information, pseudo-targets, output width,
model settings, seed, device, thread count, torch version) and takes the trained parameters of an earlier equal
fit instead of training again: bit-identical by construction. Outside it (``cdrec run``, Flower) nothing is shared.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import json
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch

SHARED_ROUNDS = (1,)
"""The rounds whose fits are kept: round 1 is where runs of one column coincide (later rounds follow each run's own
eta and w); keeping only these bounds the memory (ML-1M 18 genres: about 80 MB per column)."""


class SharedFits:
    """Trained parameters and losses by fit digest, at most ``capacity_mb`` of them (least recently used out)."""

    def __init__(self, capacity_mb: float) -> None:
        self.capacity = int(capacity_mb * 2**20)
        self.fits: OrderedDict[str, tuple[dict[str, torch.Tensor], list[float], int]] = OrderedDict()
        self.size = 0
        self.hits = 0

    def get(self, key: str) -> tuple[dict[str, torch.Tensor], list[float]] | None:
        if key not in self.fits:
            return None
        self.fits.move_to_end(key)
        self.hits += 1
        state, losses, _ = self.fits[key]
        return state, list(losses)

    def put(self, key: str, state: dict[str, torch.Tensor], losses: list[float]) -> None:
        state = {k: v.detach().cpu().clone() for k, v in state.items()}
        nbytes = sum(v.numel() * v.element_size() for v in state.values())
        if nbytes > self.capacity:
            return
        self.fits[key] = (state, list(losses), nbytes)
        self.size += nbytes
        while self.size > self.capacity:
            self.size -= self.fits.popitem(last=False)[1][2]


_ACTIVE: contextvars.ContextVar[SharedFits | None] = contextvars.ContextVar("shared_fits", default=None)


def active() -> SharedFits | None:
    """The store of the enclosing :func:`sharing_fits`, or None (every fit trains)."""
    return _ACTIVE.get()


@contextmanager
def sharing_fits(capacity_mb: float = 1024.0) -> Iterator[SharedFits]:
    """Within the block, equal local fits of :data:`SHARED_ROUNDS` are trained once."""
    token = _ACTIVE.set(SharedFits(capacity_mb))
    try:
        yield _ACTIVE.get()
    finally:
        _ACTIVE.reset(token)


def fit_digest(arrays: list[np.ndarray | None], settings: Any, **meta: Any) -> str:
    """Digest of a fit's arrays (content, dtype and shape; None counts) and settings (a dataclass and keywords)."""
    h = hashlib.blake2b(digest_size=20)
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    context = {"settings": dataclasses.asdict(settings), "torch": torch.__version__, "threads": torch.get_num_threads(), **meta}
    h.update(json.dumps(context, sort_keys=True, default=str).encode())
    return h.hexdigest()
