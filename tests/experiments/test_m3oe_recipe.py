"""The M3oE recipe's tables: RelaImpr, seed summaries, the t-test line and the paper columns."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from cdrec.experiments import RECIPES
from cdrec.data.splits import SPLIT_ORDERS
from cdrec.experiments.m3oe import (ORDER_TEXT, PAPER_T2, SCHEDULES, TABLE2, TABLE3, capped_text, fusion_weights, headline, rela_impr, report,
                                    run_dir, summary, table2_markdown, ttest_text)
from cdrec.experiments.runner import Invocation
from cdrec.results.schema import RunResult, write_result
from tests.cli_helpers import call_main


def fake(model: str, seed: int, base: float) -> RunResult:
    metrics = {}
    heads = []
    for d, name in enumerate(["age<25", "age25-34", "age>=35"]):
        vals = {"AUC[click]": base + 0.001 * d, "AUC[like]": base + 0.002 + 0.001 * seed, "LogLoss[click]": 0.5, "LogLoss[like]": 0.4, "n": 10}
        heads += [vals["AUC[click]"], vals["AUC[like]"]]
        metrics[name] = vals
    metrics["overall"] = {"AUC": float(np.mean(heads)), "LogLoss": 0.45}
    history = [{"scope": "all", "fusion_weights": {"beta_d": [0.4 + 0.1 * seed, 0.5, 0.6], "alpha_t": [0.2, 0.3]}}]
    return RunResult(model=model, dataset="ml-1m", protocol="ratio", seed=seed, metrics=metrics, history=history)


def test_rela_impr_matches_the_papers_definition():
    # paper Table 2, MovieLens overall: M3oE 77.02 vs MMoE-MDMT 76.35 -> 2.54 %
    assert rela_impr(77.02, 76.35) == pytest.approx(2.54, abs=0.01)
    assert rela_impr(60.0, 60.0) == 0.0


def test_summary_and_table2_report_the_winner_and_the_paper():
    results = {
        "MMoE-MDMT": [fake("mmoe", s, 0.76) for s in range(3)],
        "STAR": [fake("star", s, 0.75) for s in range(3)],
        "M3oE": [fake("m3oe", s, 0.77) for s in range(3)],
    }
    mean, std = summary(results["M3oE"])
    assert mean.shape == (8,) and mean[0] == pytest.approx(77.0) and std[1] == pytest.approx(0.1)
    lines, info = table2_markdown("ml-1m", results, with_paper=True)
    text = "\n".join(lines)
    assert info["best"] == "MMoE-MDMT" and info["beats_all"] is True
    assert "paper M3oE" in text and "77.02" in text and "RelaImpr" in text and "t-test" in text


def test_m2m_and_adatt_sp_rows_carry_the_papers_cells_and_join_the_t_test():
    by_label = {e.label: e for e in TABLE2}
    assert (by_label["M2M"].model, by_label["M2M"].mode, by_label["M2M"].group) == ("m2m", "mdmt", "(d)")
    assert (by_label["AdaTT-sp"].model, by_label["AdaTT-sp"].mode, by_label["AdaTT-sp"].group) == ("adatt-sp", "mtl", "(b)")
    assert by_label["AdaTT-sp-MDMT"].mode == "mdmt" and "AdaTT-sp-MDMT" not in PAPER_T2
    assert PAPER_T2["M2M"] == (74.12, 75.35, 75.08, 77.13, 72.11, 73.78, 74.59, 54.14)  # paper Table 2, MovieLens
    assert PAPER_T2["AdaTT-sp"] == (72.49, 73.51, 76.04, 77.59, 73.04, 74.26, 74.49, 54.65)
    results = {"M2M": [fake("m2m", s, 0.78) for s in range(3)], "AdaTT-sp": [fake("adatt-sp", s, 0.74) for s in range(3)],
               "M3oE": [fake("m3oe", s, 0.77) for s in range(3)]}
    lines, info = table2_markdown("ml-1m", results, with_paper=True)
    text = "\n".join(lines)
    assert "paper M2M | 74.12" in text and "paper AdaTT-sp | 72.49" in text
    assert info["best"] == "M2M" and info["beats_all"] is False and "M3oE vs M2M" in text
    assert text.index("| AdaTT-sp |") < text.index("| M2M |")  # block (b) before block (d)
    # each of the papers' new baselines has its own paired t-test against M3oE, not only the best one
    pairwise = text[text.index("M3oE against each baseline"):]
    m2m = next(line for line in pairwise.splitlines() if line.startswith("| M2M |"))
    adatt = next(line for line in pairwise.splitlines() if line.startswith("| AdaTT-sp |"))
    assert m2m.split("|")[2].strip() == f"{summary(results['M3oE'])[0][-2] - summary(results['M2M'])[0][-2]:+.2f}"
    assert adatt.split("|")[2].strip().startswith("+") and m2m.split("|")[5].strip() == "3"


def test_pairwise_ttests_need_two_shared_seeds():
    results = {"M2M": [fake("m2m", 0, 0.78)], "M3oE": [fake("m3oe", s, 0.77) for s in range(3)]}
    lines, _ = table2_markdown("ml-1m", results, with_paper=False)
    row = next(line for line in lines[-2].splitlines() if line.startswith("| M2M |"))
    assert row.split("|")[2:6] == [" – ", " – ", " – ", " 1 "]


def test_fusion_weights_are_averaged_over_seeds():
    w = fusion_weights([fake("m3oe", 0, 0.7), fake("m3oe", 2, 0.7)])
    np.testing.assert_allclose(w["beta_d"], [0.5, 0.5, 0.6])


def test_recipe_is_registered_and_covers_the_tables():
    assert RECIPES["m3oe"] == "cdrec.experiments.m3oe"
    labels = {e.label for e in TABLE2}
    assert set(PAPER_T2) <= labels
    assert len(TABLE3) == 6 and {e.ablation for e in TABLE3} == {"no_automl", "concat", "gated", "no_domain", "no_task", "no_domain_task"}
    for sched in SCHEDULES.values():
        entries = sched["entries"]  # every model and mode of Table 2 and every ablation of Table 3, each once
        assert entries is None or (sorted(entries) == sorted(labels | {e.label for e in TABLE3}) and len(set(entries)) == len(entries))
        assert sched["order"] == "time" and sched["order"] in SPLIT_ORDERS  # the chronological split of the docstring
    assert set(ORDER_TEXT) == set(SPLIT_ORDERS)


def test_the_schedule_line_counts_the_runs_the_epoch_cap_cut_short():
    def run(*scopes: tuple[int, int]) -> RunResult:
        """A run whose scopes ran ``n`` epochs with the best validation epoch ``best``."""
        history = [{"scope": f"s{k}", "best_epoch": best, "epochs": [{"epoch": e + 1} for e in range(n)]} for k, (n, best) in enumerate(scopes)]
        return RunResult(model="m3oe", dataset="ml-1m", protocol="ratio", seed=0, metrics={}, history=history)

    stopped = run((4, 3))  # early stopping after epoch 4, best epoch 3
    improving = run((5, 5))  # ran to the cap of 5 and was still improving
    assert capped_text([stopped, run((5, 4))], cap=5) == "Every run stopped by early stopping before the 5-epoch cap."
    assert capped_text([stopped, improving, run((3, 2), (5, 5))], cap=5).startswith("2 of 3 runs were still improving at the 5-epoch cap")
    assert capped_text([], cap=5) == ""


BY_LABEL = {e.label: e for e in TABLE2 + TABLE3}


def fake_plan(out: Path, runs: dict[str, dict[str, float]], dataset: str = "ml-1m", quick: bool = False) -> None:
    """Finished runs ``label -> {seed: base AUC}`` of ``dataset`` in ``out`` (results.json only, as committed), and
    the recorded options of a run without --seeds on the CPU."""
    for label, seeds in runs.items():
        for seed, base in seeds.items():
            write_result(run_dir(out, dataset, BY_LABEL[label], seed), fake(BY_LABEL[label].model, seed, base))
    Invocation("m3oe", out, quick=quick, device="cpu").save()


PARTIAL = {"M3oE": {0: 0.77, 1: 0.772}, "PLE-MDMT": {0: 0.775}, "MLP": {0: 0.75, 1: 0.752, 2: 0.751}, "w/o AutoML": {0: 0.769}}


def test_report_of_a_partial_plan_names_the_missing_runs_and_the_seeds_of_every_row(tmp_path):
    out = tmp_path / "repro"
    fake_plan(out, PARTIAL)
    text = report(out, device="cpu").read_text()
    assert text.index("## Coverage: 7 of the 230 runs of the plan are finished") < text.index("## Departures from the paper") < text.index("## ml-1m")
    assert "`cdrec reproduce m3oe --out docs/reproductions/m3oe --device cpu` trains the missing ones" in text
    assert "- `ml-1m/M3oE`: 2 of 5 finished: missing seed2, seed3, seed4" in text and "- `ml-1m/PLE-MDMT`: 1 of 5 finished: missing seed1, seed2, seed3, seed4" in text
    assert "- `ml-100k/M3oE`: 0 of 5 finished\n" in text
    assert "## ml-100k" in text and "No run of this dataset is finished yet." in text
    assert "Fewer than the planned 5 seeds (finished seeds in brackets): MLP (3), PLE-MDMT (1), M3oE (2), w/o AutoML (1)." in text and "Not run yet: ShBot-MTL," in text
    rows = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| (") or line.startswith("| ours")}
    assert rows["PLE-MDMT"].endswith(" | 1 |") and "±" not in rows["PLE-MDMT"]  # one seed: no spread to show
    assert rows["M3oE"].endswith(" | 2 |") and "±" in rows["M3oE"] and rows["MLP"].endswith(" | 3 |")
    assert "| w/o AutoML | 77.05 |" in text and "The rows have 1 to 3 seeds" in text
    # PLE-MDMT (1 seed) is the best baseline: no t-test with one shared seed, "–" and never nan
    assert "Best baseline on mean AUC: **PLE-MDMT** (77.65, 1 seed); M3oE 77.28 (2 seeds)." in text
    assert "Paired t-test on mean AUC, M3oE vs PLE-MDMT: – (it needs 2 seeds both ran; 1 did)." in text
    assert "p = –; beats every baseline: no. Its Table 2 rows have 1 to 3 seeds." in text
    assert "M3oE mean AUC 77.28 (2 seeds) vs paper 77.02" in text and "(MMoE-MDMT); here M3oE is -0.38 from the best baseline" in text
    assert not re.search(r"\bnan\b", text, flags=re.I) and str(tmp_path) not in text and "/tmp" not in text and "/work" not in text
    assert "benchmarks/m3oe_authors_pipeline.py" in text and "reports/m3oe" not in text


def test_ttest_needs_two_shared_seeds_and_pairs_only_those():
    ours = [fake("m3oe", s, 0.77 + 0.001 * s) for s in range(3)]
    text, p = ttest_text(ours, [fake("ple", 2, 0.76)], "PLE-MDMT")
    assert p is None and ": –" in text
    text, p = ttest_text(ours, [fake("ple", s, 0.76) for s in (1, 2, 7)], "PLE-MDMT")
    assert p is not None and 0 <= p <= 1 and "over the 2 seeds both ran" in text


def test_report_only_rebuilds_a_partial_report_byte_for_byte_in_another_folder(tmp_path):
    out = tmp_path / "repro"
    fake_plan(out, PARTIAL)
    fake_plan(out, {"M3oE": {0: 0.68}, "MMoE-MDMT": {0: 0.67, 1: 0.671}}, dataset="ml-100k")
    ran = call_main("reproduce", "m3oe", "--report-only", "--out", str(out))
    assert ran.code == 0, ran.stderr
    first = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}
    assert set(first) == {"report.md", "fusion_weights.png", "reproduce.json"}
    assert "--device cpu" in first["report.md"].decode()  # the recorded option, not the --report-only flags
    copy = tmp_path / "elsewhere" / "m3oe"
    shutil.copytree(out, copy)
    (copy / "report.md").unlink()
    assert call_main("reproduce", "m3oe", "--report-only", "--out", str(copy)).code == 0
    assert call_main("reproduce", "m3oe", "--report-only", "--out", str(out)).code == 0
    assert (copy / "report.md").read_bytes() == first["report.md"] == (out / "report.md").read_bytes()


def test_headline_is_m3oe_on_ml1m_over_its_finished_seeds_beside_the_paper(tmp_path):
    out = tmp_path / "repro"
    fake_plan(out, {"M3oE": {0: 0.77, 1: 0.772, 3: 0.774}, "PLE-MDMT": {0: 0.78}})
    (row,) = headline(out)
    auc = [100 * fake("m3oe", s, b).metrics["overall"]["AUC"] for s, b in ((0, 0.77), (1, 0.772), (3, 0.774))]
    assert (row.dataset, row.paper_value) == ("ML-1M", 77.02)
    assert row.ours == (pytest.approx(np.mean(auc)), pytest.approx(np.std(auc, ddof=1)), 3)
    assert "12 epochs" in row.note and "4096" in row.note
    fake_plan(out / "one", {"M3oE": {2: 0.77}})
    assert headline(out / "one")[0].ours == (pytest.approx(100 * fake("m3oe", 2, 0.77).metrics["overall"]["AUC"]), 0.0, 1)


def test_headline_has_no_ours_without_a_finished_ml1m_m3oe_run(tmp_path):
    fake_plan(tmp_path / "baselines", {"PLE-MDMT": {0: 0.78}, "w/o AutoML": {0: 0.77}})
    fake_plan(tmp_path / "ml-100k", {"M3oE": {0: 0.68}}, dataset="ml-100k")
    fake_plan(tmp_path / "quick", {"M3oE": {0: 0.68}}, dataset="ml-100k", quick=True)
    for folder in ("baselines", "ml-100k", "quick"):
        (row,) = headline(tmp_path / folder)
        assert row.ours is None and row.paper_value == 77.02
    assert "--quick" in headline(tmp_path / "quick")[0].note
