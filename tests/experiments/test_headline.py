"""The README's headline table (cdrec.experiments.headline) and `cdrec reproduce all --report-only`."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdrec.cli.main import app
from cdrec.errors import CdrecError
from cdrec.experiments import headline
from cdrec.experiments.headline import BEGIN, END, HeadlineRow, update_readme


def test_row_cells_gap_direction_and_seeds():
    auc = HeadlineRow("M3oE", "ML-1M", "mean AUC (%)", 77.02, (77.05, 0.21, 10))
    cells = auc.cells("r.md")
    assert cells[3:6] == ["77.02", "77.05 ± 0.21 (10 seeds)", "+0.03 (+0.0%), better"]
    rmse = HeadlineRow("MTAL", "ML-1M", "RMSE", 0.878, (0.874, 0.0, 1), higher_is_better=False, digits=3)
    assert rmse.cells("r.md")[4:6] == ["0.874 (1 seed)", "-0.004 (-0.5%), better"]
    worse = HeadlineRow("MERIT", "afk: Food", "MRR", 0.1801, (0.1500, 0.01, 3), digits=4)
    assert worse.cells("r.md")[5] == "-0.0301 (-16.7%), worse"
    assert HeadlineRow("UCLR", "Douban", "MRR@10", 29.75, None).cells("r.md")[4:6] == ["not run yet", "–"]
    assert HeadlineRow("X", "d", "m", 1.0, (1.001, 0.0, 2)).cells("r.md")[5] == "+0.00 (+0.1%)"  # equal to the shown digits


def test_markdown_lists_every_paper_and_links_reports(tmp_path, monkeypatch):
    calls = []

    def fake_rows(root: Path):
        calls.append(root)
        return {"m3oe": [HeadlineRow("M3oE", "ML-1M", "mean AUC (%)", 77.02, (77.0, 0.1, 2))], "merit": [], "mtal": [], "uclr": []}

    monkeypatch.setattr(headline, "headline_rows", fake_rows)
    table = headline.headline_markdown(tmp_path, "docs/reproductions")
    assert "[report](docs/reproductions/m3oe/report.md)" in table
    assert table.count("not run yet") == 3 and "| merit |" in table


def test_rows_read_only_papers_with_finished_runs(tmp_path):
    assert headline.headline_rows(tmp_path) == {paper: [] for paper in headline.PAPERS}


def test_update_readme_replaces_between_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n\nintro\n{BEGIN}\nold table\n{END}\n\nrest\n")
    update_readme(readme, "| new |\n")
    assert readme.read_text() == f"# t\n\nintro\n{BEGIN}\n| new |\n{END}\n\nrest\n"
    readme.write_text("# no markers\n")
    with pytest.raises(CdrecError, match="headline markers"):
        update_readme(readme, "x\n")


@pytest.mark.parametrize("args, message", [
    (["reproduce", "all", "--out", "."], "only with --report-only"),
    (["reproduce", "all", "--report-only", "--out", ".", "--seeds", "2"], "pass only --out"),
    (["reproduce", "m3oe", "--report-only", "--out", ".", "--readme", "README.md"], "--readme"),
])
def test_all_refuses_what_it_cannot_do(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_all_without_runs_is_an_error(tmp_path):
    result = CliRunner().invoke(app, ["reproduce", "all", "--report-only", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no <paper>/runs/**/results.json" in result.output


def test_below_the_table_lists_cells_not_run_and_cells_short_of_the_paper(tmp_path, monkeypatch):
    rows = {"m3oe": [HeadlineRow("M3oE", "ML-1M", "mean AUC (%)", 77.02, (77.05, 0.2, 5))],
            "merit": [HeadlineRow("MERIT", "abe: Beauty", "test MRR", 0.2004, (0.1698, 0.0, 1), digits=4, note="d=32"),
                      HeadlineRow("MERIT", "afk: Food", "test MRR", 0.1801, None)],
            "mtal": [HeadlineRow("MTAL", "ML-1M", "RMSE", 0.878, (0.900, 0.0, 1), higher_is_better=False, digits=3, note="4 rounds")],
            "uclr": []}
    monkeypatch.setattr(headline, "headline_rows", lambda root: rows)
    below = headline.headline_markdown(tmp_path, "docs/reproductions").split("Not reproduced", 1)[1]
    assert "- MERIT, abe: Beauty: test MRR 15.3% below the paper's; ours: d=32." in below
    assert "- MERIT, afk: Food: not run yet." in below and "- uclr: no committed runs yet." in below
    assert "- MTAL, ML-1M: RMSE 2.5% above the paper's; ours: 4 rounds." in below
    assert "M3oE" not in below  # within the paper's cell
