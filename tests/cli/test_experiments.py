"""``cdrec run --seeds``, ``cdrec compare``, ``cdrec tune`` and ``train.logger=tensorboard``, through the command line."""

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from cdrec.config import load_config
from cdrec.results import RunResult, aggregate_seeds, paired_ttest
from cdrec.train.tasks import RankingTask
from tests.cli_helpers import call_main
from tests.conftest import shared_path

TINY = ["--set", "data.synthetic={n_users: 200, items_per_domain: 100}", "--set", "train.epochs=2", "--set", "model_params.dim=8",
        "--set", "split.n_negatives=20", "--set", "train.progress=false", "--device", "cpu"]
SPACE = {
    "train.lr": {"type": "float", "low": "1e-3", "high": "1e-1", "log": True},
    "model_params.dim": {"type": "int", "low": 4, "high": 16, "step": 4},
    "train.optimizer": {"type": "categorical", "choices": ["adam", "adamw"]},
}


def ok(*args: str) -> str:
    out = call_main(*args)
    assert out.exception is None, repr(out.exception)
    assert out.code == 0, out.stderr
    return out.stdout


def refused(*args: str) -> str:
    out = call_main(*args)
    assert out.exception is None, repr(out.exception)
    assert out.code == 2, (out.stdout, out.stderr)
    err = out.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory):
    """Two configs (lr 1e-3 and 1e-2) over seeds 0, 1, 2, run with --seeds."""
    root = tmp_path_factory.mktemp("seeds")
    ok("run", *TINY, "--seeds", "0,1,2", "--out", str(root / "a"))
    ok("run", *TINY, "--set", "train.lr=0.01", "--seeds", "0,1,2", "--out", str(root / "b"))
    return root


def test_seeds_write_one_run_per_seed_and_the_aggregate(seed_runs):
    results = [RunResult.read(seed_runs / "a" / f"seed{s}" / "results.json") for s in (0, 1, 2)]
    assert [r.seed for r in results] == [0, 1, 2]
    assert all((seed_runs / "a" / f"seed{s}" / f) .exists() for s in (0, 1, 2) for f in ("config.yaml", "model.pt", "results.md"))
    assert len({r.metrics["overall"]["HR@10"] for r in results}) > 1  # the seeds differ
    agg = json.loads((seed_runs / "a" / "aggregate.json").read_text())
    assert agg["seeds"] == [0, 1, 2] and agg["runs"] == {"0": "seed0", "1": "seed1", "2": "seed2"}
    values = [r.metrics["overall"]["HR@10"] for r in results]
    hr = agg["metrics"]["overall"]["HR@10"]
    assert hr["mean"] == pytest.approx(np.mean(values)) and hr["std"] == pytest.approx(np.std(values, ddof=1)) and hr["n"] == 3
    assert f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}" in (seed_runs / "a" / "aggregate.md").read_text()


def test_seeds_refuse_finished_runs_and_resume_keeps_them(seed_runs, tmp_path):
    err = refused("run", *TINY, "--seeds", "0,1,2", "--out", str(seed_runs / "a"))
    assert "seed0 holds a finished run" in err and "--overwrite" in err
    assert "--seeds: a seed is repeated" in refused("run", *TINY, "--seeds", "1,1", "--out", str(tmp_path / "x"))
    assert "--seeds: expected comma-separated seeds" in refused("run", *TINY, "--seeds", "0,one", "--out", str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()
    before = (seed_runs / "a" / "seed1" / "results.json").stat().st_mtime_ns
    out = ok("run", *TINY, "--seeds", "0,1,2", "--resume", "--out", str(seed_runs / "a"))
    assert "seed 1: wrote" not in out and (seed_runs / "a" / "seed1" / "results.json").stat().st_mtime_ns == before


def test_seeds_refuse_an_unfinished_seed(tmp_path):
    """A seed folder left by a kill (checkpoints, no results.json) is never restarted silently."""
    (tmp_path / "x" / "seed1").mkdir(parents=True)
    (tmp_path / "x" / "seed1" / "checkpoint-joint.pt").write_bytes(b"partial")
    err = refused("run", *TINY, "--seeds", "0,1", "--out", str(tmp_path / "x"))
    assert "seed1: holds an unfinished run" in err and "--resume" in err
    assert not (tmp_path / "x" / "seed0").exists()


def test_seeds_resume_refuses_finished_seeds_of_another_config(seed_runs):
    """--resume keeps finished seeds only when they ran this config: mixed configs would not aggregate."""
    err = refused("run", *TINY, "--set", "train.lr=0.05", "--seeds", "0,1,2", "--resume", "--out", str(seed_runs / "a"))
    assert "holds a finished run of another config (train.lr)" in err and "--overwrite" in err


def test_compare_refuses_runs_on_other_data_or_a_folder_of_mixed_configs(seed_runs, tmp_path):
    other = tmp_path / "other"
    ok("run", *TINY, "--set", "data.synthetic={n_users: 150, items_per_domain: 100}", "--seeds", "0,1", "--out", str(other))
    err = refused("compare", str(seed_runs / "a"), str(other))
    assert "data or split differ from the reference's (data.synthetic.n_users)" in err
    mixed = tmp_path / "mixed"
    for name, lr in (("seed0", "0.001"), ("seed1", "0.01")):
        (mixed / name).mkdir(parents=True)
        for f in ("results.json", "config.yaml"):
            (mixed / name / f).write_bytes((seed_runs / ("a" if lr == "0.001" else "b") / name / f).read_bytes())
    assert "seed1 differs from seed0 in train.lr" in refused("compare", str(mixed))


def test_compare_gives_the_python_apis_means_and_p_values(seed_runs):
    a = [RunResult.read(seed_runs / "a" / f"seed{s}" / "results.json") for s in (0, 1, 2)]
    b = [RunResult.read(seed_runs / "b" / f"seed{s}" / "results.json") for s in (0, 1, 2)]
    table = json.loads(ok("compare", str(seed_runs / "a"), str(seed_runs / "b"), "--json"))
    assert table["reference"] == str(seed_runs / "a")
    (_, stats_b), = aggregate_seeds(b).items()
    for metric in ("HR@10", "NDCG@10", "MRR"):
        t, p = paired_ttest(a, b, "overall", metric)
        row = table["runs"][1]["metrics"][metric]
        assert (row["mean"], row["std"], row["n"]) == pytest.approx(stats_b["overall"][metric])
        assert row["p"] == pytest.approx(p) and row["t"] == pytest.approx(t) and 0 < p < 1
        assert table["runs"][0]["metrics"][metric]["p"] is None  # the reference is not tested against itself
    text = ok("compare", str(seed_runs / "a"), str(seed_runs / "b"), "--metric", "HR@10")
    _, p = paired_ttest(a, b, "overall", "HR@10")
    mean, std, _ = stats_b["overall"]["HR@10"]
    assert f"{seed_runs / 'a'} (reference)" in text and "paired by seed" in text
    assert f"| {mean:.4f} ± {std:.4f} | {p:.4f} |" in text
    single = json.loads(ok("compare", str(seed_runs / "a"), str(seed_runs / "b" / "seed0"), "--json"))
    assert single["runs"][1]["seeds"] == [0] and single["runs"][1]["metrics"]["HR@10"]["p"] is None  # one shared seed: no test
    assert "--metric: 'HR@1'" in refused("compare", str(seed_runs / "a"), "--metric", "HR@1")
    assert "no results.json" in refused("compare", str(seed_runs))


def write_space(path: Path, space: dict) -> Path:
    path.write_text(yaml.safe_dump(space))
    return path


@pytest.fixture
def test_reads(monkeypatch):
    """Every part the ranking task evaluates, in order."""
    parts: list[str] = []
    evaluate = RankingTask.evaluate

    def counting(self, model, split, part, cfg, device):
        parts.append(part)
        return evaluate(self, model, split, part, cfg, device)

    monkeypatch.setattr(RankingTask, "evaluate", counting)
    return parts


def completed_trials(out: Path) -> list[dict]:
    rows = []
    for run in sorted((out / "trials").iterdir()):
        result = RunResult.read(run / "results.json")
        rows.append({"run": run.name, "lr": result.config["train"]["lr"], "dim": result.config["model_params"]["dim"],
                     "valid": result.valid_metrics["overall"]["HR@10"], "tested": bool(result.metrics), "model": (run / "model.pt").exists()})
    return rows


def test_tune_selects_on_validation_reads_test_once_and_resumes(tmp_path, test_reads):
    space = write_space(tmp_path / "space.yaml", SPACE)
    base = ["--set", "train.metric=HR@10", *TINY]
    out = tmp_path / "study"
    first = ok("tune", "--space", str(space), "--trials", "3", "--out", str(out), *base)
    assert len([line for line in first.splitlines() if line.startswith("trial ")]) == 3  # one progress line per trial
    assert test_reads.count("test") == 1 and test_reads.count("valid") > 3
    trials = completed_trials(out)
    best = max(trials, key=lambda t: t["valid"])
    assert [t["tested"] for t in trials] == [t is best for t in trials]  # test metrics for the best trial only
    assert [t["model"] for t in trials] == [t is best for t in trials]
    best_cfg = load_config(out / "best.yaml")
    assert (best_cfg.train.lr, best_cfg.model_params["dim"]) == (best["lr"], best["dim"]) and best_cfg.eval.test
    assert f"**{best['run']}** (best)" in (out / "trials.md").read_text()

    test_reads.clear()
    more = ok("tune", "--space", str(space), "--trials", "4", "--out", str(out), *base)
    assert [line.split(" (")[0] for line in more.splitlines() if line.startswith("trial ")] == ["trial 4/4"]
    trials = completed_trials(out)
    best = max(trials, key=lambda t: t["valid"])
    assert len(trials) == 4 and [t["tested"] for t in trials] == [t is best for t in trials]
    assert test_reads.count("test") == (1 if best["run"] == "trial-003" else 0)  # only a new best is scored on test

    fresh = tmp_path / "fresh"
    ok("tune", "--space", str(space), "--trials", "4", "--out", str(fresh), *base)
    assert completed_trials(fresh) == trials  # seeded: 3 trials and a rerun to 4 are the 4 trials of one search
    assert "already holds 4 completed trials" in ok("tune", "--space", str(space), "--trials", "2", "--out", str(out), *base)
    assert "holds a study of another config" in refused("tune", "--space", str(space), "--trials", "5", "--out", str(out), *base, "--set", "train.epochs=3")
    pruned = next(t for t in trials if t is not best)
    assert "its model was removed (`cdrec tune` keeps model.pt for the best trial only" in refused("evaluate", str(out / "trials" / pruned["run"]))


def test_tune_interrupted_by_ctrl_c_resumes_to_the_same_trials(tmp_path, monkeypatch):
    from cdrec.experiments import pipeline

    space = write_space(tmp_path / "space.yaml", SPACE)
    base = ["--set", "train.metric=HR@10", *TINY]
    run_config, calls = pipeline.run_config, []

    def interrupted_second_trial(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return run_config(*args, **kwargs)

    monkeypatch.setattr(pipeline, "run_config", interrupted_second_trial)
    out = call_main("tune", "--space", str(space), "--trials", "2", "--out", str(tmp_path / "study"), *base)
    assert out.code == 130  # Ctrl-C
    assert [t["run"] for t in completed_trials(tmp_path / "study")] == ["trial-000"] and not (tmp_path / "study" / "best.yaml").exists()
    monkeypatch.setattr(pipeline, "run_config", run_config)
    ok("tune", "--space", str(space), "--trials", "2", "--out", str(tmp_path / "study"), *base)
    ok("tune", "--space", str(space), "--trials", "2", "--out", str(tmp_path / "fresh"), *base)
    assert completed_trials(tmp_path / "study") == completed_trials(tmp_path / "fresh")


@pytest.mark.parametrize(
    "space, message",
    [
        ({"train.lrr": {"type": "float", "low": 0.1, "high": 0.2}}, "train: unknown key 'lrr'"),
        ({"seed": {"type": "int", "low": 0, "high": 9}}, "seed: cannot be searched"),
        ({"split.n_negatives": {"type": "int", "low": 5, "high": 9}}, "split.n_negatives: cannot be searched"),
        ({"train.lr": {"type": "float", "low": 0.2, "high": 0.1}}, "train.lr: expected low < high"),
        ({"train.lr": {"type": "float", "low": 0, "high": 0.1, "log": True}}, "train.lr.low: a log scale needs low > 0"),
        ({"train.lr": {"type": "float", "low": -1, "high": 0.1}}, "train.lr: expected a number > 0, got -1.0"),
        ({"train.lr": {"type": "normal", "low": 0, "high": 1}}, "train.lr.type: expected float, int or categorical"),
        ({"train.lr": {"type": "float", "lo": 0, "high": 1}}, "train.lr: unknown key 'lo'"),
        ({"model_params.dim": {"type": "int", "low": 4.5, "high": 16}}, "model_params.dim.low: an int key needs a whole number"),
        ({"train.optimizer": {"type": "categorical", "choices": ["adam", "lion"]}}, "train.optimizer: expected adam, adamw or sgd, got 'lion'"),
        ({"model_params.depth": {"type": "int", "low": 1, "high": 3}}, "depth"),
        ({"train.lr": 0.01}, "train.lr: expected a mapping"),
        ({}, "empty search space"),
    ],
)
def test_tune_space_mistakes_name_the_key_and_write_nothing(tmp_path, space, message):
    path = write_space(tmp_path / "space.yaml", space)
    err = refused("tune", "--space", str(path), "--trials", "2", "--out", str(tmp_path / "study"), *TINY)
    assert message in err and str(path) in err
    assert not (tmp_path / "study").exists()


def test_tune_without_optuna_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    path = write_space(tmp_path / "space.yaml", SPACE)
    err = refused("tune", "--space", str(path), "--trials", "2", "--out", str(tmp_path / "study"), *TINY)
    assert "the 'tune' extra" in err and "pip install 'cdrec[tune]'" in err and not (tmp_path / "study").exists()


def test_tune_refuses_mtal(tmp_path):
    path = write_space(tmp_path / "space.yaml", {"train.lr": {"type": "float", "low": 0.001, "high": 0.01}})
    err = refused("tune", "--space", str(path), "--trials", "2", "--out", str(tmp_path / "study"), "--set", "model=assisted-mf",
                  "--set", "split.protocol=ratio", "--set", "train.metric=auto", "--set", "data.synthetic={n_users: 60, items_per_domain: 30}")
    assert "eval.test" in err and not (tmp_path / "study").exists()


def test_tensorboard_logs_every_epochs_loss_and_validation_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ok("run", *TINY, "--set", "train.epochs=3", "--set", "train.patience=5", "--set", "train.logger=tensorboard", "--out", str(tmp_path / "r"))
    result = RunResult.read(tmp_path / "r" / "results.json")
    logs = EventAccumulator(str(tmp_path / "r" / "tensorboard" / "bprmf_joint"))
    logs.Reload()
    epochs = result.history[0]["epochs"]
    assert [(e.step, e.value) for e in logs.Scalars("train/loss")] == [(h["epoch"], pytest.approx(h["loss"], rel=1e-6)) for h in epochs]
    for metric in ("HR@10", "NDCG@10", "MRR"):
        assert [e.value for e in logs.Scalars(f"valid/{metric}")] == [pytest.approx(h["valid"][metric], rel=1e-6) for h in epochs]
    assert len(epochs) == 3 and not (tmp_path / "plain").exists()
    ok("run", *TINY, "--out", str(tmp_path / "plain"))
    assert not (tmp_path / "plain" / "tensorboard").exists()  # train.logger defaults to none


def test_tensorboard_mistakes(tmp_path, monkeypatch):
    import importlib.util

    assert "train.logger: expected none or tensorboard, got 'wandb'" in refused("run", *TINY, "--set", "train.logger=wandb", "--out", str(tmp_path / "r"))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else find_spec(name, *a))
    err = refused("run", *TINY, "--set", "train.logger=tensorboard", "--out", str(tmp_path / "r"))
    assert "pip install 'cdrec[tensorboard]'" in err and not (tmp_path / "r").exists()


@pytest.mark.realdata
@pytest.mark.slow
def test_tune_bprmf_ml100k_beats_the_default_config_on_validation(tmp_path):
    """10 trials of configs/bprmf-ml100k-space.yaml around configs/bprmf-ml100k.yaml, both selected on validation HR@10."""
    data = str(shared_path("ml-100k").parent)
    repo = Path(__file__).resolve().parents[2]
    config = str(repo / "configs" / "bprmf-ml100k.yaml")
    common = ["--set", f"data.data_dir={data}", "--set", "train.metric=HR@10", "--set", "train.progress=false", "--device", "cpu"]
    ok("run", config, *common, "--out", str(tmp_path / "default"))
    default = RunResult.read(tmp_path / "default" / "results.json").valid_metrics["overall"]["HR@10"]
    t0 = time.perf_counter()
    ok("tune", config, "--space", str(repo / "configs" / "bprmf-ml100k-space.yaml"), "--trials", "10", "--out", str(tmp_path / "tune"), *common)
    seconds = time.perf_counter() - t0
    best = json.loads((tmp_path / "tune" / "best.json").read_text())
    print(f"default valid HR@10 {default:.4f}; tuned {best['valid']['HR@10']:.4f} ({best['run']}); 10 trials in {seconds:.0f} s")
    assert best["valid"]["HR@10"] >= default and math.isfinite(best["metrics"]["overall"]["HR@10"])
    assert seconds < 600


def test_logger_is_refused_for_one_pass_models(tmp_path):
    """pop and itemknn have no epochs: train.logger=tensorboard would log nothing, so it is refused, not ignored."""
    for model in ("pop", "itemknn"):
        err = refused("run", *TINY[:2], "--set", f"model={model}", "--set", "train.logger=tensorboard", "--out", str(tmp_path / model))
        assert "train.logger: " in err and "one pass" in err
        assert not (tmp_path / model).exists()
