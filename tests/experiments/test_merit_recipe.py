"""The MERIT recipe: plan order, report tables, t-test and Fig. 7 from results on disk."""

from __future__ import annotations

import json

import numpy as np

from cdrec.experiments import RECIPES
from cdrec.config import load_config
from cdrec.experiments.merit import MODELS, ONE_PASS, SCHEDULES, plan, run_dir, write_report
from cdrec.models import registry
from cdrec.results.schema import RunResult, write_result


def fake_result(model: str, ds: str, seed: int, mrr: float, ablation: str | None = None, epochs_run: int = 3, best_epoch: int = 2) -> RunResult:
    """A finished run as the pipeline records it, trained at the ``cpu`` schedule (d=32, at most 20 epochs)."""
    domains = {"abe": ("Beauty", "Electronics"), "afk": ("Food", "Kitchen")}[ds]
    metrics = {d: {"HR@5": mrr * 1.5, "HR@10": mrr * 2, "NDCG@10": mrr * 1.2, "MRR": mrr + 0.01 * i, "n": 100} for i, d in enumerate(domains)}
    scopes = domains if model.endswith("-st") or model in ("cd-sasrec", "cd-asr", "mgcl") else ("joint",)
    history = [{"scope": sc, "best_epoch": best_epoch, "epochs": [{"epoch": e, "loss": 1.0, "valid": {"MRR_sum": mrr * e}} for e in range(1, epochs_run + 1)]}
               for sc in scopes]
    setting = {"ablation": ablation} if ablation else {}
    config = {"model": model, "model_params": {"dim": SCHEDULES["cpu"].dim}, "train": {"epochs": SCHEDULES["cpu"].epochs}}
    if model in ONE_PASS:  # what the ranking task records
        history, setting, config = [{"scope": "joint", "fit": "one-pass", "best_epoch": 0, "epochs": []}], {"scope": "joint"}, {"model": model, "model_params": {}, "train": {"epochs": 50}}
    return RunResult(model=model, dataset=ds, protocol="loo-mixed/1+999", seed=seed, metrics=metrics, config=config,
                     setting=setting, timing={"train_s": 100.0 + seed, "eval_s": 10.0, "peak_rss_mb": 10.0}, history=history)


def test_recipe_is_registered_and_plans_the_main_table_first():
    assert RECIPES["merit"] == "cdrec.experiments.merit"
    runs = plan(SCHEDULES["cpu"], None)
    first = runs[: 2 * len(MODELS)]
    assert {r[1] for r in first} == set(MODELS) and all(r[2] is None and r[3] == 0 for r in first)
    assert sum(1 for r in runs if r[2] is None) == 3 * 2 * len(MODELS)
    assert runs[-1][3] == 2 and runs[-1][2] is None  # the third seed comes after the ablations
    assert {r[2] for r in runs if r[2]} == {"SF1", "SF2", "SF3", "SF4", "FF1", "MF1", "MF2", "RL1", "RL2"}
    # within a seed, MERIT and the dual-target baselines of every dataset run before any single-target one
    first_st = min(i for i, r in enumerate(first) if r[1].endswith("-st"))
    assert {(r[0], r[1]) for r in first[:first_st]} == {(ds, m) for ds in ("abe", "afk") for m in (*ONE_PASS, "merit", "sasrec-dt", "bert4rec-dt", "abxi", "c2dsr", "dream")}


def test_every_schedule_builds_valid_configs_for_every_model():
    for sched in SCHEDULES.values():
        merit = load_config(None, ["model=merit", *sched.overrides("abe", "merit")])
        for model in ONE_PASS:  # the ranking task on MERIT's split, candidates and metrics, without the schedule
            cfg = load_config(None, [f"model={model}", *sched.overrides("abe", model)])
            assert registry.build_params(model, cfg.model_params) is not None
            assert (cfg.split, cfg.eval.ks, cfg.train.metric) == (merit.split, merit.eval.ks, "MRR")
        for model in (m for m in MODELS if m not in ONE_PASS):
            cfg = load_config(None, [f"model={model}", *sched.overrides()])
            params = registry.build_params(model, cfg.model_params)
            assert cfg.train.lr == sched.lr and cfg.train.weight_decay == sched.weight_decay and params.dim == sched.dim
            if sched.dropout is not None:
                assert params.dropout == sched.dropout
            if sched.lr_patience is not None:
                assert params.lr_patience == sched.lr_patience
            for ds in sched.datasets:
                per_ds = registry.build_params(model, load_config(None, [f"model={model}", *sched.overrides(ds, model)]).model_params)
                assert per_ds.lr_factor == dict(sched.lr_factors).get(ds, params.lr_factor)
    # MERIT's settings (the authors' sampler) reach MERIT and ABXI and no other baseline (whose params would reject them)
    for sched in SCHEDULES.values():
        for model in ("merit", "abxi"):
            params = registry.build_params(model, load_config(None, [f"model={model}", *sched.overrides("abe", model)]).model_params)
            for key, value in sched.merit_params:
                assert str(getattr(params, key)) == value
        assert not any(o.startswith(f"model_params.{k}=") for k, _ in sched.merit_params for o in sched.overrides("abe", "sasrec-dt"))
    # the authors' demo.sh plateau factors
    assert dict(SCHEDULES["paper"].lr_factors) == {"afk": 0.4, "abe": 0.8}


def test_report_tables_ttest_and_gate_figure(tmp_path):
    rng = np.random.default_rng(0)
    for seed in range(3):
        for m, base in zip(MODELS, [0.01, 0.02, 0.05, 0.04, 0.045, 0.047, 0.046, 0.06, 0.055, 0.07, 0.05, 0.052, 0.09], strict=True):
            d = run_dir(tmp_path, "abe", m, None, seed)
            write_result(d, fake_result(m, "abe", seed, base + rng.normal(0, 0.002)))
        d = run_dir(tmp_path, "abe", "merit", "SF1", seed)
        write_result(d, fake_result("merit", "abe", seed, 0.08, "SF1"))
        gates = {dom: {n: [0.5, 0.5, 0.1, 0.1] for n in ("M", "M2A", "M2B", "A", "A2M", "A2B", "B", "B2M", "B2A")} for dom in ("Beauty", "Electronics")}
        (run_dir(tmp_path, "abe", "merit", None, seed) / "gates.json").write_text(json.dumps(gates))
    report = write_report(tmp_path, SCHEDULES["cpu"]).read_text()
    assert "do not use the paper's schedule" in report
    assert "(0.2004)" in report  # the paper's MERIT MRR on Beauty beside ours
    assert "| abxi | 3 |" in report and "(0.1846)" in report  # ABXI, the paper's runner-up, with its cells
    assert "(0.1290)" in next(line for line in report.splitlines() if line.startswith("| c2dsr |"))  # C2DSR's, from MERIT's Table 2
    assert "(0.1447)" in next(line for line in report.splitlines() if line.startswith("| dream |"))  # DREAM's, likewise
    assert "best baseline" in report and "sasrec-dt" in report
    assert "abe Beauty (MERIT: 3 seeds): MERIT beats on MRR: sasrec-dt yes, bert4rec-dt yes" in report
    assert "NOT within 10%" in report  # 0.09 is far from 0.2004
    assert "| SF1 |" in (tmp_path / "table3.md").read_text()
    assert (tmp_path / "fig7_gates.png").stat().st_size > 1000
    assert (tmp_path / "curves.png").stat().st_size > 1000 and "![validation MRR sum per epoch](curves.png)" in report
    assert "| abe | sasrec-st | 0 | 3/3 | 2/2 |" in report  # epochs run and kept epoch per domain model
    assert "(0.1162)" in next(line for line in report.splitlines() if line.startswith("| cd-sasrec |"))  # MERIT's Table 2 cells
    assert "(0.1211)" in next(line for line in report.splitlines() if line.startswith("| cd-asr |"))
    assert "(0.1001)" in next(line for line in report.splitlines() if line.startswith("| mgcl |"))
    table2 = (tmp_path / "table2.md").read_text()
    assert table2.index("| pop | 3 |") < table2.index("| itemknn | 3 |") < table2.index("| sasrec-st | 3 |")  # first rows, no paper cell


def test_switches_section_runs_each_switch_alone_and_stays_out_of_the_default_plan(tmp_path, monkeypatch):
    import cdrec.experiments.merit as recipe
    from cdrec.models.sequential.merit import AUTHORS_CODE

    assert recipe.DEFAULT_SECTIONS == ("main",) and set(recipe.SECTIONS) == {"main", "switches"}
    runs = recipe.switch_runs(tmp_path, recipe.SWITCH_SCHEDULE)
    cfgs = {label.split("/")[1].removeprefix(recipe.SWITCH_PREFIX): load_config(None, sets) for label, _, sets in runs}
    params = {name: registry.build_params("merit", cfg.model_params) for name, cfg in cfgs.items()}
    assert {name: p.authors_code for name, p in params.items() if p.authors_code and name != "all"} == {n: [n] for n in AUTHORS_CODE}
    assert params["all"].authors_code == list(AUTHORS_CODE) and params["paper"].authors_code == []
    assert params["warmup_start_factor"].warmup_start_factor == 1 / recipe.SWITCH_WARMUP and params["paper"].warmup_start_factor == 1e-5
    assert all(p.warmup_epochs == recipe.SWITCH_WARMUP and p.dim == 32 and p.negatives == "position" for p in params.values())
    assert {c.data.name for c in cfgs.values()} == {"abe"} and all(c.seed == 0 for c in cfgs.values())
    # the default plan trains none of them; --section switches trains only them
    trained = []
    monkeypatch.setattr(recipe, "run_plan", lambda inv, planned, report: trained.append((inv, [p.run_dir for p in planned])) or tmp_path)
    monkeypatch.setattr("cdrec.data.datasets.load_dataset", lambda *a, **k: None)
    recipe.reproduce(tmp_path, quick=True)
    assert not any(recipe.SWITCH_PREFIX in str(d) for d in trained[-1][1]) and trained[-1][0].sections == ()
    recipe.reproduce(tmp_path, quick=True, sections=["switches"])
    assert [d.parent.name for d in trained[-1][1]] == [f"{recipe.SWITCH_PREFIX}{n}" for n in recipe.SWITCH_VARIANTS]
    assert "--section switches" in trained[-1][0].command()
    from cdrec.errors import CdrecError
    import pytest

    with pytest.raises(CdrecError, match="--section"):
        recipe.reproduce(tmp_path, quick=True, sections=["nope"])


def test_switches_table_reads_the_switch_runs_and_keeps_them_out_of_table2(tmp_path):
    import cdrec.experiments.merit as recipe

    write_result(run_dir(tmp_path, "abe", "merit", None, 0), fake_result("merit", "abe", 0, 0.09))
    for name, mrr in (("paper", 0.10), ("no_key_padding_mask", 0.12), ("all", 0.08)):
        res = fake_result("merit", "abe", 0, mrr)
        res.valid_metrics = {"Beauty": {"MRR": mrr}, "Electronics": {"MRR": mrr + 0.01}, "overall": {"MRR_sum": 2 * mrr + 0.01}}
        write_result(tmp_path / "runs" / "abe" / f"{recipe.SWITCH_PREFIX}{name}" / "seed0", res)
    report = write_report(tmp_path, SCHEDULES["cpu"]).read_text()
    section = report[report.index("## The authors' code, one behaviour at a time"):]
    assert "| paper | – | 0.2100 | – | 0.1000 | 0.1100 |" in section
    assert "| no_key_padding_mask | authors_code=[no_key_padding_mask] | 0.2500 | +0.0400 |" in section
    assert section.index("| no_key_padding_mask |") < section.index("| all |")
    assert "| merit | 1 |" in (tmp_path / "table2.md").read_text()  # the switch runs are not MERIT seeds of Table 2
    assert len(recipe.load_runs(tmp_path)) == 1 and len(recipe.load_runs(tmp_path, switches=True)) == 3


def _partial_seed0(out) -> None:
    """What a cpu reproduction cut short inside seed 0 leaves: the one-pass baselines, MERIT (its best epoch at the
    cap) and SASRec-dt on Beauty-Electronics, and the options it was started with."""
    for model, mrr in (("pop", 0.02), ("itemknn", 0.03)):
        write_result(run_dir(out, "abe", model, None, 0), fake_result(model, "abe", 0, mrr))
    write_result(run_dir(out, "abe", "merit", None, 0), fake_result("merit", "abe", 0, 0.15, epochs_run=20, best_epoch=20))
    write_result(run_dir(out, "abe", "sasrec-dt", None, 0), fake_result("sasrec-dt", "abe", 0, 0.14, epochs_run=12, best_epoch=9))
    (out / "reproduce.json").write_text(json.dumps({"paper": "merit", "quick": False, "seeds": None, "device": "cpu"}))


def test_partial_report_names_missing_runs_marks_rows_not_run_and_has_no_nan_or_paths(tmp_path):
    from cdrec.experiments.merit import report

    _partial_seed0(tmp_path)
    text = report(tmp_path, device="cpu").read_text()
    n_planned = len(plan(SCHEDULES["cpu"], None))
    assert text.index("## Coverage: 4 of the %d runs of the plan are finished" % n_planned) < text.index("## How these runs differ")
    assert "- `afk/merit`: 0 of 3 finished: missing seed0, seed1, seed2" in text and "- `abe/merit`: 1 of 3 finished: missing seed1, seed2" in text
    assert "- `abe/merit-SF3`: 0 of 1 finished: missing seed0" in text
    assert "`cdrec reproduce merit --out docs/reproductions/merit --device cpu` trains the missing ones" in text
    assert "These runs do not use the paper's schedule" in text and "d=32 and at most 20 epochs" in text
    assert "| abxi | not run | – (0.2807) |" in text and "| merit | 1 | 0.2250 (0.3073) |" in text
    assert "| merit | not run | – (0.2628) |" in text  # Food-Kitchen: MERIT has no run there
    assert "- afk: MERIT has no finished run on Food-Kitchen; nothing to compare." in text
    assert "- abe Beauty (MERIT: 1 seed): MERIT beats on MRR: sasrec-dt yes, bert4rec-dt not run;" in text
    assert "| Beauty | MRR | sasrec-dt | 0.1400 | 0.1500 | – | – |" in text  # one seed: no t-test
    assert "| SF1 | not run | – (0.1937) | – (0.1285) | – (0.3222) |" in text
    assert "| abe | merit | 0 | 20 | 20 | 20 | 100 | 10 |" in text and "| abe | sasrec-dt | 0 | 12 | 9 | 20 |" in text  # best epoch beside the cap
    assert "| abe | pop | 0 | one pass | – | – |" in text
    assert "1 of the 2 trained runs kept the weights of their last allowed epoch" in text
    assert "Recorded time of the 4 finished runs: 440 s" in text  # 100 s training + 10 s evaluation each
    # seeds 1 and 2 of the four finished kinds at their seed-0 time; nothing to go by for the others
    assert f"8 of its {n_planned - 4} missing runs would take about 880 s (0.2 h); the other {n_planned - 12} have no such run" in text
    assert "nan" not in text.lower() and str(tmp_path) not in text and "/tmp" not in text and "/work" not in text
    for name in ("table2.md", "table3.md"):
        assert "nan" not in (tmp_path / name).read_text().lower()


def test_partial_report_counts_the_switches_section_when_it_was_asked_for(tmp_path):
    from cdrec.experiments.merit import SWITCH_VARIANTS, report

    _partial_seed0(tmp_path)
    (tmp_path / "reproduce.json").write_text(json.dumps({"paper": "merit", "quick": False, "seeds": None, "device": "cpu", "sections": ["switches"]}))
    text = report(tmp_path, device="cpu").read_text()
    assert f"## Coverage: 4 of the {len(plan(SCHEDULES['cpu'], None)) + len(SWITCH_VARIANTS)} runs" in text
    assert "- `abe/merit-switch-paper`: 0 of 1 finished: missing seed0" in text
    assert "--device cpu --section main --section switches" in text


def test_report_only_is_byte_identical_twice_and_in_another_folder(tmp_path):
    import shutil

    from cdrec.experiments.merit import report

    first = tmp_path / "a"
    _partial_seed0(first)
    write_result(run_dir(first, "abe", "merit", None, 1), fake_result("merit", "abe", 1, 0.16))
    write_result(run_dir(first, "abe", "sasrec-dt", None, 1), fake_result("sasrec-dt", "abe", 1, 0.13))
    write_result(run_dir(first, "abe", "merit", "SF1", 0), fake_result("merit", "abe", 0, 0.15, "SF1"))
    report(first, device="cpu")
    texts = {name: (first / name).read_bytes() for name in ("report.md", "table2.md", "table3.md")}
    report(first, device="cpu")
    second = tmp_path / "b"
    shutil.copytree(first / "runs", second / "runs")
    shutil.copy(first / "reproduce.json", second / "reproduce.json")
    report(second, device="cpu")
    for name, data in texts.items():
        assert (first / name).read_bytes() == data == (second / name).read_bytes(), name
    assert "| Beauty | MRR | sasrec-dt |" in texts["report.md"].decode() and " nan" not in texts["report.md"].decode()


def test_headline_rows_are_merits_test_mrr_per_domain_and_none_where_merit_did_not_run(tmp_path):
    from cdrec.experiments.merit import PAPER_TABLE2, headline

    _partial_seed0(tmp_path)
    write_result(run_dir(tmp_path, "abe", "merit", None, 1), fake_result("merit", "abe", 1, 0.17))
    write_result(run_dir(tmp_path, "afk", "sasrec-dt", None, 0), fake_result("sasrec-dt", "afk", 0, 0.12))
    rows = headline(tmp_path)
    assert [r.dataset for r in rows] == ["afk: Food", "afk: Kitchen", "abe: Beauty", "abe: Electronics"]
    assert [r.paper_value for r in rows] == [PAPER_TABLE2["merit"][d][3] for d in ("Food", "Kitchen", "Beauty", "Electronics")]
    assert rows[0].ours is None and rows[1].ours is None  # no MERIT run on Food-Kitchen (a baseline's does not count)
    for row, mrr in ((rows[2], (0.15, 0.17)), (rows[3], (0.16, 0.18))):  # Electronics: MRR + 0.01 in the fakes
        mean, std, n = row.ours
        assert n == 2 and np.isclose(mean, np.mean(mrr)) and np.isclose(std, np.std(mrr, ddof=1))
    assert all(r.digits == 4 and r.metric == "test MRR" and "d=32" in r.note and "≤20 epochs" in r.note for r in rows)
    assert "0.1600 ± 0.0141 (2 seeds)" in rows[2].cells("x")[4]
    # the ablation runs are not MERIT's Table 2 runs
    write_result(run_dir(tmp_path, "afk", "merit", "SF1", 0), fake_result("merit", "afk", 0, 0.2, "SF1"))
    assert headline(tmp_path)[0].ours is None
