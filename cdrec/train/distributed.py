"""Data-parallel training across processes (``torchrun``), and the helpers every task uses to stay
correct when it runs once per rank.

``torchrun --nproc-per-node N -m cdrec run CONFIG`` starts N copies of ``cdrec run`` with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. :func:`init_from_env` then
joins the process group (``gloo`` on CPU, ``nccl`` on CUDA, one GPU per local rank). With one process
(no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) nothing here does anything: no process group, no wrapper.

How a run is split (see :class:`cdrec.train.trainer.Trainer`):

* **Data.** Every rank builds the same epoch stream (same seed, so the same permutation and the same
  sampled negatives) and trains on its slice of every batch (:func:`shard_batch`): the epoch's
  permutation is split by rank, batch by batch, and ``train.batch_size`` stays the *global* batch.
* **Gradients.** Models with ``loss(batch)`` are wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`;
  each rank's loss is weighted by its share of the batch, so the averaged gradient equals the
  gradient of the mean loss over the whole batch (the single-process gradient, up to summation
  order). Models with a custom ``train_step`` are synchronised by averaging parameters after every
  step (exact for plain SGD; an approximation for adaptive optimizers, whose states stay per rank).
* **Evaluation.** Rank 0 evaluates and broadcasts the metrics (:func:`on_main`), so early stopping
  takes the same decision on every rank.
* **Files.** Only rank 0 writes checkpoints, ``model.pt`` and results (:func:`is_main`); on
  ``--resume`` rank 0 reads the checkpoint and broadcasts it, so nodes need no shared file system.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Callable, TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")


def env_world_size() -> int:
    """``WORLD_SIZE`` as set by torchrun (1 when absent)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def local_rank() -> int:
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def is_distributed() -> bool:
    """True when a process group with more than one rank is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes files and prints results."""
    return rank() == 0


def init_from_env(device_type: str = "cpu", timeout_s: float = 1800.0) -> bool:
    """Join the process group torchrun describes in the environment; a no-op for one process or when
    already joined. ``device_type`` picks the backend: ``nccl`` for ``cuda``, ``gloo`` otherwise."""
    if env_world_size() <= 1 or not dist.is_available():
        return False
    if dist.is_initialized():
        return True
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    try:
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    except (ValueError, RuntimeError) as exc:  # e.g. WORLD_SIZE set by hand without MASTER_ADDR
        from cdrec.errors import CdrecError

        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CdrecError(f"WORLD_SIZE={env_world_size()} but the process group cannot start ({first}); launch with torchrun") from None
    return True


def teardown(wait: bool = True) -> None:
    """Leave the process group. ``wait`` first meets the other ranks (a clean finish); after an
    error a rank leaves at once, so it never blocks on peers that failed elsewhere."""
    if dist.is_available() and dist.is_initialized():
        try:
            if wait:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` from rank ``src`` on every rank (pickled; for metrics, checkpoints and small results)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and give its result to every rank."""
    if not is_distributed():
        return fn()
    return broadcast_object(fn() if is_main() else None)


def all_gather_object(obj: Any) -> list[Any]:
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(values: np.ndarray | list[float], device: torch.device | None = None) -> np.ndarray:
    """Element-wise mean of a small float vector over ranks."""
    arr = np.asarray(values, dtype=np.float64)
    if not is_distributed():
        return arr
    tensor = torch.as_tensor(arr, device=device or torch.device("cpu"))
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().numpy() / world_size()


def shard_bounds(n: int, n_shards: int, shard: int) -> tuple[int, int]:
    """Contiguous ``[start, stop)`` of shard ``shard`` when ``n`` rows are cut into ``n_shards`` parts
    whose sizes differ by at most one (the first ``n % n_shards`` parts get the extra row)."""
    base, extra = divmod(n, n_shards)
    start = shard * base + min(shard, extra)
    return start, start + base + (1 if shard < extra else 0)


def batch_rows(batch: dict[str, Any]) -> int:
    """Rows of a batch: the first axis of ``user`` when present, else of the first array."""
    if "user" in batch:
        return len(batch["user"])
    for value in batch.values():
        if hasattr(value, "shape") and len(value.shape) > 0:
            return int(value.shape[0])
    return 0


def shard_batch(batch: dict[str, Any], n_shards: int, shard: int) -> tuple[dict[str, Any], float]:
    """This rank's rows of a batch and their weight ``n_rank * n_shards / n``.

    Every entry whose first axis has the batch's length is sliced; other entries (a graph, a
    scalar) are passed whole. A rank whose slice would be empty (a last batch smaller than the number
    of ranks) gets the batch's first row with weight 0, so every rank still runs forward and backward.
    """
    n = batch_rows(batch)
    start, stop = shard_bounds(n, n_shards, shard)
    weight = (stop - start) * n_shards / n if n else 0.0
    if stop == start:
        start, stop = 0, min(1, n)

    def cut(value: Any) -> Any:
        if hasattr(value, "shape") and len(value.shape) > 0 and value.shape[0] == n:
            return value[start:stop]
        return value

    return {key: cut(value) for key, value in batch.items()}, weight


def average_parameters(module: torch.nn.Module) -> None:
    """Replace every floating parameter and buffer by its mean over ranks (one flat all-reduce)."""
    if not is_distributed():
        return
    tensors = [t for t in list(module.parameters()) + list(module.buffers()) if t.is_floating_point()]
    if not tensors:
        return
    with torch.no_grad():
        flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world_size()
        offset = 0
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t).to(t.dtype))
            offset += t.numel()
