"""The mtal recipe: plan order, report from whatever runs exist, registration."""

from __future__ import annotations

import pytest

from cdrec.errors import RunFailed
from cdrec.experiments import RECIPES, runner
from cdrec.experiments.demo import DEMO_STEPS
from cdrec.experiments.mtal import COLUMNS, PAPER_T4, SCHEDULES, job_config, plan, reproduce, write_report
from cdrec.federated.task import check_split_and_metric, parse_setting
from cdrec.results.schema import RunResult, write_result


def test_registered():
    assert RECIPES["mtal"] == "cdrec.experiments.mtal"
    assert "cdrec.experiments.demo_mtal" in DEMO_STEPS


def test_plan_covers_table4_and_paper002_with_mtal_first():
    jobs = plan(False)
    rows = {(j[0], j[1], j[2]) for j in jobs}
    for col in COLUMNS:
        assert ("ml-100k", col, "mtal-aae") in rows and ("ml-100k", col, "alone-ae") in rows and ("ml-100k", col, "joint-mlp") in rows
        assert ("ml-100k", col, "mtal-aae-base0") in rows
    assert ("ml-1m", "explicit/user/genre", "mtal-aae") in rows and ("douban", "implicit/user/domain", "mtcdr-ncf") in rows
    assert jobs[0][2] == "mtal-aae"
    assert all(j[5]["base"] == "zero" for j in jobs if j[2] == "mtal-aae-base0")
    assert all("base" not in j[5] for j in jobs if j[2] == "mtal-aae")  # the main rows keep the papers' F0
    held = [j for j in jobs if j[2] == "mtal-aae-heldout"]
    assert {(j[0], j[1]) for j in held} >= {("ml-100k", c) for c in COLUMNS} | {("ml-1m", "explicit/user/genre")}
    assert all((j[5]["eta"], j[5]["weights"], j[5]["assist_fit"]) == ("optimize", "optimize", "valid-split") for j in held)
    for col in ("explicit/user/uniform", "explicit/item/uniform", "implicit/user/uniform", "implicit/item/uniform"):
        assert {("ml-1m", col, r) for r in ("mtal-aae", "mtal-aae-heldout", "alone-ncf", "alone-base")} <= rows
    held_s = [j for j in jobs if j[2] == "mtal-aae-heldout_s"]
    assert {j[1] for j in held_s} == set(COLUMNS) and all(j[5]["side_info"] and j[5]["assist_fit"] == "valid-split" for j in held_s)
    assert len(plan(True)) == 3
    assert all(len(v) == 6 for v in PAPER_T4.values())


@pytest.mark.parametrize("schedule", ["quick", "cpu"])
def test_every_planned_config_passes_the_mtal_tasks_checks(schedule):
    """The plan sets nothing a run would refuse (a baseline refuses round settings such as setting.rounds)."""
    for job in plan(schedule == "quick"):
        cfg = job_config(job, 0, {"name": schedule, **SCHEDULES[schedule]}, "/nowhere", "cpu")
        setting = parse_setting(cfg)
        check_split_and_metric(cfg)
        assert setting.mode == job[5]["mode"] and ("rounds" in cfg.setting) == (setting.mode == "mtal")


def test_report_from_partial_results(tmp_path):
    res = RunResult(model="aae", dataset="ml-100k", protocol="p", seed=0,
                    metrics={"overall": {"RMSE": 0.95, "n": 10}},
                    history=[{"round": 0, "test": {"RMSE": 1.0}}, {"round": 1, "test": {"RMSE": 0.95}}])
    write_result(tmp_path / "runs/ml-100k/explicit/user/genre/mtal-aae/seed0", res)
    alone = RunResult(model="mlp", dataset="ml-100k", protocol="p", seed=0, metrics={"overall": {"RMSE": 0.97, "n": 10}})
    write_result(tmp_path / "runs/ml-100k/explicit/user/genre/alone-mlp/seed0", alone)
    held = RunResult(model="aae", dataset="ml-100k", protocol="p", seed=0, metrics={"overall": {"RMSE": 0.98, "n": 10}})
    write_result(tmp_path / "runs/ml-100k/explicit/user/genre/mtal-aae-heldout/seed0", held)
    text = write_report(tmp_path, SCHEDULES["quick"], True).read_text()
    assert "| explicit/user/genre | RMSE | 0.9500 | alone-mlp 0.9700 | yes | 0.9800 | **no** | – |" in text
    assert "## ML-1M, Table 4 layout" not in text
    write_result(tmp_path / "runs/ml-1m/explicit/item/uniform/mtal-aae-heldout/seed0", held)
    write_result(tmp_path / "runs/ml-1m/explicit/item/uniform/alone-base/seed0", alone)
    ml1m = write_report(tmp_path, SCHEDULES["quick"], True).read_text().split("## ML-1M, Table 4 layout")[1]
    assert "| explicit/item/uniform | RMSE | – | alone-base 0.9700 | – | 0.9800 | **no** | – | 0.8340 | 0.8830 |" in ml1m
    assert "| alone | base | – | – | 0.9700 | – | – | – |" in ml1m
    assert (tmp_path / "rounds.png").exists()


def test_report_scores_implicit_columns_as_the_papers_code(tmp_path):
    def implicit(model: str, ours: float, paper: float) -> RunResult:
        return RunResult(model=model, dataset="ml-1m", protocol="p", seed=0,
                         metrics={"overall": {"MAP@10": ours, "MAP@10[paper]": paper, "n": 10}})

    col = "runs/ml-1m/implicit/item/uniform"
    text = write_report(tmp_path, SCHEDULES["quick"], True).read_text()
    assert "scored as the papers' code" not in text
    write_result(tmp_path / f"{col}/alone-base/seed0", implicit("base", 0.65, 0.61))
    write_result(tmp_path / f"{col}/alone-ncf/seed0", implicit("ncf", 0.70, 0.66))
    write_result(tmp_path / f"{col}/mtal-aae-heldout/seed0", implicit("aae", 0.72, 0.69))
    section = write_report(tmp_path, SCHEDULES["quick"], True).read_text().split("scored as the papers' code")[1]
    assert "| implicit/item/uniform | 0.6100 | alone-ncf 0.6600 | – | – | 0.6900 | yes | 0.6190 / 0.7450 | 0.6240 / 0.7060 |" in section
    assert "side information** (" not in section
    write_result(tmp_path / f"{col}/alone-ncf_s/seed0", implicit("ncf", 0.71, 0.70))
    write_result(tmp_path / f"{col}/mtal-aae-heldout_s/seed0", implicit("aae", 0.73, 0.68))
    side = write_report(tmp_path, SCHEDULES["quick"], True).read_text().split("side information** (")[1]
    assert "| implicit/item/uniform | 0.6100 | alone-ncf_s 0.7000 | – | – | 0.6800 | **no** | 0.6190 / 0.7430 | 0.6240 / 0.7060 |" in side


def test_failed_runs_are_listed_in_the_report_and_fail_the_command(tmp_path, monkeypatch):
    (tmp_path / "data/ml-100k").mkdir(parents=True)
    (tmp_path / "data/ml-100k/u.data").write_text("")

    def broken(cfg, run_dir, **_):
        raise RuntimeError("out of memory\nat row 3")

    monkeypatch.setattr(runner, "run_config", broken)
    with pytest.raises(RunFailed, match=r"^3 mtal run\(s\) failed, listed in .*report.md; the first: ml-100k/"):
        reproduce(tmp_path / "out", data_dir=tmp_path / "data", quick=True)
    report = (tmp_path / "out/report.md").read_text()
    assert "## Runs that failed (3;" in report
    assert "/mtal-aae/seed0: RuntimeError: out of memory at row 3`" in report
    assert not list((tmp_path / "out").glob("runs/**/results.json"))
