"""The M3oE recipe's tables: RelaImpr, seed summaries, the t-test line and the paper columns."""

from __future__ import annotations

import numpy as np
import pytest

from cdrec.experiments import RECIPES
from cdrec.data.splits import SPLIT_ORDERS
from cdrec.experiments.m3oe import ORDER_TEXT, PAPER_T2, SCHEDULES, TABLE2, TABLE3, capped_text, fusion_weights, rela_impr, summary, table2_markdown
from cdrec.results.schema import RunResult


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
