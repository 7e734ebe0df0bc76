"""Shared fixtures: the real data folder (skips with a reason when absent) and small synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cdrec.data.synthetic import SyntheticConfig, make_synthetic

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CDREC_DATA_DIR", REPO.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data; skips the calling test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (needs ../shared/data beside the repo)")
    return path


@pytest.fixture
def shared_data() -> Path:
    return shared_path()


@pytest.fixture
def tiny_synthetic():
    return make_synthetic(SyntheticConfig(n_users=200, n_domains=3, items_per_domain=120, seed=7))
