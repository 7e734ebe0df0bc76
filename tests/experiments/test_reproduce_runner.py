"""``cdrec reproduce``: every recipe's ``--quick`` plan end to end on the real data (no run may fail),
``--report-only`` rebuilding the same report byte for byte, and an interrupted reproduction that
continues its run from the last checkpoint to the metrics of an uninterrupted one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cdrec.experiments import RECIPES
from cdrec.experiments import uclr as uclr_recipe
from cdrec.train import trainer as trainer_module
from tests.cli_helpers import call_main
from tests.conftest import shared_path

QUICK_DATA = {"mtal": "ml-100k", "uclr": "douban-ga-dtcdr", "merit": "amazon-cdsr-merit", "m3oe": "ml-100k"}
"""The data folder each recipe's ``--quick`` plan reads."""


def _outputs(out: Path) -> dict[str, bytes]:
    """Every file a report writes beside ``runs/`` (report, tables, plots, summaries)."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file() and p.name != "reproduce.json"}


@pytest.mark.parametrize("paper", sorted(RECIPES))
def test_quick_recipe_runs_end_to_end_and_report_only_rebuilds_it_byte_for_byte(paper, tmp_path):
    data = shared_path(QUICK_DATA[paper]).parent
    out = tmp_path / paper
    ran = call_main("reproduce", paper, "--quick", "--out", str(out), "--data-dir", str(data), "--device", "cpu")
    assert ran.exception is None and ran.code == 0, ran.stderr + ran.stdout  # exit code 1 when any run of the plan failed
    assert "FAILED" not in ran.stdout
    progress = re.findall(rf"^\[{paper}\] run (\d+)/(\d+), .*, elapsed \d+:\d\d:\d\d, ", ran.stdout, flags=re.M)
    n_runs = len(progress)
    assert n_runs >= 3 and progress == [(str(k), str(n_runs)) for k in range(1, n_runs + 1)]  # one line per run
    assert len(list(out.glob("runs/**/results.json"))) == n_runs
    written = _outputs(out)
    assert "report.md" in written
    for name in written:
        (out / name).unlink()
    rebuilt = call_main("reproduce", paper, "--report-only", "--out", str(out))
    assert rebuilt.code == 0, rebuilt.stderr
    assert _outputs(out).keys() == written.keys()
    for name, content in written.items():
        assert _outputs(out)[name] == content, f"{name} differs when rebuilt by --report-only"


def test_report_only_refuses_a_folder_without_runs(tmp_path):
    (tmp_path / "empty").mkdir()
    for args in (["--out", str(tmp_path / "empty")], ["--out", str(tmp_path / "absent")]):
        ran = call_main("reproduce", "mtal", "--report-only", *args)
        assert ran.code == 2 and ran.stdout == ""
        assert ran.stderr.count("\n") == 1 and ran.stderr.startswith("error: --out ") and "holds no finished run" in ran.stderr
    assert not (tmp_path / "empty" / "report.md").exists() and not (tmp_path / "absent").exists()


def _tiny_uclr(monkeypatch: pytest.MonkeyPatch) -> None:
    """The uclr recipe's quick plan on tiny synthetic data: BPR-MF (one model per domain, 3 epochs) and PGE."""
    monkeypatch.setitem(uclr_recipe.DATASETS, "synthetic", {"name": "synthetic", "synthetic": {"n_users": 200, "items_per_domain": 250, "n_domains": 2, "signal": 1.0}})
    monkeypatch.setattr(uclr_recipe, "QUICK", {"train": {"lr": 0.01, "epochs": 3, "patience": 5, "batch_size": 256},
                                               "ladder": {"ae_epochs": 1, "ae_passes": 1, "ft_epochs": 1}, "seeds": 1, "datasets": ["synthetic"]})
    monkeypatch.setattr(uclr_recipe, "PHASES", [["bprmf", "pge"]])


def test_an_interrupted_reproduction_continues_its_run_from_the_last_checkpoint(tmp_path, monkeypatch):
    _tiny_uclr(monkeypatch)
    args = ["reproduce", "uclr", "--quick", "--device", "cpu", "--out"]
    whole = call_main(*args, str(tmp_path / "whole"))
    assert whole.code == 0, whole.stderr

    save = trainer_module.atomic_torch_save

    def save_then_ctrl_c(state: object, path: Path) -> None:
        save(state, path)
        if path.name == "checkpoint-D1.pt" and isinstance(state, dict) and state.get("epoch") == 1:
            raise KeyboardInterrupt  # Ctrl-C right after epoch 1 of the second domain's model

    out = tmp_path / "cut"
    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, "atomic_torch_save", save_then_ctrl_c)
        cut = call_main(*args, str(out))
    assert cut.code == 130
    assert cut.stderr.startswith("interrupted during run 1/2, synthetic/bprmf/seed0 (")
    assert f"continue it with: cdrec reproduce uclr --out {out} --quick --device cpu" in cut.stderr
    run = out / "runs/synthetic/bprmf/seed0"
    assert not (run / "results.json").exists() and (run / "checkpoint-D1.pt").exists()

    again = call_main(*args, str(out))
    assert again.code == 0, again.stderr
    assert "run 1/2, synthetic/bprmf/seed0" in again.stdout and "continuing it from its last checkpoint" in again.stdout
    resumed = json.loads((run / "results.json").read_text())
    uninterrupted = json.loads((tmp_path / "whole/runs/synthetic/bprmf/seed0/results.json").read_text())
    assert [h.get("resumed_from", 0) for h in resumed["history"]] == [3, 1]  # the first domain had finished its 3 epochs
    assert resumed["metrics"] == uninterrupted["metrics"] and resumed["valid_metrics"] == uninterrupted["valid_metrics"]
    assert [h["epochs"] for h in resumed["history"]] == [h["epochs"] for h in uninterrupted["history"]]


def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path, monkeypatch):
    _tiny_uclr(monkeypatch)
    monkeypatch.setattr(uclr_recipe, "PHASES", [["bprmf"]])
    out = tmp_path / "out"
    save = trainer_module.atomic_torch_save

    def save_then_ctrl_c(state: object, path: Path) -> None:
        save(state, path)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, "atomic_torch_save", save_then_ctrl_c)
        assert call_main("reproduce", "uclr", "--quick", "--out", str(out)).code == 130
    monkeypatch.setitem(uclr_recipe.QUICK, "train", {**uclr_recipe.QUICK["train"], "lr": 0.02})  # the recipe changed since
    again = call_main("reproduce", "uclr", "--quick", "--out", str(out))
    assert again.code == 0, again.stderr
    assert "its checkpoint was trained with another config (train.lr); starting it over" in again.stdout
    history = json.loads((out / "runs/synthetic/bprmf/seed0/results.json").read_text())["history"]
    assert all("resumed_from" not in h for h in history)


def test_the_run_loop_keeps_finished_runs_and_goes_on_past_a_failed_one(tmp_path, monkeypatch):
    from cdrec.errors import RunFailed
    from cdrec.experiments import runner
    from cdrec.results.schema import RunResult, write_result

    write_result(tmp_path / "runs/a", RunResult(model="m", dataset="d", protocol="p", seed=0, metrics={}))
    trained: list[str] = []

    def fake_run_config(cfg, run_dir, *, resume, prepared):
        trained.append(run_dir.name)
        if run_dir.name == "b":
            raise RuntimeError("out of memory\nin epoch 2")

    monkeypatch.setattr(runner, "run_config", fake_run_config)
    plan = [runner.PlannedRun(name, tmp_path / "runs" / name, lambda: None) for name in ("a", "b", "c")]
    lines: list[str] = []
    reported: list[list[str]] = []

    def report(failed):
        reported.append(list(failed))
        return tmp_path / "report.md"

    with pytest.raises(RunFailed, match=r"^1 demo run\(s\) failed, listed in .*report.md; the first: b: RuntimeError: out of memory in epoch 2$"):
        runner.run_plan(runner.Invocation("demo", tmp_path), plan, report, say=lines.append)
    assert trained == ["b", "c"]  # the finished run is kept, the one after the failure still runs
    assert reported == [["b: RuntimeError: out of memory in epoch 2"]]
    assert lines[0] == "[demo] 1 of 3 runs already finished in " + str(tmp_path) + " (kept)"
    assert lines[1].startswith("[demo] run 2/3, b, elapsed 0:00:0") and lines[1].endswith(", time left not known yet")
    assert lines[3].startswith("[demo] run 3/3, c, elapsed ") and lines[3].endswith(" left")
    assert json.loads((tmp_path / "reproduce.json").read_text()) == {"paper": "demo", "quick": False, "seeds": None, "device": "auto"}


def test_report_only_refuses_options_that_contradict_the_recorded_ones(tmp_path):
    from cdrec.experiments.runner import Invocation
    from cdrec.results.schema import RunResult, write_result

    write_result(tmp_path / "runs/x/seed0", RunResult(model="m", dataset="d", protocol="p", seed=0, metrics={}))
    Invocation("merit", tmp_path, seeds=2).save()
    for args, message in ((["merit", "--quick"], "--quick: the runs in"), (["merit", "--seeds", "3"], "--seeds 3: the runs in"),
                          (["m3oe"], "holds a `merit` reproduction"), (["merit", "--device", "cpu"], "--device: --report-only trains nothing")):
        ran = call_main("reproduce", *args, "--report-only", "--out", str(tmp_path))
        assert ran.code == 2 and ran.stderr.startswith("error: ") and message in ran.stderr and ran.stderr.count("\n") == 1, ran.stderr
    assert not (tmp_path / "report.md").exists()


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_reproduction_refuses_an_out_folder_made_with_other_options_and_leaves_it_untouched(tmp_path, monkeypatch):
    _tiny_uclr(monkeypatch)
    monkeypatch.setattr(uclr_recipe, "PHASES", [["bprmf"]])
    monkeypatch.setattr(uclr_recipe, "DATASETS", {"synthetic": uclr_recipe.DATASETS["synthetic"]})
    monkeypatch.setattr(uclr_recipe, "SCHEDULE", {**uclr_recipe.QUICK, "train": {**uclr_recipe.QUICK["train"], "epochs": 4}, "seeds": 2})
    out = tmp_path / "out"
    assert call_main("reproduce", "uclr", "--quick", "--out", str(out)).code == 0
    before = _tree(out)
    for args, recorded, asked in ((["--quick", "--seeds", "1"], "no --seeds", "--seeds 1"), ([], "--quick", "no --quick")):
        ran = call_main("reproduce", "uclr", *args, "--out", str(out))
        assert ran.code == 2 and ran.stdout == "" and ran.stderr.count("\n") == 1, ran.stderr + ran.stdout
        assert ran.stderr.startswith(f"error: --out {out}: holds a reproduction made with {recorded} ({out / 'reproduce.json'}); "
                                     f"this one asks for {asked}; choose another --out"), ran.stderr
    assert _tree(out) == before  # the quick run is neither reported as a full one nor retrained; reproduce.json keeps quick


def test_a_finished_run_of_another_config_is_refused_naming_the_keys(tmp_path, monkeypatch):
    _tiny_uclr(monkeypatch)
    monkeypatch.setattr(uclr_recipe, "PHASES", [["bprmf"]])
    out = tmp_path / "out"
    assert call_main("reproduce", "uclr", "--quick", "--out", str(out)).code == 0
    before = _tree(out)
    monkeypatch.setitem(uclr_recipe.QUICK, "train", {**uclr_recipe.QUICK["train"], "lr": 0.02, "epochs": 2})  # the recipe changed since
    ran = call_main("reproduce", "uclr", "--quick", "--out", str(out))
    assert ran.code == 2 and ran.stdout == "" and ran.stderr.count("\n") == 1, ran.stderr + ran.stdout
    assert ran.stderr.startswith(f"error: --out {out}: the finished run synthetic/bprmf/seed0 ({out / 'runs/synthetic/bprmf/seed0'}) "
                                 "was trained with another config (train.epochs, train.lr); choose another --out"), ran.stderr
    assert _tree(out) == before


def test_a_finished_run_beside_the_planned_ones_that_the_plan_does_not_list_is_refused(tmp_path, monkeypatch):
    _tiny_uclr(monkeypatch)
    monkeypatch.setattr(uclr_recipe, "PHASES", [["bprmf"]])
    out = tmp_path / "out"
    assert call_main("reproduce", "uclr", "--quick", "--seeds", "2", "--out", str(out)).code == 0
    (out / "reproduce.json").unlink()  # a reproduction from before the options were recorded
    before = _tree(out)
    ran = call_main("reproduce", "uclr", "--quick", "--out", str(out))  # one seed: seed1 would be averaged into the report
    assert ran.code == 2 and ran.stdout == "" and ran.stderr.count("\n") == 1, ran.stderr + ran.stdout
    assert ran.stderr.startswith(f"error: --out {out}: {out / 'runs/synthetic/bprmf/seed1'} holds a finished run that this plan does not list"), ran.stderr
    assert _tree(out) == before


def test_a_rerun_with_the_same_options_keeps_its_finished_runs(tmp_path, monkeypatch):
    _tiny_uclr(monkeypatch)
    monkeypatch.setattr(uclr_recipe, "PHASES", [["bprmf"]])
    out = tmp_path / "out"
    assert call_main("reproduce", "uclr", "--quick", "--out", str(out)).code == 0
    run = out / "runs/synthetic/bprmf/seed0/results.json"
    first = run.read_bytes()
    again = call_main("reproduce", "uclr", "--quick", "--device", "cpu", "--out", str(out))  # --device may change (resume-free)
    assert again.code == 0, again.stderr
    assert f"[uclr] 1 of 1 runs already finished in {out} (kept)" in again.stdout and "run 1/1" not in again.stdout
    assert run.read_bytes() == first
    assert json.loads((out / "reproduce.json").read_text())["quick"] is True


def test_coverage_section_counts_finished_runs_and_names_the_missing_ones(tmp_path):
    from cdrec.experiments.runner import coverage_section

    plan = [tmp_path / "runs" / ds / m / f"seed{s}" for ds in ("a", "b") for m in ("x", "y") for s in range(6)]
    for path in plan[:8]:
        path.mkdir(parents=True)
        (path / "results.json").write_text("{}")
    text = "\n".join(coverage_section(tmp_path, plan, "cdrec reproduce p --out docs/reproductions/p"))
    assert "8 of the 24 runs of the plan are finished" in text and "`cdrec reproduce p --out docs/reproductions/p`" in text
    assert "- `a/y`: 2 of 6 finished: missing seed2, seed3, seed4, seed5" in text and "- `b/x`: 0 of 6 finished\n" in text
    assert "`a/x`" not in text and str(tmp_path) not in text
    for path in plan[8:]:
        path.mkdir(parents=True)
        (path / "results.json").write_text("{}")
    assert coverage_section(tmp_path, plan, "c") == ["_All 24 runs of the plan are finished and shown below._", ""]
