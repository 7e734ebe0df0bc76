"""``cdrec demo``: every family on the built-in synthetic data, in a few minutes on 2 CPU cores.

Each family contributes one module to :data:`DEMO_STEPS` with a function
``demo(out: Path, device: str) -> list[str]`` that trains its models briefly and returns summary
lines; the demo prints them and writes ``summary.md``.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from cdrec.results.schema import atomic_write_text

DEMO_STEPS: list[str] = [
    "cdrec.experiments.demo_cf",
    "cdrec.experiments.demo_seq",
    "cdrec.experiments.demo_mtal",
    "cdrec.experiments.demo_ctr",
]


def run_demo(out: Path, *, device: str = "auto") -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# cdrec demo on synthetic data", ""]
    for module_name in DEMO_STEPS:
        t0 = time.perf_counter()
        module = importlib.import_module(module_name)
        step_lines = module.demo(out, device)
        took = time.perf_counter() - t0
        lines += [*step_lines, f"_({module_name.rsplit('.', 1)[-1]}: {took:.1f} s)_", ""]
        print("\n".join(step_lines), f"\n({took:.1f} s)\n", flush=True)
    path = out / "summary.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    print(f"wrote {path}")
    return path
