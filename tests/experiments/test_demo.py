"""``cdrec demo``: the legend, one table and one computed verdict per family, and the PNG (tiny sizes)."""

from __future__ import annotations

import matplotlib.image
import pytest

from cdrec.experiments import demo, demo_cf, demo_ctr, demo_mtal, demo_seq
from cdrec.experiments.demo import FamilyResult, verdict
from tests.cli_helpers import call_main

FAMILIES = [  # module, the prefix of its RUNS / DATA / SCHEDULE constants, tiny data sizes for the test
    (demo_cf, "CF", {"n_users": 60, "max_activity": 30}),
    (demo_seq, "SEQ", {"n_users": 50}),
    (demo_mtal, "MTAL", {"n_users": 60, "items_per_domain": 20}),
    (demo_ctr, "CTR", {"n_users": 80, "items_per_domain": 30}),
]


def test_verdict_names_the_winner_and_says_when_the_flagship_lost():
    fam = FamilyResult(title="t", data="d", table="", metric="NDCG@10", higher_is_better=True,
                       scores={"a": 0.3, "b": 0.5, "f": 0.4}, flagship="f")
    assert verdict(fam) == "On NDCG@10 (higher is better) b wins with 0.5000; the flagship f lost: it is 2nd of 3 with 0.4000, 0.1000 behind."
    fam.scores["f"] = 0.6
    assert verdict(fam) == "On NDCG@10 (higher is better) f wins with 0.6000: the flagship wins, ahead of b (0.5000) by 0.1000."
    rmse = FamilyResult(title="t", data="d", table="", metric="RMSE", higher_is_better=False, scores={"a": 0.9, "f": 1.0}, flagship="f")
    assert "a wins with 0.9000; the flagship f lost: it is 2nd of 2" in verdict(rmse)
    tie = FamilyResult(title="t", data="d", table="", metric="AUC", higher_is_better=True, scores={"a": 0.7, "f": 0.7, "b": 0.6}, flagship="f")
    assert verdict(tie) == "On AUC (higher is better) the flagship f ties with a at 0.7000."


def test_demo_writes_legend_tables_verdicts_and_png(tmp_path, monkeypatch):
    for module, prefix, tiny in FAMILIES:
        for key, value in tiny.items():
            monkeypatch.setitem(getattr(module, f"{prefix}_DATA"), key, value)
        monkeypatch.setattr(module, f"{prefix}_SCHEDULE", [*getattr(module, f"{prefix}_SCHEDULE"), "train.epochs=1"])
    monkeypatch.setattr(demo_cf, "CF_RUNS", [*demo_cf.CF_RUNS[:3], ("uclr", ["model=uclr", "model_params.ae_epochs=1", "model_params.ft_epochs=1"])])
    monkeypatch.setattr(demo_mtal, "MTAL_RUNS", [demo_mtal.MTAL_RUNS[0], ("mtal aae", [*demo_mtal.MTAL_RUNS[-1][1], "setting.rounds=1", "model_params.epochs=1"])])
    outcome = call_main("demo", "--out", str(tmp_path / "out"), "--device", "cpu")  # through the command line
    assert outcome.code == 0 and outcome.exception is None, (outcome.stderr, outcome.exception)
    text = (tmp_path / "out" / "summary.md").read_text()
    for term in ("higher is better", "lower is better", "`single` / `alone`", "`joint`", "`mdl`", "`mdmt`", "`-st`", "`-dt`", "HR@10", "RMSE", "LogLoss"):
        assert term in text.split("## ")[0], term
    sections = text.split("\n## ")[1:]
    assert len(sections) == len(demo.DEMO_STEPS) == len(FAMILIES)
    for (module, prefix, _tiny), body in zip(FAMILIES, sections):
        runs = getattr(module, f"{prefix}_RUNS")
        table = [line for line in body.splitlines() if line.startswith("| ")]
        assert [row.split(" | ")[0].strip("| *") for row in table[1:]] == [label for label, _ in runs]
        assert sum(f"| {module.FLAGSHIP} * |" in row for row in table) == 1
        assert sum(line.startswith("On ") and " wins with " in line for line in body.splitlines()) == 1
        if "the flagship wins" not in body:
            assert f"the flagship {module.FLAGSHIP} lost" in body
    png = matplotlib.image.imread(tmp_path / "out" / "summary.png")
    assert png.shape[1] > 3 * png.shape[0]  # four panels side by side
    assert "summary.png" in text


@pytest.mark.parametrize("module, prefix", [(m, p) for m, p, _ in FAMILIES])
def test_each_family_has_its_flagship_among_its_runs(module, prefix):
    assert module.FLAGSHIP in [label for label, _ in getattr(module, f"{prefix}_RUNS")]
