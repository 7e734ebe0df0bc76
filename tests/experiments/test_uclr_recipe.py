"""The UCLR recipe end to end on tiny synthetic data (report, results.json names, temperature plot)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from cdrec.experiments import RECIPES
from cdrec.experiments import uclr as recipe
from cdrec.models import registry


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
    table2 = text[text.index("## Table 2") : text.index("### Paired t-test")]
    assert table2.index("| pop |") < table2.index("| itemknn |") < table2.index("| bprmf |")  # the baselines' first rows
    assert (tmp_path / "temperature_vs_activity.png").stat().st_size > 0
    assert (tmp_path / "cache" / "pge-synthetic-seed0.pt").exists()


def _small(make):
    def wrapped(model, *args, **kwargs):
        cfg = make(model, *args, **kwargs)
        if "dim" in {f.name for f in dataclasses.fields(registry.get(model).params)}:  # pop and itemknn have none
            cfg.model_params["dim"] = 16
        return cfg

    return wrapped


def test_unknown_dataset_is_a_user_error(tmp_path):
    from cdrec.errors import CdrecError

    with pytest.raises(CdrecError, match="unknown UCLR dataset"):
        recipe.reproduce(tmp_path / "x", quick=True, datasets=["nope"])
    assert not (tmp_path / "x").exists()
