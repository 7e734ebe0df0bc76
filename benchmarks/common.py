"""Shared helpers: child processes with a JSON spec in and a JSON result out, machine facts, output."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "out"


def own_peak_rss_mb() -> float:
    """This process's own peak resident memory (``VmHWM``). Not ``ru_maxrss``: on Linux that value
    survives fork + exec, so a child would report its parent's peak when the parent's was larger."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    return env


def run_child(argv: list[str], spec: dict[str, Any], work: Path, name: str, *, threads: int, timeout: float | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """Run ``argv + [spec.json, out.json]`` in a fresh process (its own peak memory); return out.json.

    A failing child raises with the tail of its log."""
    work.mkdir(parents=True, exist_ok=True)
    spec_path, out_path, log_path = work / f"{name}.spec.json", work / f"{name}.out.json", work / f"{name}.log"
    spec = {**spec, "threads": threads}
    spec_path.write_text(json.dumps(spec, indent=2))
    out_path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as fh:
        proc = subprocess.run([*argv, str(spec_path), str(out_path)], stdout=fh, stderr=subprocess.STDOUT, env=child_env(threads), cwd=cwd or ROOT, timeout=timeout)
    if proc.returncode != 0 or not out_path.exists():
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"{name} failed (exit {proc.returncode}); log {log_path}:\n" + "\n".join(tail))
    out = json.loads(out_path.read_text())
    out["process_wall_s"] = round(time.perf_counter() - t0, 2)
    return out


def cdrec_child() -> list[str]:
    return [sys.executable, "-m", "benchmarks.cdrec_driver"]


def machine(device: str, threads: int) -> dict[str, Any]:
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "cpu_count": os.cpu_count(),
        "threads_per_process": threads,
        "device": device,
        "load_average_at_start": [round(x, 2) for x in load],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "shared_machine_note": "timings on a machine shared with other jobs; wall times are inflated by contention, CPU times (process_time) much less so; ratios are taken within one run",
    }


def median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n")
    os.replace(tmp, path)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
