"""The README's headline table: per paper, its main metric, the paper's cell, ours and the gap.

Each recipe module has ``headline(out) -> list[HeadlineRow]``, read from the finished runs in ``out``
(the same runs its report is made of). :func:`headline_markdown` writes the table from the committed
reproductions under ``docs/reproductions/<paper>/``; ``cdrec reproduce all --report-only`` rebuilds
every report and this table, and :func:`update_readme` puts the table between the README's markers,
so the README never holds a number the runs do not.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path

from cdrec.errors import require
from cdrec.experiments import RECIPES
from cdrec.results.schema import atomic_write_text

PAPERS = tuple(sorted(RECIPES))
"""The recipes, in the order of the table."""
BEGIN = "<!-- headline:begin (written by `cdrec reproduce all --report-only`; do not edit) -->"
END = "<!-- headline:end -->"


@dataclass(frozen=True)
class HeadlineRow:
    """One paper's main cell, ours beside it."""

    paper: str
    """How the table names the method and paper, e.g. ``M3oE (SIGIR 2024)``."""
    dataset: str
    metric: str
    """e.g. ``mean AUC (%)``; a lower-is-better metric (RMSE) says so with ``higher_is_better``."""
    paper_value: float | None
    ours: tuple[float, float, int] | None
    """(mean, std, seeds) over the finished runs; None when none is finished."""
    higher_is_better: bool = True
    digits: int = 2
    note: str = ""
    """What differs from the paper's protocol or schedule (the report says more)."""

    def cells(self, link: str) -> list[str]:
        d = self.digits
        paper = "–" if self.paper_value is None else f"{self.paper_value:.{d}f}"
        if self.ours is None:
            ours, gap = "not run yet", "–"
        else:
            mean, std, n = self.ours
            ours = f"{mean:.{d}f} ± {std:.{d}f} ({n} seeds)" if n > 1 else f"{mean:.{d}f} (1 seed)"
            gap = "–" if self.paper_value is None else _gap(mean, self.paper_value, self.higher_is_better, d)
        return [self.paper, self.dataset, self.metric, paper, ours, gap, f"[report]({link})", self.note]


def _gap(ours: float, paper: float, higher_is_better: bool, digits: int) -> str:
    """Ours minus the paper's, and the relative gap; ``(worse)`` / ``(better)`` by the metric's direction."""
    diff = ours - paper
    rel = f" ({100 * diff / abs(paper):+.1f}%)" if paper else ""
    worse = diff < 0 if higher_is_better else diff > 0
    word = "" if math.isclose(diff, 0.0, abs_tol=0.5 * 10 ** -digits) else (", worse" if worse else ", better")
    return f"{diff:+.{digits}f}{rel}{word}"


def headline_rows(root: Path) -> dict[str, list[HeadlineRow]]:
    """Every paper's headline rows from the reproduction in ``root/<paper>`` (empty where it has no runs)."""
    rows = {}
    for paper in PAPERS:
        folder = Path(root) / paper
        has_runs = any((folder / "runs").glob("**/results.json"))
        rows[paper] = importlib.import_module(RECIPES[paper]).headline(folder) if has_runs else []
    return rows


def headline_markdown(root: Path, link_base: str) -> str:
    """The headline table (one row per paper's main cell, linking ``link_base/<paper>/report.md``) and, below
    it, what is not reproduced: cells not run yet and cells more than :data:`SHORTFALL` worse than the paper's,
    each with how ours ran."""
    header = ["paper", "data", "metric", "paper's", "ours (mean ± std)", "ours − paper's", "report", "how ours ran"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    missing: list[str] = []
    for paper, rows in headline_rows(root).items():
        link = f"{link_base}/{paper}/report.md"
        for row in rows:
            lines.append("| " + " | ".join(row.cells(link)) + " |")
            missing += _shortfall(row)
        if not rows:
            lines.append(f"| {paper} | – | – | – | not run yet | – | – | no committed runs |")
            missing.append(f"- {paper}: no committed runs yet.")
    if missing:
        lines += ["", "Not reproduced (from the same runs; each report lists its missing runs and its departures from the paper):", "", *missing]
    return "\n".join(lines) + "\n"


SHORTFALL = 0.01
"""A cell counts as not reproduced when ours is worse than the paper's by more than this share of it."""


def _shortfall(row: HeadlineRow) -> list[str]:
    """The line of ``row`` in the not-reproduced list: not run, or worse than the paper by more than :data:`SHORTFALL`."""
    if row.ours is None:
        return [f"- {row.paper}, {row.dataset}: not run yet."]
    if not row.paper_value:
        return []
    rel = (row.ours[0] - row.paper_value) / abs(row.paper_value)
    worse = -rel if row.higher_is_better else rel
    if worse <= SHORTFALL:
        return []
    side = "below" if row.higher_is_better else "above"
    return [f"- {row.paper}, {row.dataset}: {row.metric} {100 * worse:.1f}% {side} the paper's; ours: {row.note or 'see the report'}."]


def update_readme(readme: Path, table: str) -> None:
    """Replace the text between :data:`BEGIN` and :data:`END` in ``readme`` with ``table``."""
    text = Path(readme).read_text()
    require(BEGIN in text and END in text, f"{readme}: no headline markers ({BEGIN} ... {END}) to write the table between")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    atomic_write_text(Path(readme), f"{head}{BEGIN}\n{table}{END}{tail}")
