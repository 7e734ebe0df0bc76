"""The UCLR report of a partial plan (coverage, no NaN, no machine paths, byte-identical rebuilds), its
headline rows, and the portable run config (PGE cache relative to the run folder, no data.data_dir)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from cdrec.config import dump_config, load_config
from cdrec.experiments import uclr as recipe
from cdrec.experiments.pipeline import config_changes, run_config
from cdrec.experiments.runner import Invocation
from cdrec.models.cf.uclr import pge_cache_path
from cdrec.results.schema import RunResult
from tests.cli_helpers import call_main

DOMAINS = ("book", "music")


def _fake_run(out: Path, model: str, seed: int, mrr: dict[str, float], *, lr: float = 0.01) -> None:
    """A finished Douban run of ``model`` (config as the recipe writes it) with MRR@10 ``mrr`` per domain."""
    cfg = recipe._config(model, "douban", seed, recipe.SCHEDULE, None, "cpu")
    config = {**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "lr": lr}}
    if model == "uclr":
        config["model_params"] = {**config["model_params"], "dim": 128, "hidden": [128, 32], "mask_ratio": 0.3, "mask_mode": "row",
                                  "alpha": 1e-3, "tau_min": 1e-5, "tau_max": 1.0, "reg": 1e-5, "lora_rank": 8}
    metrics = {d: {"MRR@10": v, "HR@10": 2 * v, "NDCG@10": 1.5 * v, "n": 100} for d, v in mrr.items()}
    buckets = {d: {"1-2": {**m, "n": 10}} for d, m in metrics.items()}
    result = RunResult(model=model, dataset="douban", protocol="loo", seed=seed, metrics={"overall": {}, **metrics}, buckets=buckets,
                       setting={"scope": cfg.scope}, config=config, timing={"train_s": 1.5, "eval_s": 0.5},
                       data_stats={"domains": {d: {"users": 10, "items": 20, "interactions": 30} for d in mrr}})
    run = out / "runs" / "douban" / model / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(result.to_dict()))
    (run / "config.yaml").write_text(dump_config(cfg))


def _partial(out: Path) -> Path:
    """Seed 0 of UCLR, PGE, BPR-MF and Pop on Douban, the rest of the default plan not run; recorded as `--device cpu`."""
    _fake_run(out, "uclr", 0, {"book": 0.20, "music": 0.16})
    _fake_run(out, "bprmf", 0, {"book": 0.17, "music": 0.14})
    _fake_run(out, "pop", 0, {"book": 0.05, "music": 0.04})
    _fake_run(out, "pge", 0, {"book": 0.16, "music": 0.12})
    Invocation("uclr", out, device="cpu").save()
    return out


def test_partial_report_names_the_missing_runs_and_datasets_without_nan_or_paths(tmp_path):
    out = _partial(tmp_path / "repro")
    text = recipe.report(out, device="cpu").read_text()
    planned = len(recipe.plan_runs(out, list(recipe.DATASETS), [0, 1, 2], recipe.SCHEDULE, None, "cpu"))
    assert f"## Coverage: 4 of the {planned} runs of the plan are finished" in text
    assert "- `douban/neumf`: 0 of 3 finished: missing seed0, seed1, seed2" in text and "- `douban/uclr`: 1 of 3 finished: missing seed1, seed2" in text
    assert "- `afk/uclr`: 0 of 3 finished: missing seed0, seed1, seed2" in text
    assert "`cdrec reproduce uclr --out docs/reproductions/uclr --device cpu` trains the missing ones" in text
    assert "**No finished run at all on: afk, abe, ml-1m-genre**" in text
    assert "No finished Table 2 run yet on: afk, abe, ml-1m-genre (no table)." in text
    assert "No finished ladder run yet on: afk, abe, ml-1m-genre (no table)." in text
    assert "| neumf | book | not run | 26.67 / 46.66 / 31.41 | – |" in text  # a paper cell without ours
    ladder = text.split("## Tables 4-5")[1].split("\n## ")[0]
    assert "| pge | 16.00 |" in ladder and "| pge+ae |" not in ladder
    assert "| uclr | 20.00 | 40.00 | 30.00 | 16.00 | 32.00 | 24.00 | 18.00 | – |" in ladder  # no Δ: pge+ucl-ae did not run
    assert "step to uclr" not in text
    assert "| douban | book | bprmf | 17.00 | 20.00 | +3.00 | – | – |" in text  # one seed: no t-test
    assert "Finished `uclr` runs without their `temperatures.npz` (not in this analysis): `runs/douban/uclr/seed0`." in text
    assert "nan" not in text.lower() and str(tmp_path) not in text and "/tmp" not in text
    assert "UCLR settings (its runs' config): embedding size 128, MLP [128, 32], mask ratio 0.3" in text


def test_a_finished_plan_says_so_and_lists_no_missing_run(tmp_path):
    for model in recipe.MODELS:
        _fake_run(tmp_path, model, 0, {"book": 0.2, "music": 0.1})
    text = recipe.report(tmp_path, quick=True).read_text()
    assert f"_All {len(recipe.MODELS)} runs of the plan are finished and shown below._" in text and "## Coverage" not in text
    assert "No finished" not in text and "not run" not in text


def test_report_only_rebuilds_the_same_bytes_in_another_folder(tmp_path):
    out = _partial(tmp_path / "a")
    assert call_main("reproduce", "uclr", "--out", str(out), "--report-only").code == 0
    first = (out / "report.md").read_bytes()
    assert call_main("reproduce", "uclr", "--out", str(out), "--report-only").code == 0
    assert (out / "report.md").read_bytes() == first
    copy = tmp_path / "elsewhere" / "b"
    shutil.copytree(out, copy)
    (copy / "report.md").unlink()
    assert call_main("reproduce", "uclr", "--out", str(copy), "--report-only").code == 0
    assert (copy / "report.md").read_bytes() == first


def test_classics_coverage_takes_the_pairs_from_the_finished_runs_domains(tmp_path):
    out = _partial(tmp_path)
    Invocation("uclr", out, device="cpu", sections=("classics",)).save()
    text = recipe.report(out, device="cpu").read_text()
    assert "- `douban/classics/emcdr/book-music`: 0 of 3 finished: missing seed0, seed1, seed2" in text
    assert "- `douban/classics/emcdr/music-book`: 0 of 3 finished: missing seed0, seed1, seed2" in text
    assert "`douban/uclr`" not in text.split("## Coverage")[1].split("\n## ")[0]  # the main plan is not this one
    assert "--section classics" in text


def test_headline_rows_are_uclr_mrr_per_paper_cell_with_mean_std_and_seeds(tmp_path):
    book = [0.20, 0.23, 0.21]
    for seed, v in enumerate(book):
        _fake_run(tmp_path, "uclr", seed, {"book": v, "music": v / 2})
    _fake_run(tmp_path, "bprmf", 0, {"book": 0.9, "music": 0.9})  # not UCLR: not in the headline
    rows = {row.dataset.split(": ")[-1]: row for row in recipe.headline(tmp_path)}
    assert list(rows) == ["book", "music", "Electronics"]
    assert rows["book"].paper_value == 29.75 and rows["Electronics"].paper_value == 23.68
    mean, std, n = rows["book"].ours
    assert n == 3 and mean == pytest.approx(100 * np.mean(book)) and std == pytest.approx(100 * np.std(book, ddof=1))
    assert rows["music"].ours[0] == pytest.approx(50 * np.mean(book))
    assert rows["Electronics"].ours is None  # abe has no finished uclr run
    assert rows["book"].digits == 2 and "lr 0.01" in rows["book"].note and f"≤{recipe.SCHEDULE['train']['epochs']} epochs" in rows["book"].note
    assert rows["book"].dataset == "Douban: book" and "also has Movies" in rows["music"].note
    assert rows["Electronics"].dataset == "Amazon Beauty-Electronics: Electronics" and "Books-Movies-Electronics" in rows["Electronics"].note


def test_run_config_names_a_pge_cache_relative_to_the_run_folder_and_no_data_dir(tmp_path):
    cfg = recipe._config("pge+ae", "douban", 2, recipe.SCHEDULE, None, "cpu")
    assert cfg.model_params["pge_cache"] == "../../../../cache/pge-douban-seed2.pt"
    assert cfg.data.data_dir is None and "data_dir: null" in dump_config(cfg)
    lightgcn = recipe._config("uclr-lightgcn", "abe", 0, recipe.SCHEDULE, None, "cpu")
    assert lightgcn.model_params["pge_cache"] == "../../../../cache/pge-lightgcn-abe-seed0.pt"
    assert recipe._config("bprmf", "douban", 0, recipe.SCHEDULE, tmp_path, "cpu").data.data_dir == str(tmp_path)
    run = tmp_path / "out" / "runs" / "douban" / "pge" / "seed0"
    run.mkdir(parents=True)
    assert pge_cache_path(cfg.model_params["pge_cache"], run) == (tmp_path / "out" / "cache" / "pge-douban-seed2.pt").resolve()
    assert pge_cache_path("/abs/pge.pt", run) == Path("/abs/pge.pt") and pge_cache_path(None, run) is None
    assert pge_cache_path("pge.pt", None) == Path("pge.pt")


def test_a_config_with_an_absolute_pge_cache_is_the_same_run(tmp_path):
    """Run folders made before the cache was relative (an absolute path) are still finished runs of the plan."""
    cfg = recipe._config("uclr", "douban", 0, recipe.SCHEDULE, None, "cpu")
    saved = yaml.safe_load(dump_config(cfg))
    saved["model_params"]["pge_cache"] = "/elsewhere/cache/pge-douban-seed0.pt"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    assert config_changes(cfg, tmp_path) == []
    saved["model_params"]["ae_epochs"] = 99
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    assert config_changes(cfg, tmp_path) == ["model_params.ae_epochs"]


def test_a_relative_pge_cache_is_written_under_the_run_folder_not_the_working_folder(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    sets = ["model=pge", "train.progress=false", "train.device=cpu", "train.batch_size=128", "train.epochs=1", "eval.ks=[10]",
            "data.synthetic={n_users: 60, n_domains: 2, items_per_domain: 80, signal: 1.0, seed: 3}", "split.n_negatives=20",
            "model_params.dim=8", "model_params.pge_cache=../cache/pge.pt"]
    run_config(load_config(None, sets), tmp_path / "runs" / "a")
    assert (tmp_path / "runs" / "cache" / "pge.pt").exists() and list(cwd.iterdir()) == []
    assert "../cache/pge.pt" in (tmp_path / "runs" / "a" / "config.yaml").read_text()
