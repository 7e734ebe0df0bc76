"""Small trained runs shared by the serving tests (a few seconds each on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdrec.config import load_config
from cdrec.experiments.pipeline import run_config

SYNTH = "data.synthetic={n_users: 200, n_domains: 3, items_per_domain: 120, seed: 7}"


def train_tiny(out: Path, scope: str = "joint") -> Path:
    cfg = load_config(None, [
        f"scope={scope}", "train.epochs=3", "train.progress=false", "train.device=cpu",
        "model_params.dim=16", "split.n_negatives=20", SYNTH,
    ])
    run_config(cfg, out)
    return out


@pytest.fixture(scope="session")
def joint_run(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("serve") / "joint")


@pytest.fixture(scope="session")
def single_run(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("serve") / "single", scope="single")


@pytest.fixture(scope="session")
def joint_predictor(joint_run):
    import cdrec

    return cdrec.load(joint_run, device="cpu")
