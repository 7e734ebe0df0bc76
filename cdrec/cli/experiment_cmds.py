"""Experiments over several runs: ``cdrec run --seeds``, ``cdrec compare`` and ``cdrec tune``.

Kept apart from :mod:`cdrec.cli.main` (which calls :func:`register`, and hands ``run --seeds`` to
:func:`run_seeds`) so the commands merge cleanly. The numbers come from :mod:`cdrec.results`
(seed aggregation, paired t-tests, tables) and :mod:`cdrec.experiments.tune`. Bad input raises
:class:`~cdrec.errors.CdrecError`: one line on stderr, exit code 2, and nothing written.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import List, Optional

import typer

from cdrec.cli.options import check_device
from cdrec.cli.out_dir import check_out_dir, resume_command
from cdrec.config import RunConfig
from cdrec.errors import require


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; distinct seeds in the config's range."""
    parts = [p.strip() for p in text.split(",")]
    require(all(p.isdigit() for p in parts), f"--seeds: expected comma-separated seeds such as 0,1,2, got {text!r}")
    seeds = [int(p) for p in parts]
    require(len(set(seeds)) == len(seeds), f"--seeds: a seed is repeated in {text!r}")
    require(all(s < 2**32 for s in seeds), f"--seeds: expected seeds in [0, 4294967295], got {text!r}")
    return seeds


def run_seeds(cfg: RunConfig, seeds_text: str, out: Path, *, resume: bool, overwrite: bool) -> None:
    """``cdrec run CONFIG --seeds 0,1,2 --out OUT``: one normal run per seed in ``OUT/seed<s>/``, then
    ``OUT/aggregate.json`` and ``OUT/aggregate.md`` (mean ± std per domain and metric). With ``--resume``
    finished seeds are kept and the others continue from their checkpoints."""
    from cdrec.experiments.pipeline import config_changes, run_config
    from cdrec.results.compare import read_run, seed_summary, summary_markdown
    from cdrec.results.schema import atomic_write_text, strict_json
    from cdrec.train import distributed as dist_

    seeds = parse_seeds(seeds_text)
    require(not out.is_file(), f"--out {out}: is a file, expected a directory")
    folders = {s: out / f"seed{s}" for s in seeds}
    finished = [d for d in folders.values() if (d / "results.json").exists()]
    require(not finished or overwrite or resume,
            f"--out {out}: {finished[0] if finished else ''} holds a finished run; pass --overwrite to replace the runs, "
            "--resume to keep the finished seeds and continue the others, or choose another --out")
    for seed, folder in folders.items():  # an interrupted seed is never restarted silently, a kept one never mixes configs
        if folder not in finished:
            check_out_dir(folder, resume=resume, overwrite=overwrite, epochs=cfg.train.epochs)
        elif resume and not overwrite:
            changed = config_changes(dataclasses.replace(cfg, seed=seed), folder)
            require(not changed, f"--resume: {folder} holds a finished run of another config ({', '.join(changed)}); "
                    "its seeds would not aggregate: pass --overwrite to replace the runs, or choose another --out")
    ok = False
    try:
        results = []
        for seed, folder in folders.items():
            if resume and not overwrite and folder in finished:
                results.append(read_run(folder))
                continue
            keep = resume and (folder / "config.yaml").exists()
            results.append(run_config(dataclasses.replace(cfg, seed=seed), folder, resume=keep))
            if dist_.is_main():
                typer.echo(f"seed {seed}: wrote {folder / 'results.json'}")
        if dist_.is_main():
            summary = seed_summary(results, {s: d.name for s, d in folders.items()})
            atomic_write_text(out / "aggregate.json", strict_json(summary) + "\n")
            atomic_write_text(out / "aggregate.md", summary_markdown(summary))
            typer.echo(summary_markdown(summary))
            typer.echo(f"wrote {out / 'aggregate.json'}")
        ok = True
    except KeyboardInterrupt:  # Ctrl-C: the finished seeds stay; say how to continue the rest
        if dist_.is_main():
            typer.echo(f"interrupted: {out} keeps its finished seeds\nresume with: {resume_command(sys.argv[1:], out)}", err=True)
        raise typer.Exit(code=130) from None
    finally:
        dist_.teardown(wait=ok)


def compare(
    runs: List[Path] = typer.Argument(..., help="Run folders, or folders of seed runs (what `cdrec run --seeds` writes); the first is the reference."),
    domain: str = typer.Option("overall", "--domain", help="Which domain's metrics (overall, or a domain name)."),
    metric: Optional[List[str]] = typer.Option(None, "--metric", help="Only this metric (repeatable; default: every metric all runs report)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Mean ± std of every run over its seeds, and a paired t-test (by seed) of each against the first run."""
    from cdrec.results.compare import compare as compare_runs
    from cdrec.results.compare import compare_markdown, read_runs
    from cdrec.results.schema import strict_json

    require(len(set(map(str, runs))) == len(runs), "compare: a run is given twice")
    table = compare_runs({str(r): read_runs(r) for r in runs}, domain=domain, metrics=metric)
    typer.echo(strict_json(table) if as_json else compare_markdown(table))


def tune(
    config: Optional[Path] = typer.Argument(None, help="YAML config to start from (its train.metric is what trials are selected on)."),
    space: Path = typer.Option(..., "--space", help="YAML search space: config keys -> {type: float|int|categorical, low, high, log, step, choices}."),
    trials: int = typer.Option(..., "--trials", help="Completed trials the study should hold (a rerun continues up to it)."),
    out: Path = typer.Option(..., "--out", help="Folder for study.db, trials/, best.yaml and trials.md."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a key of CONFIG: --set train.epochs=20 (repeatable)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda"),
) -> None:
    """Hyperparameter search (Optuna TPE, seeded by the config's seed) selected on validation; the test split is scored for the best trial only."""
    from cdrec.config import load_config
    from cdrec.experiments.tune import tune as run_tune

    check_device(device)
    cfg = load_config(config, [*(set_ or []), *([f"train.device={device}"] if device else [])])
    outcome = run_tune(cfg, space, trials, out, echo=typer.echo)
    typer.echo(outcome.table.read_text())
    typer.echo(f"wrote {outcome.best_config} and {outcome.table}")


def register(app: typer.Typer) -> None:
    """Add the commands to the ``cdrec`` app."""
    app.command()(compare)
    app.command()(tune)
