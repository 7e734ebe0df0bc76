"""config.yaml and results.json record every model parameter the run used, defaults included."""

from __future__ import annotations

import dataclasses

import yaml

from cdrec.config import load_config
from cdrec.experiments.pipeline import run_config
from cdrec.models import registry


def test_config_yaml_spells_out_the_model_parameters(tmp_path):
    cfg = load_config(None, ["model=bprmf", "data.synthetic={n_users: 100}", "split.n_negatives=10", "train.epochs=1",
                             "train.progress=false", "model_params.dim=8"])
    res = run_config(cfg, tmp_path / "r")
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["model_params"]
    full = dataclasses.asdict(registry.build_params("bprmf", {"dim": 8}))
    assert saved == full == res.config["model_params"] and len(full) > 1
    # resuming a folder whose config.yaml predates this (overrides only) still counts as the same config
    (tmp_path / "r" / "results.json").unlink()
    text = (tmp_path / "r" / "config.yaml").read_text().replace(yaml.safe_dump({"model_params": full}, sort_keys=False), "model_params:\n  dim: 8\n")
    assert "model_params:\n  dim: 8\n" in text and "reg:" not in text
    (tmp_path / "r" / "config.yaml").write_text(text)
    assert run_config(cfg, tmp_path / "r", resume=True).metrics == res.metrics
