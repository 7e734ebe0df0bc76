"""The mtal recipe: plan order, report from whatever runs exist, registration."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cdrec.errors import RunFailed
from cdrec.experiments import RECIPES, runner
from cdrec.experiments.demo import DEMO_STEPS
from cdrec.experiments.mtal import (AUTO_ROW, COLUMNS, ITEM_MEAN_RMSE, PAPER_T4, PRIVACY_SWEEP, SCHEDULES, headline, job_config, plan, plan_sections,
                                    planned_runs, report, reproduce, schedule, write_report)
from cdrec.federated.task import check_split_and_metric, parse_setting
from cdrec.results.schema import RunResult, write_result
from tests.cli_helpers import call_main
from tests.conftest import shared_path


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


def test_every_mtal_row_has_a_twin_with_each_organizations_own_backbone():
    """``mtal-auto``: the ``mtal-aae`` job of each column (ML-100K, ML-1M, Douban) with ``setting.backbone=auto`` and
    nothing else changed; the jobs that were planned before keep their configs (no ``backbone`` key)."""
    jobs = plan(False)
    main = {j[:2]: j for j in jobs if j[2] == "mtal-aae"}
    auto = {j[:2]: j for j in jobs if j[2] == AUTO_ROW}
    assert set(auto) == set(main) and {ds for ds, _ in auto} == {"ml-100k", "ml-1m", "douban"}
    for key, job in auto.items():
        assert job[5] == {**main[key][5], "backbone": "auto"} and job[3:5] == main[key][3:5] and job[6:] == main[key][6:]
        sched = {"name": "cpu", **SCHEDULES["cpu"]}
        twin, fixed = (job_config(j, 0, sched, None, "cpu").to_dict() for j in (job, main[key]))
        assert {**twin, "setting": {k: v for k, v in twin["setting"].items() if k != "backbone"}} == fixed
    assert not any("backbone" in j[5] for j in jobs if j[2] != AUTO_ROW)


def test_own_backbone_section_from_fake_runs(tmp_path):
    out = tmp_path / "mtal"
    col = "ml-100k/explicit/user/genre"
    for row, rmse in (("mtal-aae", 0.985), ("alone-ncf", 0.971), ("alone-mf", 0.99)):
        _explicit(out, f"{col}/{row}", rmse)
    for seed, rmse, chosen in ((0, 0.962, {"Action": "ncf", "Drama": "mlp"}), (1, 0.964, {"Action": "ncf", "Drama": "ncf"})):
        result = _explicit_result(rmse, seed)
        result.data_stats = {"backbones": {org: {"chosen": b, "valid": {b: 0.9}, "epochs": {b: 3}} for org, b in chosen.items()}}
        write_result(out / f"runs/{col}/{AUTO_ROW}/seed{seed}", result)
    write_result(out / "runs/douban/explicit/user/domain/mtal-aae/seed0", _explicit_result(0.86))
    text = report(out).read_text()
    section = text.split("## MTAL with each organization's own backbone")[1].split("\n## ")[0]
    ml100k = section.split("### ML-100K")[1].split("### ")[0]
    assert "| explicit/user/genre | RMSE | alone-ncf 0.9710 | 0.9850 | 0.9630 | yes | yes | 2 |" in ml100k
    assert "| explicit/user/genre | 0 | ncf 1, mlp 1 | Action: ncf, Drama: mlp |" in ml100k
    assert "| explicit/user/genre | 1 | ncf 2 | Action: ncf, Drama: ncf |" in ml100k
    douban = section.split("### Douban")[1]
    assert "| explicit/user/domain | RMSE | – | 0.8600 | – | – | – | 0 |" in douban
    assert "_Backbone chosen per organization (Douban): no `mtal-auto` run is finished._" in douban
    layout = text.split("## ML-100K, paper 001's layout")[1].split("Paper 001 Table 1")[0]
    assert "| mtal | auto | – | 0.9630 | – | – | – | – |" in layout


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
    assert "## ML-1M, paper 001's layout, beside its Table 4 (captioned ML100K)\n\n_Not run: no ML-1M run is finished._" in text
    write_result(tmp_path / "runs/ml-1m/explicit/item/uniform/mtal-aae-heldout/seed0", held)
    write_result(tmp_path / "runs/ml-1m/explicit/item/uniform/alone-base/seed0", alone)
    ml1m = write_report(tmp_path, SCHEDULES["quick"], True).read_text().split("## ML-1M, paper 001's layout")[1]
    assert "| explicit/item/uniform | RMSE | – | alone-base 0.9700 | – | 0.9800 | **no** | – | 0.8340 |\n" in ml1m
    assert "| alone | base | – | – | 0.9700 | – | – | – |" in ml1m
    assert (tmp_path / "rounds.png").exists()


def test_report_scores_implicit_columns_as_the_papers_code(tmp_path):
    def implicit(model: str, ours: float, paper: float) -> RunResult:
        return RunResult(model=model, dataset="ml-1m", protocol="p", seed=0,
                         metrics={"overall": {"MAP@10": ours, "MAP@10[paper]": paper, "n": 10}})

    col = "runs/ml-1m/implicit/item/uniform"
    text = write_report(tmp_path, SCHEDULES["quick"], True).read_text()
    assert "scored as the papers' code scores them\n\n_Not run: no ML-100K or ML-1M implicit run is finished._" in text
    write_result(tmp_path / f"{col}/alone-base/seed0", implicit("base", 0.65, 0.61))
    write_result(tmp_path / f"{col}/alone-ncf/seed0", implicit("ncf", 0.70, 0.66))
    write_result(tmp_path / f"{col}/mtal-aae-heldout/seed0", implicit("aae", 0.72, 0.69))
    section = write_report(tmp_path, SCHEDULES["quick"], True).read_text().split("scored as the papers' code")[1]
    assert "| implicit/item/uniform | 0.6100 | alone-ncf 0.6600 | – | – | 0.6900 | yes | 0.6190 / 0.7450 |\n" in section
    assert "side information** (" not in section
    write_result(tmp_path / f"{col}/alone-ncf_s/seed0", implicit("ncf", 0.71, 0.70))
    write_result(tmp_path / f"{col}/mtal-aae-heldout_s/seed0", implicit("aae", 0.73, 0.68))
    side = write_report(tmp_path, SCHEDULES["quick"], True).read_text().split("side information** (")[1]
    assert "| implicit/item/uniform | 0.6100 | alone-ncf_s 0.7000 | – | – | 0.6800 | **no** | 0.6190 / 0.7430 |\n" in side


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


def _explicit_result(rmse: float, seed: int = 0) -> RunResult:
    """An explicit run's results of RMSE ``rmse`` with a two-round history."""
    return RunResult(model="aae", dataset="ml", protocol="p", seed=seed, metrics={"overall": {"RMSE": rmse, "n": 10}},
                     history=[{"round": 0, "test": {"RMSE": 1.0}}, {"round": 1, "test": {"RMSE": rmse}}],
                     config={"model_params": {"epochs": 20, "lr": 0.001}, "setting": {"rounds": 10, "eta": 0.3, "weights": "uniform"}})


def _explicit(out: Path, run: str, rmse: float, seed: int = 0) -> None:
    """A finished explicit run ``runs/<run>/seed<seed>``."""
    write_result(out / f"runs/{run}/seed{seed}", _explicit_result(rmse, seed))


def test_a_partial_report_names_the_missing_runs_and_the_columns_without_runs(tmp_path):
    out = tmp_path / "mtal"
    col = "ml-100k/explicit/user/uniform"
    for row, rmse in (("mtal-aae", 0.95), ("alone-mlp", 0.97), ("alone-base", 1.02)):
        _explicit(out, f"{col}/{row}", rmse)
    text = report(out, device="cpu").read_text()
    n_planned = len(planned_runs(out, schedule(False, None), False))
    assert text.startswith(f"# AAE + MTAL reproduction (papers 001 and 002)\n\n## Coverage: 3 of the {n_planned} runs of the plan are finished\n")
    assert "`cdrec reproduce mtal --out docs/reproductions/mtal --device cpu` trains the missing ones" in text
    assert "- `ml-100k/explicit`: 3 of " in text and "- `ml-1m/explicit`: 0 of " in text
    assert "| ML-100K explicit/user/uniform | 3 of 24 | 1 of 1 |" in text
    assert "| ML-1M explicit/item/uniform | **no run** (0 of 8) | 0 of 1 |" in text
    assert "| ML-100K ablations (explicit/user/uniform) | **no run** (0 of 17) | – |" in text
    assert "| ML-100K privacy (explicit/user/uniform) | **no run** (0 of 2) | – |" in text
    assert "| ML-1M privacy (explicit/user/genre) | **no run** (0 of 2) | – |" in text
    assert "| Douban privacy (implicit/user/domain) | **no run** (0 of 2) | – |" in text
    assert "strength sweep" not in text and not (out / "privacy.png").exists()  # --section privacy was not asked for
    for section in ("ablation", "ML-1M", "ML-1M user/genre", "Douban user/domain", "ML-100K or ML-1M implicit",
                    "ML-1M or Douban user-aligned"):
        assert f"_Not run: no {section} run is finished._" in text
    ml100k = text.split("## ML-100K, paper 001's layout, beside its Table 1 (captioned ML1M)")[1].split("\n## ")[0]
    assert "Paper 001 Table 1 (captioned ML1M; ML-100K's results)" in ml100k and "Table 4" not in ml100k
    assert "| explicit/user/uniform | RMSE | 0.9500 | alone-mlp 0.9700 | yes | – | – | – | 0.9380 |" in ml100k
    assert "Table 4 (captioned ML100K) holds the ML-1M results and Table 1 (captioned ML1M) the ML-100K ones" in text
    assert "setting.query_decoys" in text
    for absent in (str(tmp_path), "/work", "/tmp", "nan"):
        assert absent not in text


def test_report_only_rebuilds_the_same_bytes_twice_and_in_another_folder(tmp_path):
    first = tmp_path / "a"
    for seed in (0, 1):
        _explicit(first, "ml-100k/explicit/user/uniform/mtal-aae", 0.95 + seed / 100, seed)
        _explicit(first, "ml-1m/explicit/item/uniform/alone-base", 1.03, seed)
    report(first, seeds=2)
    written = {name: (first / name).read_bytes() for name in ("report.md", "rounds.png")}
    report(first, seeds=2)
    assert {name: (first / name).read_bytes() for name in written} == written
    second = tmp_path / "elsewhere" / "b"
    shutil.copytree(first / "runs", second / "runs")
    report(second, seeds=2)
    assert {name: (second / name).read_bytes() for name in written} == written
    assert "--seeds 2" in written["report.md"].decode()


def test_report_only_reads_no_data_and_repeats_the_recorded_options(tmp_path, monkeypatch):
    monkeypatch.setenv("CDREC_DATA_DIR", str(tmp_path / "no-data-here"))
    out = tmp_path / "mtal"
    _explicit(out, "ml-100k/explicit/user/uniform/mtal-aae", 0.95)
    (out / "reproduce.json").write_text(json.dumps({"paper": "mtal", "quick": False, "seeds": None, "device": "cpu"}))
    ran = call_main("reproduce", "mtal", "--report-only", "--out", str(out))
    assert ran.code == 0, ran.stderr
    assert "`cdrec reproduce mtal --out docs/reproductions/mtal --device cpu` trains the missing ones" in (out / "report.md").read_text()


def test_reproduce_writes_the_report_that_report_only_rebuilds(tmp_path, monkeypatch):
    """The report a reproduction ends with names its --device as --report-only does: the same bytes but for
    the list of failed runs, which only the reproduction knows."""
    (tmp_path / "data/ml-100k").mkdir(parents=True)
    (tmp_path / "data/ml-100k/u.data").write_text("")

    def fake_run(cfg, run_dir, **_):
        if run_dir.parent.name == "alone-mf":
            raise RuntimeError("boom")
        write_result(run_dir, _explicit_result(0.9))

    monkeypatch.setattr(runner, "run_config", fake_run)
    out = tmp_path / "out"
    with pytest.raises(RunFailed):
        reproduce(out, data_dir=tmp_path / "data", quick=True, device="cpu")
    written = (out / "report.md").read_text()
    failed = "\n".join(runner.failed_section(["ml-100k/explicit/user/uniform/alone-mf/seed0: RuntimeError: boom"])) + "\n"
    assert failed in written and "`cdrec reproduce mtal --out docs/reproductions/mtal --quick --device cpu` trains" in written
    (out / "report.md").unlink()
    ran = call_main("reproduce", "mtal", "--report-only", "--out", str(out))
    assert ran.code == 0, ran.stderr
    assert (out / "report.md").read_text() == written.replace(failed, "")


def test_headline_rows_from_finished_runs(tmp_path):
    assert [(r.dataset, r.ours, r.paper_value) for r in headline(tmp_path)] == [("ML-1M", None, 0.878), ("ML-100K", None, 0.938)]
    _explicit(tmp_path, "ml-1m/explicit/user/uniform/mtal-aae", 0.88, 0)
    _explicit(tmp_path, "ml-1m/explicit/user/uniform/mtal-aae", 0.90, 1)
    _explicit(tmp_path, "ml-1m/explicit/user/genre/mtal-aae", 0.70, 0)  # another column
    _explicit(tmp_path, "ml-100k/explicit/user/uniform/mtal-aae-heldout", 0.70, 0)  # another row
    ml1m, ml100k = headline(tmp_path)
    assert ml1m.ours[0] == pytest.approx(0.89) and ml1m.ours[1] == pytest.approx(np.std([0.88, 0.90], ddof=1)) and ml1m.ours[2] == 2
    assert ml100k.ours is None and ml100k.note == "no finished run"
    assert "Table 4, captioned ML100K" in ml1m.metric and "Table 1, captioned ML1M" in ml100k.metric
    assert not ml1m.higher_is_better and ml1m.digits == 3 and "10 rounds x 20 local epochs" in ml1m.note
    _explicit(tmp_path, "ml-100k/explicit/user/uniform/mtal-aae", 0.95, 0)
    assert headline(tmp_path)[1].ours == (0.95, 0.0, 1)


@pytest.mark.parametrize("dataset", ["ml-1m", "ml-100k"])
def test_the_item_mean_figures_of_the_caption_note_hold_on_the_data(dataset):
    """:data:`ITEM_MEAN_RMSE`: the item mean's RMSE over 20 random 90/10 splits of all ratings (unseen items: the global mean)."""
    from cdrec.data.loaders import load_ml100k, load_ml1m

    root = shared_path(dataset).parent
    frame = (load_ml1m if dataset == "ml-1m" else load_ml100k)(root).frame
    items, ratings = frame["item"].to_numpy(), frame["rating"].to_numpy(np.float64)
    rmse = []
    for seed in range(20):
        test = np.random.default_rng(seed).random(len(ratings)) < 0.1
        sums, counts = (np.bincount(items[~test], weights, minlength=items.max() + 1) for weights in (ratings[~test], None))
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), ratings[~test].mean())
        rmse.append(np.sqrt(np.mean((mean[items[test]] - ratings[test]) ** 2)))
    assert (round(float(np.mean(rmse)), 3), round(float(np.std(rmse, ddof=1)), 3)) == ITEM_MEAN_RMSE[dataset]


def _job_setting(job: tuple, schedule_name: str = "cpu"):
    """The parsed ``setting`` a planned job runs with."""
    return parse_setting(job_config(job, 0, {"name": schedule_name, **SCHEDULES[schedule_name]}, None, "cpu"))


def test_table5_runs_close_the_default_plan_at_the_papers_strengths():
    jobs = plan(False)
    keys = [j[:3] for j in jobs]
    table5 = [j for j in jobs if j[0] in ("ml-1m", "douban") and j[2].startswith("privacy-")]
    assert {(j[0], j[1].split("/")[0], j[2]) for j in table5} == {(ds, fb, f"privacy-{m}") for ds in ("ml-1m", "douban")
                                                                  for fb in ("explicit", "implicit") for m in ("dp", "ip")}
    assert jobs[-len(table5):] == table5 and all(j[1].startswith("explicit") for j in table5[:4])  # last, RMSE cells first
    for job in table5:
        setting, reference = _job_setting(job), _job_setting(jobs[keys.index((*job[:2], "mtal-aae"))])
        assert (setting.privacy, setting.privacy_alpha, setting.privacy_thresholds) == (job[2][8:], 10.0, 10)
        assert (setting.eta, setting.weights, setting.rounds) == (reference.eta, reference.weights, reference.rounds)
    ml100k = [j for j in jobs if j[0] == "ml-100k" and j[2].startswith("privacy-")]
    assert [j[2] for j in ml100k] == ["privacy-dp", "privacy-ip"] and "privacy_alpha" not in ml100k[0][5]  # configs as before
    assert not any(j[2].startswith("privacy-") and j[2].count("-") > 1 for j in jobs)  # no sweep in the default plan


def test_the_privacy_section_sweeps_each_mechanisms_strength():
    jobs = plan_sections(False, ("privacy",))
    keys = [j[:3] for j in jobs]
    assert len(set(keys)) == len(keys)
    for ds, sweep in PRIVACY_SWEEP.items():
        col = "explicit/user/uniform" if ds == "ml-100k" else "explicit/user/genre"
        reference = "ablation-eta-0.3" if ds == "ml-100k" else "mtal-aae"
        assert (ds, col, reference) in keys and (ds, col, "alone-ncf") in keys
        ref = _job_setting(jobs[keys.index((ds, col, reference))])
        for mechanism, option in (("dp", "privacy_alpha"), ("ip", "privacy_thresholds")):
            for strength in sweep[mechanism]:
                row = f"privacy-{mechanism}" if strength == 10 else f"privacy-{mechanism}-{strength:g}"
                setting = _job_setting(jobs[keys.index((ds, col, row))])
                assert (setting.privacy, getattr(setting, option)) == (mechanism, strength)
                assert (setting.eta, setting.weights, setting.rounds) == (ref.eta, ref.weights, ref.rounds)
    assert max(i for i, k in enumerate(keys) if k[0] == "ml-100k") < min(i for i, k in enumerate(keys) if k[0] == "ml-1m")  # cheap first
    both = plan_sections(False, ("main", "privacy"))
    assert both[:len(plan(False))] == plan(False) and len({j[:3] for j in both}) == len(both)
    assert {j[:3] for j in both} == {j[:3] for j in plan(False)} | set(keys)
    assert [j[2] for j in plan_sections(True, ("privacy",))][-4:] == ["privacy-dp", "privacy-dp-1", "privacy-ip", "privacy-ip-1"]


def _org_result(metric: str, overall: float, by_org: dict[str, float]) -> RunResult:
    """A finished run of ``metric`` per organization (and overall), with the organizations' item counts."""
    return RunResult(model="m", dataset="d", protocol="p", seed=0,
                     metrics={"overall": {metric: overall, "n": 10}, **{o: {metric: v, "n": 5} for o, v in by_org.items()}},
                     data_stats={"organizations": {o: {"n_cols": 100 + i} for i, o in enumerate(by_org)}})


def test_table5_and_per_organization_tables_from_fake_runs(tmp_path):
    out = tmp_path / "mtal"
    genre = out / "runs/ml-1m/explicit/user/genre"
    for row, overall, action, drama in (("alone-mlp", 0.93, 0.95, 0.91), ("alone-ncf", 0.92, 0.96, 0.90), ("mtal-aae", 0.90, 0.94, 0.89),
                                        ("privacy-dp", 0.91, 0.97, 0.89), ("privacy-ip", 0.93, 0.95, 0.92)):
        write_result(genre / row / "seed0", _org_result("RMSE", overall, {"Drama": drama, "Action": action}))
    write_result(out / "runs/douban/implicit/user/domain/mtal-aae/seed0", _org_result("NDCG@10", 0.87, {"book": 0.86, "music": 0.88}))
    write_result(out / "runs/douban/implicit/user/domain/alone-mlp/seed0", _org_result("NDCG@10", 0.88, {"book": 0.85, "music": 0.89}))
    text = report(out).read_text()
    table5 = text.split("## Privacy enhancement: paper 002 Table 5")[1].split("\n## ")[0]
    assert "does not print" not in table5 and "`dp-10` and `ip-10`" in table5
    assert "| ML-1M | Alone (best row) | 0.9200 (ncf) | 0.9290 | – | 0.8380 |  |" in table5
    assert "| ML-1M | MTAL_DP, Laplace DP (alpha = 10) | 0.9100 | 0.9000 | – | 0.8500 | yes, – |" in table5
    assert "| ML-1M | MTAL_IP, interval privacy (10 thresholds) | 0.9300 | 0.8990 | – | 0.8500 | **no**, – |" in table5
    assert "| Douban | MTAL, no privacy (paper: Table 2) | – | 0.8570 | 0.8700 | 0.8770 | –, **no** |" in table5
    orgs = text.split("## Per organization")[1].split("\n## ")[0]
    ml1m = orgs.split("### ML-1M explicit/user/genre (RMSE")[1].split("### ")[0]
    assert ml1m.index("| Action |") < ml1m.index("| Drama |")  # the paper's order, not the runs'
    assert "| Action | 101 | – | – | 0.9500 | 0.9600 | – | 0.9400 | 0.9700 | 0.9500 | 1.1% |" in ml1m
    assert "| Drama | 100 | – | – | 0.9100 | 0.9000 | – | 0.8900 | 0.8900 | 0.9200 | 1.1% |" in ml1m
    assert "| Action | 235 | 0.9730 | 0.9430 | 0.8970 | 0.8990 | 1.0340 | 0.8710 | 2.9% |" in ml1m  # paper 002 Table 4
    douban = orgs.split("### Douban implicit/user/domain (NDCG@10")[1]
    assert "| book | 100 | – | – | 0.8500 | – | – | 0.8600 | – | – | 1.2% |" in douban
    assert "| music | 101 | – | – | 0.8900 | – | – | 0.8800 | – | – | -1.1% |" in douban
    assert "| movie | 9500 | 0.7700 | 0.8500 | 0.8680 | 0.8680 | 0.8650 | 0.8730 | 0.6% |" in douban  # the paper's third domain
    assert "| movie |" not in douban.split("Paper 002 Table 9")[0]


def test_privacy_sweep_table_and_curve_from_fake_runs(tmp_path):
    out = tmp_path / "mtal"
    col = "ml-100k/explicit/user/uniform"
    for row, rmse in (("ablation-eta-0.3", 0.960), ("alone-ncf", 0.962), ("alone-mf", 0.99), ("privacy-dp-100", 0.9605),
                      ("privacy-dp-30", 0.961), ("privacy-dp", 0.965), ("privacy-dp-3", 0.98), ("privacy-dp-1", 1.02),
                      ("privacy-ip-100", 0.9602), ("privacy-ip", 0.966), ("privacy-ip-1", 0.964)):
        _explicit(out, f"{col}/{row}", rmse)
    text = report(out, device="cpu").read_text()
    assert "`cdrec reproduce mtal --out docs/reproductions/mtal --device cpu --section main --section privacy` trains" in text
    assert "| ML-1M privacy (explicit/user/genre) | **no run** (0 of 8) | – |" in text
    sweep = text.split("## Privacy strength sweep (`--section privacy`; beyond the papers)")[1].split("\n## ")[0]
    assert "### ML-100K explicit/user/uniform (best Alone: alone-ncf 0.9620)" in sweep
    for line in ("| none | – | 0 | 0.9600 | yes |", "| Laplace DP | alpha = 100 | 0.014 | 0.9605 | yes |",
                 "| Laplace DP | alpha = 10 | 0.141 | 0.9650 | **no** |", "| interval privacy | thresholds = 10 | 0.091-0.183 | 0.9660 | **no** |",
                 "| interval privacy | thresholds = 30 | 0.053-0.105 | – | – |",
                 "- Laplace DP: MTAL stops beating the best Alone from alpha = 10 on; test RMSE grows with the strength: yes",
                 "- interval privacy: MTAL stops beating the best Alone from thresholds = 10 on; test RMSE grows with the strength: **no**"):
        assert line in sweep, line
    assert "ML-1M" not in sweep and "![privacy](privacy.png)" in sweep
    written = {name: (out / name).read_bytes() for name in ("report.md", "privacy.png")}
    report(out, device="cpu")
    assert {name: (out / name).read_bytes() for name in written} == written


def test_a_privacy_section_without_finished_sweep_runs_says_so(tmp_path):
    out = tmp_path / "mtal"
    _explicit(out, "ml-100k/explicit/user/uniform/mtal-aae", 0.95)
    (out / "reproduce.json").write_text(json.dumps({"paper": "mtal", "quick": False, "seeds": None, "device": "cpu", "sections": ["privacy"]}))
    text = report(out, device="cpu").read_text()
    assert "## Privacy strength sweep (`--section privacy`; beyond the papers)" in text
    assert "_Not run: no strength sweep run is finished._" in text and not (out / "privacy.png").exists()
    assert "--section main --section privacy` trains the missing ones" in text


def test_reproduce_the_privacy_section_alone_trains_only_its_runs(tmp_path, monkeypatch):
    (tmp_path / "data/ml-100k").mkdir(parents=True)
    (tmp_path / "data/ml-100k/u.data").write_text("")
    trained = []

    def fake_run(cfg, run_dir, **_):
        trained.append(run_dir.relative_to(tmp_path / "out/runs").parts[-2])
        assert cfg.setting.get("privacy_alpha", 10.0) == (1.0 if run_dir.parent.name == "privacy-dp-1" else 10.0)
        write_result(run_dir, _explicit_result(0.9 + len(trained) / 1000))

    monkeypatch.setattr(runner, "run_config", fake_run)
    text = reproduce(tmp_path / "out", data_dir=tmp_path / "data", quick=True, device="cpu", sections=("privacy",)).read_text()
    assert trained == ["mtal-aae", "alone-base", "alone-mf", "privacy-dp", "privacy-dp-1", "privacy-ip", "privacy-ip-1"]
    assert json.loads((tmp_path / "out/reproduce.json").read_text())["sections"] == ["privacy"]
    assert "## Privacy strength sweep" in text and (tmp_path / "out/privacy.png").exists()
    assert "- Laplace DP: MTAL stops beating the best Alone from alpha = 10 on; test RMSE grows with the strength: yes" in text


def test_reproduce_shares_equal_fits_between_its_runs_and_the_report_shows_the_reuse(tmp_path, monkeypatch):
    """A reproduction trains its runs inside shared_fits.sharing_fits (one store for all of them), and the cost table
    of the report names the local fits a run took from an earlier run; `cdrec run` alone shares nothing."""
    from cdrec.federated import shared_fits

    (tmp_path / "data/ml-100k").mkdir(parents=True)
    (tmp_path / "data/ml-100k/u.data").write_text("")
    stores = []

    def fake_run(cfg, run_dir, **_):
        stores.append(shared_fits.active())
        result = _explicit_result(0.9)
        result.timing = {"train_s": 12.0, **({"reused_fits": 8} if run_dir.parent.name == "mtal-aae" else {})}
        write_result(run_dir, result)

    monkeypatch.setattr(runner, "run_config", fake_run)
    reproduce(tmp_path / "out", data_dir=tmp_path / "data", quick=True, device="cpu")
    assert stores and stores[0] is not None and all(s is stores[0] for s in stores)
    assert shared_fits.active() is None
    assert "| 12 (8 local fits reused) |" in (tmp_path / "out/report.md").read_text()


def _rounds_result(metric: str, valid: dict[str, list[float]], test: list[float], seed: int = 0) -> RunResult:
    """An MTAL run whose history records per round each organization's validation ``metric`` and the pooled test one;
    eta / w are None in round 0 (F0), 0.3 and [0.5, 0.5] after it."""
    rounds = range(len(test))
    history = [{"round": r, "test": {metric: test[r]}, "valid_by_org": {o: {metric: v[r], "n": 5} for o, v in valid.items()},
                "eta": {o: None if r == 0 else 0.3 for o in valid}, "w": {o: None if r == 0 else [0.5, 0.5] for o in valid}}
               for r in rounds]
    return RunResult(model="aae", dataset="douban", protocol="p", seed=seed, history=history,
                     metrics={"overall": {metric: test[-1], "n": 10}, **{o: {metric: v[-1], "n": 5} for o, v in valid.items()}})


def test_per_round_per_organization_section_from_fake_runs(tmp_path):
    out = tmp_path / "mtal"
    explicit, implicit = out / "runs/douban/explicit/user/domain", out / "runs/douban/implicit/user/domain"
    write_result(explicit / "mtal-aae/seed0", _rounds_result("RMSE", {"book": [0.79, 0.78, 0.80], "music": [0.85, 0.83, 0.82]},
                                                             [0.82, 0.81, 0.815]))
    alone = _explicit_result(0.77)
    alone.valid_metrics = {"book": {"RMSE": 0.753, "n": 5}, "music": {"RMSE": 0.79, "n": 5}}
    write_result(explicit / "alone-ncf/seed0", alone)
    auto = _rounds_result("RMSE", {"book": [0.79, 0.76, 0.757]}, [0.82, 0.79, 0.788])
    auto.data_stats = {"backbones": {"book": {"chosen": "mlp", "valid": {"mlp": 0.7531, "ncf": 0.76}, "epochs": {"mlp": 4}}}}
    write_result(explicit / f"{AUTO_ROW}/seed0", auto)
    write_result(implicit / "mtal-aae/seed0", _rounds_result("NDCG@10", {"book": [0.30, 0.36, 0.34]}, [0.31, 0.35, 0.33]))
    text = report(out).read_text()
    section = text.split("## Per round, per organization (Douban)")[1].split("\n## ")[0]
    aae = section.split("### Douban explicit/user/domain, `mtal-aae` (seed 0)")[1].split("### ")[0]
    assert "| round | book valid RMSE | book eta | book w | music valid RMSE | music eta | music w | test RMSE (pooled) |" in aae
    assert "| 0 | 0.7900 | – | – | 0.8500 | – | – | 0.8200 |" in aae
    assert "| 1 | 0.7800 | 0.3 | 0.50, 0.50 | 0.8300 | 0.3 | 0.50, 0.50 | 0.8100 |" in aae
    assert "| 2 | 0.8000 | 0.3 | 0.50, 0.50 | 0.8200 | 0.3 | 0.50, 0.50 | 0.8150 |" in aae
    assert "book: best validation RMSE 0.7800 at round 1, a gain of 0.0100 over round 0's 0.7900; best Alone (ncf, seed 0) 0.7530" in aae
    assert "music: best validation RMSE 0.8200 at round 2, a gain of 0.0300 over round 0's 0.8500; best Alone (ncf, seed 0) 0.7900" in aae
    own = section.split(f"`{AUTO_ROW}` (seed 0)")[1].split("### ")[0]
    assert "book: best validation RMSE 0.7570 at round 2, a gain of 0.0330 over round 0's 0.7900; its own Alone fit (mlp) 0.7531" in own
    ndcg = section.split("### Douban implicit/user/domain, `mtal-aae` (seed 0)")[1]
    assert "| 2 | 0.3400 | 0.3 | 0.50, 0.50 | 0.3300 |" in ndcg
    assert "book: best validation NDCG@10 0.3600 at round 1, a gain of 0.0600 over round 0's 0.3000; its own Alone validation figure is not recorded" in ndcg
