"""The MERIT recipe: plan order, report tables, t-test and Fig. 7 from results on disk."""

from __future__ import annotations

import json

import numpy as np

from cdrec.experiments import RECIPES
from cdrec.config import load_config
from cdrec.experiments.merit import MODELS, ONE_PASS, SCHEDULES, plan, run_dir, write_report
from cdrec.models import registry
from cdrec.results.schema import RunResult, write_result


def fake_result(model: str, ds: str, seed: int, mrr: float, ablation: str | None = None) -> RunResult:
    domains = {"abe": ("Beauty", "Electronics"), "afk": ("Food", "Kitchen")}[ds]
    metrics = {d: {"HR@5": mrr * 1.5, "HR@10": mrr * 2, "NDCG@10": mrr * 1.2, "MRR": mrr + 0.01 * i, "n": 100} for i, d in enumerate(domains)}
    scopes = domains if model.endswith("-st") or model in ("cd-sasrec", "cd-asr", "mgcl") else ("joint",)
    history = [{"scope": sc, "best_epoch": 2, "epochs": [{"epoch": e, "loss": 1.0, "valid": {"MRR_sum": mrr * e}} for e in (1, 2, 3)]} for sc in scopes]
    setting = {"ablation": ablation} if ablation else {}
    if model in ONE_PASS:  # what the ranking task records
        history, setting = [{"scope": "joint", "fit": "one-pass", "best_epoch": 0, "epochs": []}], {"scope": "joint"}
    return RunResult(model=model, dataset=ds, protocol="loo-mixed/1+999", seed=seed, metrics=metrics,
                     setting=setting, timing={"train_s": 1.0, "peak_rss_mb": 10.0}, history=history)


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
    report = write_report(tmp_path, "cpu (reduced)").read_text()
    assert "Reduced schedule" in report
    assert "(0.2004)" in report  # the paper's MERIT MRR on Beauty beside ours
    assert "| abxi | 3 |" in report and "(0.1846)" in report  # ABXI, the paper's runner-up, with its cells
    assert "(0.1290)" in next(line for line in report.splitlines() if line.startswith("| c2dsr |"))  # C2DSR's, from MERIT's Table 2
    assert "(0.1447)" in next(line for line in report.splitlines() if line.startswith("| dream |"))  # DREAM's, likewise
    assert "best baseline" in report and "sasrec-dt" in report
    assert "abe Beauty: MERIT beats on MRR: sasrec-dt yes, bert4rec-dt yes" in report
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
    report = write_report(tmp_path, "cpu (reduced)").read_text()
    section = report[report.index("## The authors' code, one behaviour at a time"):]
    assert "| paper | – | 0.2100 | – | 0.1000 | 0.1100 |" in section
    assert "| no_key_padding_mask | authors_code=[no_key_padding_mask] | 0.2500 | +0.0400 |" in section
    assert section.index("| no_key_padding_mask |") < section.index("| all |")
    assert "| merit | 1 |" in (tmp_path / "table2.md").read_text()  # the switch runs are not MERIT seeds of Table 2
    assert len(recipe.load_runs(tmp_path)) == 1 and len(recipe.load_runs(tmp_path, switches=True)) == 3
