"""``cdrec demo``: every family on built-in synthetic data, in a few minutes on 2 CPU cores.

Each family contributes one module to :data:`DEMO_STEPS` with a function
``demo(out: Path, device: str) -> FamilyResult`` that trains its models on data planted with the
structure the family exists for (:mod:`cdrec.data.synthetic`'s knobs), all models of the family on
the same schedule. The demo writes ``summary.md`` (a legend, one table per family and one sentence
per family saying who won, computed from the numbers) and ``summary.png`` (one panel per family:
the main metric per model).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path

from cdrec.config import load_config
from cdrec.experiments.pipeline import run_config
from cdrec.results.plots import save_figure
from cdrec.results.schema import RunResult, atomic_write_text

DEMO_STEPS: list[str] = [
    "cdrec.experiments.demo_cf",
    "cdrec.experiments.demo_seq",
    "cdrec.experiments.demo_mtal",
    "cdrec.experiments.demo_ctr",
]

LEGEND = """\
**Legend.** Metrics: HR@10 (the held-out item is in the top 10), NDCG@10 and MRR (its rank, discounted) and
AUC: higher is better; RMSE (rating error) and LogLoss: lower is better. `overall` is the mean over every
evaluated row of every domain. Settings: `single` / `alone` = one model per domain (organization) trained on
that domain only; `joint` = one model on all domains pooled; `mtal` = organizations that keep their own
data and only exchange predictions (AAE + MTAL); `-st` = a sequential model per domain on that domain's
own sequence, `-dt` = one model on the mixed sequence of both domains; CTR `mdl` = one multi-domain model
per task, `mdmt` = one model for all domains and tasks; `pop` (popularity) and `itemknn` (item-based kNN) are the
floors every ranking table starts with. The flagship of each family (the method of the
paper the family implements) is marked with *. One seed and a short schedule per family: these are
illustrations on synthetic data, not benchmarks; a gap of a few thousandths may not survive another seed."""


@dataclass
class FamilyResult:
    """What one family's demo step reports: its section of ``summary.md`` and its panel of ``summary.png``."""

    title: str
    data: str
    """One sentence: the data and the structure planted in it."""
    table: str
    metric: str
    """The main metric (its ``overall`` value per model is compared and plotted)."""
    higher_is_better: bool
    scores: dict[str, float]
    """Model label -> main metric, in table order."""
    flagship: str


def train_family(out: Path, device: str, runs: list[tuple[str, list[str]]], common: list[str]) -> dict[str, RunResult]:
    """Train and evaluate each ``(label, overrides)`` run with the family's ``common`` overrides
    (data and schedule) into ``out / label``; returns the results by label."""
    results = {}
    for label, overrides in runs:
        cfg = load_config(None, [*common, *overrides, "train.progress=false", f"train.device={device}"])
        results[label] = run_config(cfg, out / label.replace(" ", "-"))
    return results


def flag(label: str, flagship: str) -> str:
    """A table label, with ``*`` on the flagship."""
    return f"{label} *" if label == flagship else label


def verdict(family: FamilyResult) -> str:
    """One sentence stating who won on the main metric and, if the flagship did not, that it lost."""
    ranked = sorted(family.scores, key=lambda m: family.scores[m], reverse=family.higher_is_better)
    best, flag = ranked[0], family.flagship
    order = "higher" if family.higher_is_better else "lower"
    tied = [m for m in ranked if m != flag and family.scores[m] == family.scores[flag]]
    if family.scores[flag] == family.scores[best] and tied:
        return f"On {family.metric} ({order} is better) the flagship {flag} ties with {', '.join(tied)} at {family.scores[flag]:.4f}."
    head = f"On {family.metric} ({order} is better) {best} wins with {family.scores[best]:.4f}"
    if best == flag:
        runner = ranked[1] if len(ranked) > 1 else None
        gap = abs(family.scores[best] - family.scores[runner]) if runner else 0.0
        tail = f", ahead of {runner} ({family.scores[runner]:.4f}) by {gap:.4f}." if runner else "."
        return f"{head}: the flagship wins{tail}"
    return (f"{head}; the flagship {flag} lost: it is {_ordinal(ranked.index(flag) + 1)} of {len(ranked)} "
            f"with {family.scores[flag]:.4f}, {abs(family.scores[best] - family.scores[flag]):.4f} behind.")


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 11 <= n % 100 <= 13 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def plot_families(families: list[FamilyResult], path: Path) -> Path:
    """One bar panel per family: the main metric per model, the flagship highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 3.6), squeeze=False)
    for ax, fam in zip(axes[0], families):
        labels = list(fam.scores)
        values = [fam.scores[m] for m in labels]
        colors = ["tab:red" if m == fam.flagship else "tab:gray" for m in labels]
        bars = ax.bar(range(len(labels)), values, color=colors)
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(fam.title.split(" (")[0], fontsize=10)
        ax.set_ylabel(f"{fam.metric} ({'higher' if fam.higher_is_better else 'lower'} is better)", fontsize=8)
        ax.set_ylim(0, max(values) * 1.18 if values and max(values) > 0 else 1)
    fig.suptitle("cdrec demo on synthetic data (flagship in red)", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def section(family: FamilyResult, seconds: float) -> list[str]:
    """The Markdown lines of one family: title, data, table, verdict, time."""
    return [f"## {family.title}", "", family.data, "", family.table, verdict(family), "", f"_({seconds:.1f} s)_", ""]


def run_demo(out: Path, *, device: str = "auto") -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# cdrec demo on synthetic data", "", LEGEND, "", "![main metric per model](summary.png)", ""]
    families = []
    for module_name in DEMO_STEPS:
        t0 = time.perf_counter()
        family = importlib.import_module(module_name).demo(out, device)
        took = time.perf_counter() - t0
        families.append(family)
        step_lines = section(family, took)
        lines += step_lines
        print("\n".join(step_lines), flush=True)
    plot_families(families, out / "summary.png")
    path = out / "summary.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    print(f"wrote {path} and {out / 'summary.png'}")
    return path
