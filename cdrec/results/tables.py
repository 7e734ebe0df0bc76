"""Markdown tables of results, seed aggregation (mean ± std) and paired t-tests."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from cdrec.results.schema import RunResult


def _fmt(value: float | int | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, (int, np.integer)):
        return str(value)
    return f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def metric_names(metrics: dict[str, dict[str, float]]) -> list[str]:
    names: list[str] = []
    for values in metrics.values():
        for name in values:
            if name != "n" and name not in names:
                names.append(name)
    return names


def result_markdown(result: RunResult) -> str:
    """One run as Markdown: a metrics table per domain and one per activity bucket."""
    metrics = result.metrics or result.valid_metrics
    names = metric_names(metrics)
    out = [f"# {result.model} on {result.dataset} (seed {result.seed}, {result.protocol})\n"]
    if result.setting:
        out.append("Setting: " + ", ".join(f"{k}={v}" for k, v in result.setting.items()) + "\n")
    if not result.metrics:
        out.append("The test split was not evaluated (eval.test=false); validation metrics:\n")
    rows = [[dom, _fmt(vals.get("n")), *(_fmt(vals.get(m)) for m in names)] for dom, vals in metrics.items()]
    out.append(markdown_table(["domain", "n", *names], rows))
    if result.buckets:
        out.append("\n## By training activity in the domain\n")
        brow = []
        for dom, buckets in result.buckets.items():
            for bucket, vals in buckets.items():
                brow.append([dom, bucket, _fmt(vals.get("n")), *(_fmt(vals.get(m)) for m in names)])
        out.append(markdown_table(["domain", "bucket", "n", *names], brow))
    if result.timing:
        out.append("\nTiming: " + ", ".join(f"{k}={v}" for k, v in result.timing.items()) + "\n")
    return "\n".join(out)


def run_key(result: RunResult) -> tuple[str, str]:
    """Model label including its setting (``uclr`` or ``merit[ablation=SF1]``) and the dataset."""
    label = result.model
    if result.setting:
        label += "[" + ",".join(f"{k}={v}" for k, v in sorted(result.setting.items())) + "]"
    return label, result.dataset


def aggregate_seeds(results: Sequence[RunResult]) -> dict[tuple[str, str], dict[str, dict[str, tuple[float, float, int]]]]:
    """``{(model label, dataset): {domain: {metric: (mean, std, n_seeds)}}}`` (std with ddof=1)."""
    grouped: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for res in results:
        for dom, vals in res.metrics.items():
            for metric, value in vals.items():
                if metric != "n":
                    grouped[run_key(res)][dom][metric].append(value)
    out: dict = {}
    for key, doms in grouped.items():
        out[key] = {
            dom: {m: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)) for m, v in metrics.items()}
            for dom, metrics in doms.items()
        }
    return out


def paired_ttest(results_a: Sequence[RunResult], results_b: Sequence[RunResult], domain: str, metric: str) -> tuple[float, float]:
    """Two-sided paired t-test of ``metric`` in ``domain`` between two models, paired by seed.

    Returns ``(t, p)``; NaN when fewer than two common seeds."""
    a = {r.seed: r.metrics[domain][metric] for r in results_a if domain in r.metrics}
    b = {r.seed: r.metrics[domain][metric] for r in results_b if domain in r.metrics}
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return float("nan"), float("nan")
    x = np.array([a[s] for s in seeds])
    y = np.array([b[s] for s in seeds])
    if np.allclose(x, y):
        return 0.0, 1.0
    from scipy import stats  # imported here: scipy.stats adds seconds to every CLI start

    res = stats.ttest_rel(x, y)
    return float(res.statistic), float(res.pvalue)


def mean_std(value: tuple[float, float, int] | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    mean, std, n = value
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"
