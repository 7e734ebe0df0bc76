"""The ``results.json`` schema (version 1), stable for users and scripts.

.. code-block:: text

    {
      "schema": 1,
      "model": "bprmf",                      # registry name
      "dataset": "ml-100k",
      "protocol": "loo/1+99",                # split protocol / candidates
      "seed": 0,
      "setting": {...},                       # what distinguishes runs of one model (mode, ablation...)
      "metrics": {"<domain>": {"HR@10": 0.61, "NDCG@10": ..., "MRR@10": ..., "n": 943},
                  "overall": {...}},          # overall = mean over all evaluated rows; null = not computable;
                                              # {} under eval.test=false (cdrec tune's trials: validation only)
      "buckets": {"<domain>": {"1-2": {...}, "3-5": {...}, ...}},
      "valid_metrics": {...},                 # same shape, on the validation part (model selection; the
                                              # sequential task adds MRR_sum, its selection metric, to overall)
      "config": {...},                        # the resolved RunConfig
      "data_stats": {...},                    # Interactions.stats() of the data the run used
      "timing": {"train_s": 1.2, "eval_s": 0.1, "peak_rss_mb": 512.0},
      "history": [{"scope": "joint", "best_epoch": 3,  # one entry per trained model (scope), each with
                   "epochs": [{"epoch": 1, "loss": ..., "valid": {...}}, ...]}, ...]
    }                                         # its epochs; "resumed_from" after --resume, UCLR epochs carry "stage";
                                              # pop / itemknn: {"scope", "fit": "one-pass", "best_epoch": 0, "epochs": []}

Metric names: ``HR@10``, ``NDCG@10``, ``MRR@10``, ``MRR``, ``MAP@10``, ``RMSE``, ``AUC``, ``LogLoss``;
multi-task metrics carry the task in brackets (``AUC[click]``).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

SCHEMA_VERSION = 1


@dataclass
class RunResult:
    """One run of one model on one dataset with one seed."""

    model: str
    dataset: str
    protocol: str
    seed: int
    metrics: dict[str, dict[str, float]]
    buckets: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    setting: dict[str, Any] = field(default_factory=dict)
    valid_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    data_stats: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunResult":
        data = {k: v for k, v in data.items() if k != "schema"}
        return cls(**data)

    @classmethod
    def read(cls, path: str | Path) -> "RunResult":
        return cls.from_dict(json.loads(Path(path).read_text()))


def peak_rss_mb() -> float:
    """Peak resident memory of this process (and finished children) in MiB."""
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(own * scale, 1)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is flushed to disk and renamed onto
    ``path`` (readers see the old file or the whole new one, never half of it); on error it is removed.
    The file gets the usual permissions (``0o666`` minus the umask), not ``mkstemp``'s ``0o600``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and rename: a kill never leaves half a file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def require_model_file(run_dir: str | Path) -> Path:
    """``run_dir/model.pt``, or an error saying why it is missing: the run did not finish, or it finished and
    ``cdrec tune`` removed the model of a trial that was not the best."""
    from cdrec.errors import CdrecError

    path = Path(run_dir) / "model.pt"
    if path.is_file():
        return path
    if (Path(run_dir) / "results.json").is_file():
        raise CdrecError(f"{run_dir}: no model.pt; the run finished but its model was removed (`cdrec tune` keeps "
                         "model.pt for the best trial only: evaluate that one, or rerun this config with `cdrec run`)")
    raise CdrecError(f"{run_dir}: no model.pt; the run did not finish")


def write_result(run_dir: str | Path, result: RunResult) -> Path:
    """Write ``results.json`` and ``results.md`` into ``run_dir``; returns the JSON path."""
    from cdrec.results.tables import result_markdown

    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    atomic_write_text(path, strict_json(result.to_dict()) + "\n")
    atomic_write_text(run_dir / "results.md", result_markdown(result))
    return path


def strict_json(data: Any, indent: int | None = 2, default: Callable[[Any], Any] | None = None) -> str:
    """``data`` as standard JSON: NumPy values and paths converted, and a metric that could not be computed
    (NaN or infinite, e.g. MAP@10 of an organization whose held-out users have no positive item) written as
    ``null``, since ``NaN`` is not JSON and breaks readers other than Python's. Arrays become lists; ``default``
    converts what else JSON cannot hold (NumPy scalars and paths unless given)."""
    return json.dumps(_finite(data), indent=indent, default=default or _json_default, allow_nan=False)


def _finite(value: Any) -> Any:
    import numpy as np

    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
