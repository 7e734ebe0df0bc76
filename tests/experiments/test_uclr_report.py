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
    planned = [model for phase in recipe.PHASES for model in phase]
    for model in planned:
        _fake_run(tmp_path, model, 0, {"book": 0.2, "music": 0.1})
    text = recipe.report(tmp_path, quick=True).read_text()
    assert f"_All {len(planned)} runs of the plan are finished and shown below._" in text and "## Coverage" not in text
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


# ------------------------------------------------------------------------------ --section choices
VARIANTS = ["element-decoded", "row-decoded", "element+dropout-decoded", "element-original", "element-finetuned"]
"""The section's runs at today's defaults (element masking, decoded scores)."""
ROW_VARIANTS = ["row-decoded", "element-decoded", "element+dropout-decoded", "row-original", "row-finetuned"]
"""The section's runs at the defaults before it chose element masking (row masking, decoded scores)."""


@pytest.fixture
def row_default(monkeypatch):
    """The report's logic under the earlier defaults, which the fixtures below were written for."""
    monkeypatch.setattr(recipe, "choice_defaults", lambda: {"mask_mode": "row", "score_with": "decoded"})


def test_element_masking_is_the_default_the_section_chose():
    assert recipe.choice_defaults() == {"mask_mode": "element", "score_with": "decoded"}


def test_choices_plan_is_every_variant_on_every_dataset_validation_only_sharing_the_main_pge_cache(tmp_path):
    plan = recipe.plan_choices(tmp_path, list(recipe.DATASETS), [0, 1, 2], recipe.SCHEDULE, None, "cpu")
    assert sorted(recipe.choice_variants()) == sorted(VARIANTS)  # element-decoded (both defaults) serves both choices once
    assert [run.run_dir.relative_to(tmp_path).as_posix() for run in plan] == [
        f"runs/{ds}/choices/{name}/seed0" for ds in recipe.DATASETS for name in recipe.choice_variants()]  # 20 runs, seed 0 alone
    for run in plan:
        cfg = run.build_config()
        setting = recipe.choice_variants()[run.run_dir.parent.name]
        assert cfg.model == "uclr" and cfg.seed == 0 and cfg.eval.test is False
        assert {k: cfg.model_params[k] for k in setting} == setting
        assert cfg.model_params.get("encoder_dropout") == (0.1 if setting["mask_mode"] == "element+dropout" else None)
        ds = run.run_dir.parts[-4]
        main = recipe._config("uclr", ds, 0, recipe.SCHEDULE, None, "cpu")
        main_dir = tmp_path / "runs" / ds / "uclr" / "seed0"
        assert pge_cache_path(cfg.model_params["pge_cache"], run.run_dir) == pge_cache_path(main.model_params["pge_cache"], main_dir)
        assert cfg.train == main.train and cfg.data == main.data and cfg.split == main.split  # the PGE cache key's inputs
        assert main.eval.test is True
    assert "choices" in recipe.SECTIONS and "choices" not in recipe.DEFAULT_SECTIONS


def _fake_choice(out: Path, ds: str, name: str, valid: dict[str, float], *, test: dict[str, float] | None = None,
                 taus: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """A finished ``--section choices`` run of variant ``name`` on ``ds`` (config as the recipe writes it) with
    validation MRR@10 ``valid`` per domain; ``test`` puts test metrics in its results.json (a choice must not read them)."""
    cfg = recipe._config("uclr", ds, 0, recipe.SCHEDULE, None, "cpu", choice=recipe.choice_variants()[name])
    valid_metrics = {"overall": {"MRR@10": float(np.mean(list(valid.values())))}, **{d: {"MRR@10": v, "n": 100} for d, v in valid.items()}}
    metrics = {"overall": {}, **{d: {"MRR@10": v, "n": 100} for d, v in (test or {}).items()}} if test else {}
    result = RunResult(model="uclr", dataset=ds, protocol="loo", seed=0, metrics=metrics, valid_metrics=valid_metrics,
                       setting={"scope": "joint"}, config=cfg.to_dict(), timing={"train_s": 60.0, "eval_s": 0.0},
                       data_stats={"domains": {d: {"users": 10, "items": 20, "interactions": 30} for d in valid}})
    run = out / "runs" / ds / "choices" / name / "seed0"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(result.to_dict()))
    (run / "config.yaml").write_text(dump_config(cfg))
    if taus is not None:
        tau, counts = taus
        np.savez_compressed(run / "temperatures.npz", tau_ae=tau, total_count=counts)


def _choices(out: Path) -> Path:
    """Douban with every variant, abe without element+dropout; test metrics that rank the views the other way round."""
    douban = {"row-decoded": 0.20, "element-decoded": 0.23, "element+dropout-decoded": 0.22, "row-original": 0.15, "row-finetuned": 0.18}
    abe = {"row-decoded": 0.12, "element-decoded": 0.11, "row-original": 0.10, "row-finetuned": 0.16}
    for name, v in douban.items():
        _fake_choice(out, "douban", name, {"book": v, "music": v - 0.02}, test={"book": 0.5 - v, "music": 0.5 - v})
    for name, v in abe.items():
        _fake_choice(out, "abe", name, {"Beauty": v, "Electronics": v + 0.02})
    Invocation("uclr", out, device="cpu", sections=("choices",)).save()
    return out


def _rows(table: str) -> dict[str, list[str]]:
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in table.splitlines() if line.startswith("| ")}


def test_choices_report_tables_validation_mrr_and_names_the_winner_and_the_default_to_change(tmp_path, row_default):
    out = _choices(tmp_path)
    text = recipe.report(out, device="cpu").read_text()
    assert "## Coverage: 9 of the 20 runs of the plan are finished" in text
    assert "- `abe/choices/element+dropout-decoded`: 0 of 1 finished: missing seed0" in text
    assert "- `afk/choices/row-decoded`: 0 of 1 finished: missing seed0" in text and "`douban/uclr`" not in text
    assert "--section choices" in text
    section = text.split("## Open choices of UCLR on validation")[1].split("\n## ")[0]
    mask, score = section.split("### `mask_mode`")[1].split("### `score_with`")
    rows = _rows(mask)
    assert rows["douban book"] == ["20.00", "23.00", "22.00"] and rows["douban music"] == ["18.00", "21.00", "20.00"]  # validation, not test
    assert rows["abe Beauty"] == ["12.00", "11.00", "–"] and rows["**abe: mean over domains**"] == ["13.00", "12.00", "–"]
    assert rows["**mean over douban**"] == ["**19.00**", "**22.00**", "**21.00**"]  # abe lacks a view: not in the mean
    assert ("**Validation winner: `mask_mode=element`** (mean validation MRR@10 over 1 dataset(s): row 19.00, element 22.00, "
            "element+dropout 21.00; best on 1 of 1). Provisional: not every value has a finished run on afk, abe, ml-1m-genre. "
            "The model's current default (`UCLRParams.mask_mode=row`) is not the validation winner: "
            "**the default should change to `mask_mode=element`**.") in mask
    rows = _rows(score)
    assert list(rows)[0] == "dataset / domain" and rows["dataset / domain"] == ["`decoded` (default)", "`original`", "`finetuned`"]
    assert rows["**mean over douban, abe**"] == ["**16.00**", "**12.50**", "**17.00**"]  # (19 + 13) / 2, (14 + 11) / 2, (17 + 17) / 2
    assert ("**Validation winner: `score_with=finetuned`** (mean validation MRR@10 over 2 dataset(s): decoded 16.00, original 12.50, "
            "finetuned 17.00; best on 1 of 2).") in score and "**the default should change to `score_with=finetuned`**" in score
    summary = json.loads((out / "summary.json").read_text())["choices"]
    assert summary["mask_mode"]["winner"] == "element" and summary["mask_mode"]["datasets"] == ["douban"]
    assert summary["score_with"] == {"default": "decoded", "winner": "finetuned", "datasets": ["douban", "abe"],
                                     "mean_valid_mrr10": pytest.approx({"decoded": 0.16, "original": 0.125, "finetuned": 0.17})}
    assert "nan" not in text.lower() and "/tmp" not in text
    table2 = text.split("## Table 2")[1].split("\n## ")[0]
    assert "| uclr |" not in table2  # a choice's run is not a Table 2 run


def test_choices_report_says_when_the_default_is_the_validation_winner(tmp_path, row_default):
    for name, v in zip(ROW_VARIANTS, [0.30, 0.25, 0.20, 0.10, 0.29]):
        for ds, doms in (("douban", ("book", "music")), ("afk", ("Food", "Kitchen"))):
            _fake_choice(tmp_path, ds, name, dict.fromkeys(doms, v))
    text = recipe.report(tmp_path, device="cpu", sections=("choices",)).read_text()
    assert "The model's current default (`UCLRParams.mask_mode=row`) is the validation winner." in text
    assert "The model's current default (`UCLRParams.score_with=decoded`) is the validation winner." in text
    assert "should change" not in text and "best on 2 of 2" in text


def test_choices_report_gives_the_temperature_spread_and_its_correlation_with_activity_per_view(tmp_path):
    counts = np.array([0, 3, 5, 8, 20, 40])
    flat = np.full(6, 0.1)
    rising = 0.05 + 0.001 * counts
    _fake_choice(tmp_path, "douban", "row-decoded", {"book": 0.2, "music": 0.2}, taus=(flat, counts))
    _fake_choice(tmp_path, "douban", "element-decoded", {"book": 0.2, "music": 0.2}, taus=(rising, counts))
    text = recipe.report(tmp_path, device="cpu", sections=("choices",)).read_text()
    lines = [line for line in text.split("### Learned temperatures per contrastive view")[1].splitlines() if line.startswith("| douban")]
    active = rising[counts > 0]
    assert lines == ["| douban | `row` | 1 | 5 | 0.1000 ± 0.0000 | 0.1000 - 0.1000 | – |",  # constant τ: no correlation to give
                     f"| douban | `element` | 1 | 5 | {active.mean():.4f} ± {active.std():.4f} | {active.min():.4f} - {active.max():.4f} | 1.000 |"]


def test_a_choices_run_scores_validation_only_and_reuses_the_main_plans_pge(tmp_path, monkeypatch):
    """Through the real pipeline on tiny synthetic data: the main plan's `uclr` run, then `--section choices`
    in the same folder: each choice's results.json has validation metrics and no test metrics, the PGE cache
    the main run wrote is read, not rewritten, and the report has both the Table 2 row and the choices."""
    monkeypatch.setitem(recipe.DATASETS, "synthetic", {"name": "synthetic", "synthetic": {"n_users": 200, "items_per_domain": 250, "n_domains": 2, "signal": 1.0}})
    monkeypatch.setattr(recipe, "QUICK", {"train": {"lr": 0.01, "epochs": 2, "patience": 1, "batch_size": 512},
                                          "ladder": {"ae_epochs": 1, "ae_passes": 1, "ft_epochs": 1, "dim": 16, "hidden": [16, 8]},
                                          "seeds": 1, "datasets": ["synthetic"]})
    monkeypatch.setattr(recipe, "PHASES", [["uclr"]])
    recipe.reproduce(tmp_path, quick=True, device="cpu", datasets=["synthetic"])
    cache = tmp_path / "cache" / "pge-synthetic-seed0.pt"
    written = cache.stat().st_mtime_ns
    text = recipe.reproduce(tmp_path, quick=True, device="cpu", datasets=["synthetic"], sections=["choices"]).read_text()
    assert cache.stat().st_mtime_ns == written and list(tmp_path.rglob("pge-*.pt")) == [cache]  # read, not rewritten, no other
    for name in VARIANTS:
        res = RunResult.read(tmp_path / "runs" / "synthetic" / "choices" / name / "seed0" / "results.json")
        assert res.metrics == {} and res.buckets == {} and res.config["eval"]["test"] is False
        assert set(res.valid_metrics) == {"overall", "D0", "D1"} and 0 < res.valid_metrics["D0"]["MRR@10"] <= 1
        assert res.history[0]["epochs"][0]["stage"] == "pge"
    main = RunResult.read(tmp_path / "runs" / "synthetic" / "uclr" / "seed0" / "results.json")
    assert main.history[0]["epochs"][:2] == res.history[0]["epochs"][:2]  # the cached pretraining's epochs
    assert "## Open choices of UCLR on validation" in text and "| uclr |" in text.split("## Table 2")[1].split("\n## ")[0]
    assert "_All 5 runs of the plan are finished and shown below._" in text


def test_stage_epochs_give_best_epoch_run_and_cap_per_stage():
    def ep(epoch, stage, mrr):
        return {"epoch": epoch, "stage": stage, "valid": {"MRR@10": mrr}}

    staged = RunResult(model="uclr", dataset="douban", protocol="p", seed=0, metrics={},
                       config={"train": {"epochs": 200, "metric": "MRR@10"}, "model_params": {"ae_epochs": 20, "ft_epochs": 10}},
                       history=[{"scope": "joint", "best_epoch": 9, "epochs": [
                           ep(1, "pge", 0.1), ep(2, "pge", 0.3), ep(3, "pge", 0.2),
                           *[ep(k, "ae", 0.1 * k) for k in range(1, 21)],
                           ep(0, "finetune:0", 0.5), ep(1, "finetune:0", 0.4), ep(2, "finetune:0", 0.5)]}])
    assert recipe.stage_epochs(staged) == [("pge", 2, 3, 200), ("ae", 20, 20, 20), ("finetune:0", 0, 2, 10)]
    single = RunResult(model="bprmf", dataset="douban", protocol="p", seed=0, metrics={}, config={"train": {"epochs": 200}},
                       history=[{"scope": "book", "best_epoch": 65, "epochs": [{"epoch": k} for k in range(1, 86)]}])
    assert recipe.stage_epochs(single) == [("book", 65, 85, 200)]
