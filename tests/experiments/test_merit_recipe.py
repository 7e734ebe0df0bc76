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
    scopes = domains if model.endswith("-st") else ("joint",)
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
    assert {(r[0], r[1]) for r in first[:first_st]} == {(ds, m) for ds in ("abe", "afk") for m in (*ONE_PASS, "merit", "sasrec-dt", "bert4rec-dt", "abxi", "c2dsr")}


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
        for m, base in zip(MODELS, [0.01, 0.02, 0.05, 0.04, 0.06, 0.055, 0.07, 0.05, 0.09], strict=True):
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
    assert "best baseline" in report and "sasrec-dt" in report
    assert "abe Beauty: MERIT beats on MRR: sasrec-dt yes, bert4rec-dt yes" in report
    assert "NOT within 10%" in report  # 0.09 is far from 0.2004
    assert "| SF1 |" in (tmp_path / "table3.md").read_text()
    assert (tmp_path / "fig7_gates.png").stat().st_size > 1000
    assert (tmp_path / "curves.png").stat().st_size > 1000 and "![validation MRR sum per epoch](curves.png)" in report
    assert "| abe | sasrec-st | 0 | 3/3 | 2/2 |" in report  # epochs run and kept epoch per domain model
    table2 = (tmp_path / "table2.md").read_text()
    assert table2.index("| pop | 3 |") < table2.index("| itemknn | 3 |") < table2.index("| sasrec-st | 3 |")  # first rows, no paper cell
