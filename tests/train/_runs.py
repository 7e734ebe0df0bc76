"""Helpers for tests that start ``cdrec`` in real subprocesses (torchrun, kill and resume)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def tiny_config(path: Path, **train) -> Path:
    """A small synthetic BPR-MF run: about 3k training rows, a few seconds on one core."""
    cfg = {
        "model": "bprmf",
        "seed": 5,
        "data": {"name": "synthetic", "synthetic": {"n_users": 300, "n_domains": 2, "items_per_domain": 120, "max_activity": 30}},
        "split": {"n_negatives": 30},
        "train": {"epochs": 4, "batch_size": 256, "lr": 0.01, "device": "cpu", "progress": False, "patience": 100, **train},
        "model_params": {"dim": 16},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONHASHSEED"] = "0"
    return env


def cdrec_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "cdrec", *args]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cdrec_cmd(*args), env=cli_env(), cwd=REPO, capture_output=True, text=True, timeout=timeout)


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())
