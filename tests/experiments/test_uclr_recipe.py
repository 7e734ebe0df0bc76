"""The UCLR recipe end to end on tiny synthetic data (report, results.json names, temperature plot)."""

from __future__ import annotations

import json

import pytest

from cdrec.experiments import RECIPES
from cdrec.experiments import uclr as recipe


def test_recipe_smoke_on_synthetic(tmp_path, monkeypatch):
    assert RECIPES["uclr"] == "cdrec.experiments.uclr"
    monkeypatch.setitem(recipe.DATASETS, "synthetic", {"name": "synthetic", "synthetic": {"n_users": 200, "items_per_domain": 250, "n_domains": 2, "signal": 1.0}})
    tiny = {"train": {"lr": 0.01, "epochs": 2, "patience": 1, "batch_size": 512},
            "ladder": {"ae_epochs": 1, "ae_passes": 2, "ft_epochs": 1, "dim": 16}, "seeds": 2, "datasets": ["synthetic"]}
    monkeypatch.setattr(recipe, "QUICK", tiny)
    monkeypatch.setattr(recipe, "_config", _small(recipe._config))
    report = recipe.reproduce(tmp_path, quick=True, device="cpu", datasets=["synthetic"])
    text = report.read_text()
    for model in recipe.MODELS:
        for seed in (0, 1):
            res = json.loads((tmp_path / "runs" / "synthetic" / model / f"seed{seed}" / "results.json").read_text())
            assert res["model"] == model
            assert res["setting"]["scope"] == ("single" if model in recipe.BASELINES else "joint")
    for section in ("Table 2", "Table 3", "Tables 4-5", "Paired t-test", "temperature"):
        assert section in text
    table2 = text.split("## Table 2")[1].split("\n## ")[0]
    assert "| cat-art |" in table2  # the multi-target cross-domain baseline has its Table 2 row
    assert (tmp_path / "temperature_vs_activity.png").stat().st_size > 0
    assert (tmp_path / "cache" / "pge-synthetic-seed0.pt").exists()


def _small(make):
    def wrapped(model, *args, **kwargs):
        cfg = make(model, *args, **kwargs)
        cfg.model_params["dim"] = 16
        return cfg

    return wrapped


def test_unknown_dataset_is_a_user_error(tmp_path):
    from cdrec.errors import CdrecError

    with pytest.raises(CdrecError, match="unknown UCLR dataset"):
        recipe.reproduce(tmp_path / "x", quick=True, datasets=["nope"])
    assert not (tmp_path / "x").exists()


def test_lightgcn_backbone_rows_beside_lightgcn_in_table2(tmp_path, monkeypatch):
    """Added to a phase, ``pge-lightgcn`` and ``uclr-lightgcn`` run jointly with their own cached
    pretraining and Table 2 lists them right after ``lightgcn``."""
    monkeypatch.setitem(recipe.DATASETS, "synthetic", {"name": "synthetic", "synthetic": {"n_users": 200, "items_per_domain": 250, "n_domains": 2, "signal": 1.0}})
    tiny = {"train": {"lr": 0.01, "epochs": 2, "patience": 1, "batch_size": 256},
            "ladder": {"ae_epochs": 1, "ae_passes": 1, "ft_epochs": 1, "hidden": [16, 8]}, "seeds": 1, "datasets": ["synthetic"]}
    monkeypatch.setattr(recipe, "QUICK", tiny)
    monkeypatch.setattr(recipe, "PHASES", [["lightgcn", *recipe.LIGHTGCN_BACKBONE]])
    monkeypatch.setattr(recipe, "_config", _small(recipe._config))
    text = recipe.reproduce(tmp_path, quick=True, device="cpu", datasets=["synthetic"]).read_text()
    table2 = text.split("\n## Table 2")[1].split("\n## ")[0]
    first_cells = [line.split("|")[1].strip() for line in table2.splitlines() if line.startswith("|")]
    assert first_cells[2:5] == ["lightgcn", "pge-lightgcn", "uclr-lightgcn"]  # after the header and its rule
    for model in recipe.LIGHTGCN_BACKBONE:
        res = json.loads((tmp_path / "runs" / "synthetic" / model / "seed0" / "results.json").read_text())
        assert res["setting"]["scope"] == "joint" and res["config"]["model_params"]["backbone"] == "lightgcn"
    assert (tmp_path / "cache" / "pge-lightgcn-synthetic-seed0.pt").exists()
    assert not (tmp_path / "cache" / "pge-synthetic-seed0.pt").exists()
