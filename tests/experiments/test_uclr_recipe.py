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
    assert all(f"| {model} |" in table2 for model in recipe.CROSS_DOMAIN)  # the multi-target CDR rows
    assert (tmp_path / "temperature_vs_activity.png").stat().st_size > 0
    assert (tmp_path / "cache" / "pge-synthetic-seed0.pt").exists()
    config = (tmp_path / "runs" / "synthetic" / "pge+ae" / "seed1" / "config.yaml").read_text()
    assert "pge_cache: ../../../../cache/pge-synthetic-seed1.pt" in config and str(tmp_path) not in config  # portable


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


def test_main_plan_runs_uclr_on_the_lightgcn_backbone_right_after_lightgcn(tmp_path):
    runs = recipe.plan_runs(tmp_path, ["douban", "afk"], [0, 1], recipe.SCHEDULE, None, "cpu")
    labels = [r.label for r in runs]
    for ds in ("douban", "afk"):
        for seed in (0, 1):
            at = labels.index(f"{ds}/lightgcn/seed{seed}")
            assert labels[at + 1:at + 3] == [f"{ds}/pge-lightgcn/seed{seed}", f"{ds}/uclr-lightgcn/seed{seed}"]
    assert len(runs) == 2 * 2 * sum(len(phase) for phase in recipe.PHASES)


def test_classics_section_plans_every_pair_and_direction(tmp_path, monkeypatch):
    """Single-target classics on every ordered pair, dual-target ones on every unordered pair; not in the default plan."""
    monkeypatch.setitem(recipe.DATASETS, "three", {"name": "synthetic"})
    domains = {"three": ["a", "b", "c"], "douban": ["book", "music"], "afk": ["Food", "Kitchen"], "abe": ["Beauty", "Electronics"]}
    plan = recipe.plan_classics(tmp_path, domains, [0, 1, 2], recipe.SCHEDULE, None, "cpu")
    single = [m for m in recipe.CLASSICS if registry.get(m).cls.target_only]
    assert sorted(single) == ["dcdcsr", "emcdr", "natr", "sscdr"]
    per_seed = {"three": 6 * len(single) + 3 * (len(recipe.CLASSICS) - len(single)), **dict.fromkeys(["douban", "afk", "abe"], 2 * len(single) + len(recipe.CLASSICS) - len(single))}
    assert len(plan) == 3 * sum(per_seed.values()) == 3 * 90  # the 90 runs per seed SECTIONS names
    folders = {run.run_dir.relative_to(tmp_path / "runs").parts for run in plan}
    assert len(folders) == len(plan)
    emcdr = sorted(p[3] for p in folders if p[0] == "three" and p[2] == "emcdr" and p[4] == "seed0")
    assert emcdr == ["a-b", "a-c", "b-a", "b-c", "c-a", "c-b"]
    cmf = sorted(p[3] for p in folders if p[0] == "three" and p[2] == "cmf" and p[4] == "seed0")
    assert cmf == ["a-b", "a-c", "b-c"]
    cfg = next(run for run in plan if run.run_dir.parts[-3:] == ("emcdr", "c-a", "seed2")).config()
    assert (cfg.model, cfg.seed, cfg.scope) == ("emcdr", 2, "joint")
    assert (cfg.model_params["source"], cfg.model_params["target"], sorted(cfg.data.keep_domains)) == ("c", "a", ["a", "c"])
    assert cfg.train.epochs == recipe.SCHEDULE["train"]["epochs"]
    assert "classics" in recipe.SECTIONS and "classics" not in recipe.DEFAULT_SECTIONS


def test_classics_single_target_runs_evaluate_the_target_only(tmp_path, monkeypatch):
    """Through the recipe's shared prepare, a single-target classic is scored on its target alone
    (its ``evaluation_split``), a dual-target one on both; the report has the classics' tables."""
    monkeypatch.setitem(recipe.DATASETS, "synthetic", {"name": "synthetic", "synthetic": {"n_users": 120, "items_per_domain": 600, "n_domains": 2, "signal": 1.0}})
    monkeypatch.setattr(recipe, "QUICK", {"train": {"lr": 0.01, "epochs": 1, "patience": 1, "batch_size": 512}, "ladder": {"ae_epochs": 1, "ae_passes": 1, "ft_epochs": 1}, "seeds": 1, "datasets": ["synthetic"]})
    monkeypatch.setattr(recipe, "CLASSICS", ["cmf", "emcdr"])
    monkeypatch.setattr(recipe, "_config", _small(recipe._config))
    text = recipe.reproduce(tmp_path, quick=True, device="cpu", datasets=["synthetic"], sections=["classics"]).read_text()
    root = tmp_path / "runs" / "synthetic" / "classics"
    for run in (root / "emcdr").iterdir():
        res = json.loads((run / "seed0" / "results.json").read_text())
        source, target = run.name.split("-")
        assert res["setting"]["evaluated"] == [target] and res["setting"]["source"] == source
        assert set(res["metrics"]) == {"overall", target}
    (cmf_run,) = (root / "cmf").iterdir()
    assert set(json.loads((cmf_run / "seed0" / "results.json").read_text())["metrics"]) == {"overall", *cmf_run.name.split("-")}
    assert len(list((root / "emcdr").iterdir())) == 2 and not (tmp_path / "runs" / "synthetic" / "uclr").exists()
    assert "## The two-domain classics beside UCLR" in text and "| emcdr |" in text


def _fake_run(path, model, seed, metrics, setting=None):
    from cdrec.results.schema import RunResult

    path.mkdir(parents=True)
    result = RunResult(model=model, dataset="fake", protocol="loo", seed=seed, setting=setting or {}, config={"data": {"name": "fake"}},
                       metrics={"overall": {}, **{d: {"MRR@10": v, "HR@10": 2 * v, "NDCG@10": 1.5 * v} for d, v in metrics.items()}},
                       data_stats={"domains": {}})
    (path / "results.json").write_text(json.dumps(result.to_dict()))


def test_classics_report_tables_uclr_beside_each_classic_with_a_paired_ttest(tmp_path, monkeypatch):
    """Per target domain: UCLR, the best Table 2 baseline and every classic scored there, with Δ and
    the paired t-test of UCLR against each; a classic with no run is absent."""
    from scipy.stats import ttest_rel

    monkeypatch.setitem(recipe.DATASETS, "fake", {"name": "fake"})
    uclr_a, uclr_b, emcdr_b, cmf_a, cmf_b = [0.30, 0.33, 0.31], [0.40, 0.42, 0.45], [0.20, 0.26, 0.21], [0.25, 0.24, 0.29], [0.35, 0.41, 0.36]
    runs = tmp_path / "runs" / "fake"
    for seed in range(3):
        _fake_run(runs / "uclr" / f"seed{seed}", "uclr", seed, {"A": uclr_a[seed], "B": uclr_b[seed]})
        _fake_run(runs / "bprmf" / f"seed{seed}", "bprmf", seed, {"A": 0.1, "B": 0.2 + seed / 100})
        _fake_run(runs / "pop" / f"seed{seed}", "pop", seed, {"A": 0.05, "B": 0.05})
        _fake_run(runs / "classics" / "emcdr" / "A-B" / f"seed{seed}", "emcdr", seed, {"B": emcdr_b[seed]},
                  {"source": "A", "target": "B", "evaluated": ["B"]})
        _fake_run(runs / "classics" / "cmf" / "A-B" / f"seed{seed}", "cmf", seed, {"A": cmf_a[seed], "B": cmf_b[seed]},
                  {"source": "A", "target": "B", "evaluated": ["A", "B"]})
    text = recipe.report(tmp_path, datasets=["fake"]).read_text()
    section = text.split("## The two-domain classics beside UCLR")[1].split("\n## ")[0]
    tables = {head.split("\n")[0]: head for head in section.split("### fake: target ")[1:]}
    assert sorted(tables) == ["A", "B"]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in tables["B"].splitlines() if line.startswith("| ")}
    assert list(rows)[1:] == ["uclr", "bprmf", "cmf", "emcdr"]  # after the header: UCLR, the best baseline, the classics
    assert rows["emcdr"][0] == "A -> B" and rows["cmf"][0] == "A + B"
    t, p = ttest_rel(uclr_b, emcdr_b)
    assert rows["emcdr"][-3:] == [f"{100 * (sum(uclr_b) - sum(emcdr_b)) / 3:+.2f}", f"{t:.2f}", f"{p:.4f}"]
    t, p = ttest_rel(uclr_a, cmf_a)
    rows_a = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in tables["A"].splitlines() if line.startswith("| ")}
    assert "emcdr" not in rows_a and rows_a["cmf"][-2:] == [f"{t:.2f}", f"{p:.4f}"]


def test_cli_passes_section_classics_to_the_recipe(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cdrec.cli.main import app

    asked = {}
    monkeypatch.setattr(recipe, "reproduce", lambda out, **kw: asked.update(kw) or out / "report.md")
    result = CliRunner().invoke(app, ["reproduce", "uclr", "--out", str(tmp_path), "--section", "classics"])
    assert result.exit_code == 0, result.output
    assert asked["sections"] == ["classics"]


def test_unknown_section_is_a_user_error(tmp_path):
    from cdrec.errors import CdrecError

    with pytest.raises(CdrecError, match=r"--section: expected one of \['choices', 'classics', 'main'\], got 'classic'"):
        recipe.reproduce(tmp_path / "x", quick=True, sections=["classic"])
    assert not (tmp_path / "x").exists()
