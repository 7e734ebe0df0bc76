"""Tiny trained sequential and CTR runs shared by the predictor tests (well under a second each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdrec.config import load_config
from cdrec.experiments.pipeline import run_config

SEQ = [
    "data.name=synthetic", "data.synthetic={n_users: 120, n_domains: 2, items_per_domain: 60, seed: 3}",
    "split.n_negatives=20", "train.epochs=2", "train.progress=false", "train.device=cpu",
    "model_params.dim=16", "model_params.max_len=6", "model_params.warmup_epochs=1", "eval.batch_size=64",
]
CTR = [
    "data.synthetic={n_users: 200, items_per_domain: 60, seed: 3}", "train.progress=false", "train.device=cpu",
    "train.batch_size=512", "train.epochs=2",
]
SEQ_MODELS = ["sasrec-dt", "merit", "bert4rec-st", "abxi", "c2dsr", "dream", "cd-sasrec", "cd-asr", "mgcl"]
CTR_MODELS = {"mlp-single": ["model=mlp", "model_params.mode=single"], "m3oe-mdmt": ["model=m3oe", "model_params.mode=mdmt"],
              "m2m-mdmt": ["model=m2m", "model_params.mode=mdmt"], "adatt-sp-mtl": ["model=adatt-sp", "model_params.mode=mtl"],
              # domains owned by users (as M3oE's age bins): the domain is derived from a known user
              "mmoe-users": ["model=mmoe", "model_params.mode=mtl", "data.domains=uniform-users:2"]}


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("predictors")
    out = {}
    for name in SEQ_MODELS:
        run_config(load_config(None, [f"model={name}", *SEQ]), base / name)
        out[name] = base / name
    for name, extra in CTR_MODELS.items():
        run_config(load_config(None, [*extra, *CTR]), base / name)
        out[name] = base / name
    return out


@pytest.fixture(scope="session")
def predictors(runs):
    import cdrec

    return {name: cdrec.load(path, device="cpu") for name, path in runs.items()}
