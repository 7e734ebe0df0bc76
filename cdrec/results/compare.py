"""Runs over several seeds and comparisons between runs, on top of :mod:`cdrec.results.tables`.

``cdrec run --seeds`` writes one run folder per seed and their aggregate (:func:`seed_summary`,
:func:`summary_markdown`); ``cdrec compare`` reads run folders or folders of seed runs
(:func:`read_runs`) and tests every run against the first one, paired by seed (:func:`compare`).
The means, standard deviations and t-tests are :func:`~cdrec.results.tables.aggregate_seeds` and
:func:`~cdrec.results.tables.paired_ttest`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from cdrec.errors import CdrecError, require
from cdrec.results.schema import RunResult
from cdrec.results.tables import _fmt, aggregate_seeds, markdown_table, mean_std, metric_names, paired_ttest, run_key


def read_run(run_dir: str | Path) -> RunResult:
    """The ``results.json`` of a finished run folder."""
    path = Path(run_dir) / "results.json"
    require(path.is_file(), f"{run_dir}: no results.json; expected a finished run folder or a folder of seed runs (seed0/, seed1/, ...)")
    try:
        return RunResult.read(path)
    except (ValueError, TypeError) as exc:
        raise CdrecError(f"{path}: not a cdrec results file ({type(exc).__name__})") from None


def read_runs(path: str | Path) -> list[RunResult]:
    """One run folder, or a folder whose sub-folders are runs of one config over several seeds
    (what ``cdrec run --seeds`` writes): their results, ordered by seed."""
    path = Path(path)
    require(path.is_dir(), f"{path}: not a run folder")
    if (path / "results.json").exists():
        return [read_run(path)]
    subs = sorted(p for p in path.iterdir() if p.is_dir() and (p / "results.json").exists())
    require(len(subs) > 0, f"{path}: no results.json in it or in its sub-folders; expected a finished run folder or a folder of seed runs")
    results = [read_run(p) for p in subs]
    keys = {(run_key(r), r.protocol) for r in results}
    require(len(keys) == 1, f"{path}: its runs are not one config over seeds (they differ in model, setting, dataset or protocol)")
    for sub, result in zip(subs[1:], results[1:]):
        changed = config_differences(results[0], result, sections=None)
        require(not changed, f"{path}: its runs are not one config over seeds: {sub.name} differs from {subs[0].name} in {', '.join(changed)}")
    seeds = [r.seed for r in results]
    require(len(set(seeds)) == len(seeds), f"{path}: two of its runs have the same seed ({sorted(seeds)})")
    return sorted(results, key=lambda r: r.seed)


def config_differences(a: RunResult, b: RunResult, sections: Sequence[str] | None) -> list[str]:
    """Dotted config keys where two runs differ, besides the seed and the keys a run may change on
    ``--resume`` (device, progress, logger); only ``sections`` (e.g. data and split) when given. Runs
    recorded without a config compare equal."""
    from cdrec.config import differing_keys, resume_view

    def view(result: RunResult) -> dict[str, Any]:
        config = resume_view({k: v for k, v in (result.config or {}).items() if k != "seed"})
        return config if sections is None else {k: config.get(k) for k in sections}

    return differing_keys(view(a), view(b)) if a.config and b.config else []


def _tested(results: Sequence[RunResult], where: str | Path) -> None:
    require(all(r.metrics for r in results), f"{where}: a run without test metrics (eval.test=false, e.g. a `cdrec tune` trial); "
            "score it with `cdrec evaluate` or compare finished runs")


def seed_summary(results: Sequence[RunResult], runs: dict[int, str]) -> dict[str, Any]:
    """``aggregate.json``: the runs' identity and, per domain and metric, mean, std (ddof=1) and the
    number of seeds; ``runs`` maps each seed to its folder (relative to the aggregate)."""
    (key, domains), = aggregate_seeds(results).items()
    first = results[0]
    return {
        "model": key[0], "dataset": first.dataset, "protocol": first.protocol, "setting": first.setting,
        "seeds": [r.seed for r in results], "runs": {str(s): d for s, d in runs.items()},
        "metrics": {dom: {m: {"mean": mean, "std": std, "n": n} for m, (mean, std, n) in vals.items()} for dom, vals in domains.items()},
    }


def summary_markdown(summary: dict[str, Any]) -> str:
    """``aggregate.md``: one row per domain, each metric as mean ± std over the seeds."""
    metrics = summary["metrics"]
    names = metric_names({d: dict.fromkeys(v) for d, v in metrics.items()})
    rows = [[dom, *(mean_std(_triple(vals.get(m))) for m in names)] for dom, vals in metrics.items()]
    seeds = ", ".join(map(str, summary["seeds"]))
    return (f"# {summary['model']} on {summary['dataset']} ({summary['protocol']}): mean ± std over seeds {seeds}\n\n"
            + markdown_table(["domain", *names], rows))


def _triple(value: dict[str, Any] | None) -> tuple[float, float, int] | None:
    return None if value is None else (value["mean"], value["std"], value["n"])


def compare(groups: dict[str, Sequence[RunResult]], *, domain: str = "overall", metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """Mean ± std of every run (a list of seeds) and a two-sided paired t-test of each against the first,
    the reference, paired by seed. Runs must share dataset and protocol; ``metrics`` default to those all
    of them report in ``domain``."""
    names = list(groups)
    require(len(names) >= 1, "compare: no runs given")
    for name, results in groups.items():
        _tested(results, name)
    reference = groups[names[0]][0]
    for name in names[1:]:
        other = groups[name][0]
        require((other.dataset, other.protocol) == (reference.dataset, reference.protocol),
                f"{name}: {other.dataset} ({other.protocol}) differs from the reference's {reference.dataset} ({reference.protocol}); "
                "compare runs of one dataset and protocol")
        changed = config_differences(reference, other, sections=("data", "split"))
        require(not changed, f"{name}: its data or split differ from the reference's ({', '.join(changed)}); a paired "
                "t-test needs the same test rows: compare runs of one data and split configuration")
    for name, results in groups.items():
        require(all(domain in r.metrics for r in results), f"--domain: {name} has no domain {domain!r}; it has {sorted(results[0].metrics)}")
    common = [m for m in metric_names({n: groups[n][0].metrics[domain] for n in names[:1]})
              if all(m in r.metrics[domain] for res in groups.values() for r in res)]
    for metric in metrics or []:
        require(metric in common, f"--metric: {metric!r} is not reported in {domain} by every run; expected one of {common}")
    chosen = list(metrics or common)
    rows = []
    for name in names:
        (_, stats), = aggregate_seeds(groups[name]).items()
        row: dict[str, Any] = {"run": name, "model": run_key(groups[name][0])[0], "seeds": [r.seed for r in groups[name]], "metrics": {}}
        for metric in chosen:
            mean, std, n = stats[domain][metric]
            t, p = paired_ttest(groups[names[0]], groups[name], domain, metric) if name != names[0] else (None, None)
            row["metrics"][metric] = {"mean": mean, "std": std, "n": n, "t": _finite(t), "p": _finite(p)}
        rows.append(row)
    return {"reference": names[0], "domain": domain, "dataset": reference.dataset, "protocol": reference.protocol,
            "test": "two-sided paired t-test against the reference, paired by seed", "runs": rows}


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def compare_markdown(table: dict[str, Any]) -> str:
    """The comparison as Markdown: one row per run, mean ± std and the p-value against the reference per metric."""
    metrics = list(table["runs"][0]["metrics"])
    header = ["run", "model", "seeds"] + [c for m in metrics for c in (m, f"p ({m})")]
    rows = []
    for i, row in enumerate(table["runs"]):
        label = f"{row['run']} (reference)" if i == 0 else row["run"]
        cells = [label, row["model"], ",".join(map(str, row["seeds"]))]
        for m in metrics:
            v = row["metrics"][m]
            cells += [mean_std((v["mean"], v["std"], v["n"])), "–" if i == 0 else _fmt(v["p"])]
        rows.append(cells)
    note = (f"{table['dataset']} ({table['protocol']}), domain {table['domain']}. p: {table['test']} "
            f"({table['reference']}); – where fewer than two seeds are shared.\n\n")
    return note + markdown_table(header, rows)
