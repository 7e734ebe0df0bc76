"""The ``cdrec`` command line. User mistakes print ``error: <one line>`` and exit with code 2."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from cdrec.cli.experiment_cmds import register as register_experiment_commands, run_seeds
from cdrec.cli.federated import federated_app
from cdrec.cli.options import check_device
from cdrec.cli.out_dir import check_out_dir, interrupted_message
from cdrec.cli.serve_cmds import register as register_serve_commands
from cdrec.errors import CdrecError, RunFailed, require
from cdrec.experiments import RECIPES

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Multi-domain and cross-domain recommendation.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets.")
app.add_typer(data_app, name="data")
app.add_typer(federated_app, name="federated")  # MTAL on Flower (cdrec/cli/federated.py)
register_serve_commands(app)  # recommend, export, serve (cdrec/cli/serve_cmds.py)
register_experiment_commands(app)  # compare, tune; run --seeds (cdrec/cli/experiment_cmds.py)


# typer >= 0.2x ships its own copy of click, older typer re-exports click's: take the class from typer either way
ClickError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _overrides(device: str | None, sets: list[str] | None) -> list[str]:
    out = list(sets or [])
    if device is not None:
        out.append(f"train.device={device}")
    return out


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for the demo's runs and summary."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
) -> None:
    """Run every family on the built-in synthetic data (a few minutes on 2 CPU cores)."""
    from cdrec.experiments.demo import run_demo

    check_device(device)
    run_demo(out, device=device)


@data_app.command("stats")
def data_stats(
    dataset: str = typer.Argument(..., help="Dataset name (ml-100k, ml-1m, afk, abe, douban, mdmt-ml-1m, synthetic, ...), a path to a file, or a run config (.yaml) whose data section to load (own files with a column mapping)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder holding the shared datasets (default ../shared/data)."),
    domains: Optional[str] = typer.Option(None, "--domains", help="Domain builder: genre | genre-random | uniform-items:K | uniform-users:K | age-bins | age-edges:A,B"),
    sep: Optional[str] = typer.Option(None, "--sep", help="Delimiter of a table file (data.sep; '\\t' is tab). Default: tab for .tsv, else sniffed from the first lines."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a data key as for `cdrec run`: --set data.columns.user=customer (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Users, items and interactions overall and per domain."""
    from cdrec.config import load_config
    from cdrec.data.datasets import LOADERS, load_dataset

    other = [s for s in set_ or [] if not s.startswith("data.")]
    require(not other, f"--set {other[0] if other else ''}: data stats reads only data.* keys")
    path = Path(dataset)
    as_config = path.suffix in (".yaml", ".yml")
    cfg = load_config(path if as_config else None, list(set_ or [])).data
    if not as_config:
        cfg.name, cfg.path = dataset, None
        if dataset not in LOADERS and (path.exists() or path.suffix or len(path.parts) > 1):
            # a path (existing or not: the loader then names the missing file)
            cfg.name, cfg.path = ("recbole" if dataset.endswith(".inter") or path.is_dir() else "table"), dataset
    cfg.data_dir = str(data_dir) if data_dir else cfg.data_dir
    cfg.domains = domains or cfg.domains
    cfg.sep = sep if sep is not None else cfg.sep
    stats = load_dataset(cfg).stats()
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    typer.echo(f"{stats['name']}: {stats['users']} users, {stats['items']} items, {stats['interactions']} interactions, {len(stats['domains'])} domains")
    from cdrec.results.tables import markdown_table

    rows = [[d, s["users"], s["items"], s["interactions"]] for d, s in stats["domains"].items()]
    rows.append(["all (distinct)", stats["users"], stats["items"], stats["interactions"]])  # users and items shared by domains count once
    typer.echo(markdown_table(["domain", "users", "items", "interactions"], rows))


@app.command()
def run(
    config: Optional[Path] = typer.Argument(None, help="YAML config (see configs/ in the repository)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a key: --set train.lr=0.01 (repeatable)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/<model>-<dataset>-seed<seed>; <dataset> is the file's name for table / recbole data)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated seeds (0,1,2): one run per seed in OUT/seed<s>/, then OUT/aggregate.json and .md (mean ± std)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run directory's last checkpoint (after a kill or Ctrl-C)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished or unfinished run already in --out (without it, or --resume, such a folder is refused)."),
) -> None:
    """Train and evaluate one model; writes config.yaml, results.json and results.md.

    Progress goes to stderr: bars on a terminal, one plain line per epoch in a log or pipe; --set train.progress=false turns it off.

    Ctrl-C prints the epochs saved and the command that resumes (--resume).
    """
    from cdrec.config import load_config
    from cdrec.experiments.pipeline import run_config
    from cdrec.results.tables import result_markdown

    from cdrec.train import distributed as dist_

    check_device(device)
    cfg = load_config(config, _overrides(device, set_))
    dataset = Path(cfg.data.path).stem if cfg.data.path and cfg.data.name in ("table", "recbole") else cfg.data.name
    if seeds is not None:
        run_seeds(cfg, seeds, out or Path("runs") / f"{cfg.model}-{dataset}-seeds", resume=resume, overwrite=overwrite)
        return
    out = out or Path("runs") / f"{cfg.model}-{dataset}-seed{cfg.seed}"
    check_out_dir(out, resume=resume, overwrite=overwrite, epochs=cfg.train.epochs)
    ok = False
    try:
        result = run_config(cfg, out, resume=resume)  # joins the process group under torchrun
        if dist_.is_main():
            typer.echo(result_markdown(result))
            typer.echo(f"wrote {out / 'results.json'}")
        ok = True
    except KeyboardInterrupt:  # Ctrl-C: say what is saved and how to continue
        if dist_.is_main():
            typer.echo(interrupted_message(out, cfg.train.epochs, sys.argv[1:]), err=True)
        raise typer.Exit(code=130) from None
    finally:
        dist_.teardown(wait=ok)


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A run directory written by `cdrec run`."),
    part: str = typer.Option("test", "--part", help="valid | test"),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda"),
) -> None:
    """Re-evaluate a trained run from its saved model and print the table."""
    from cdrec.experiments.pipeline import evaluate_run
    from cdrec.results.tables import result_markdown

    check_device(device)
    typer.echo(result_markdown(evaluate_run(run_dir, part=part, device=device)))


@app.command()
def reproduce(
    paper: str = typer.Argument(..., help=f"The paper's recipe: {', '.join(sorted(RECIPES))}; `all` with --report-only rebuilds every report under --out/<paper> and the headline table."),
    out: Path = typer.Option(..., "--out", help="Folder for report.md and runs/."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder holding the shared datasets (default ../shared/data)."),
    quick: bool = typer.Option(False, "--quick", help="Reduced run (few epochs, one seed) for smoke tests."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Number of seeds (default: the recipe's)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    section: Optional[List[str]] = typer.Option(None, "--section", help="Run this section of the recipe instead of its default plan (repeatable; merit: main, switches; mtal: main, privacy; uclr: main, classics, choices)."),
    report_only: bool = typer.Option(False, "--report-only", help="Rebuild report.md (tables, plots) from the runs already in --out; trains nothing (the options the runs were made with are read from --out/reproduce.json)."),
    readme: Optional[Path] = typer.Option(None, "--readme", help="With `all`: also write the headline table between the markers of this README."),
) -> None:
    """Rerun a paper's main experiments on real data and write a report beside the paper's numbers.

    Finished runs in --out are kept; an interrupted run continues from its last checkpoint."""
    if paper == "all":
        return _report_all(out, report_only=report_only, readme=readme, flags_given=bool(quick or seeds or section or data_dir or device != "auto"))
    if readme is not None:
        fail("--readme: only `cdrec reproduce all --report-only` writes the headline table; leave it out")
    if paper not in RECIPES:
        fail(f"unknown paper {paper!r}; expected one of {sorted(RECIPES)}")
    if seeds is not None and seeds < 1:
        fail(f"--seeds: expected >= 1, got {seeds}")
    check_device(device)
    module = importlib.import_module(RECIPES[paper])
    sections = getattr(module, "SECTIONS", {})
    if section and (report_only or not sections):
        fail(f"--section: {'--report-only reports every section whose runs are in --out' if report_only else f'the {paper} recipe has no sections'}; leave it out")
    for name in section or []:
        if name not in sections:
            fail(f"--section: expected one of {sorted(sections)} for {paper}, got {name!r}")
    if report_only:
        from cdrec.experiments.runner import recorded_invocation

        if data_dir is not None or device != "auto":
            fail(f"{'--data-dir' if data_dir is not None else '--device'}: --report-only trains nothing (it reads the runs in --out); leave it out")
        ran = recorded_invocation(paper, out, quick=quick, seeds=seeds, device=device)
        report = module.report(out, quick=ran.quick, seeds=ran.seeds, device=ran.device)
    else:
        report = module.reproduce(out, data_dir=data_dir, quick=quick, seeds=seeds, device=device, **({"sections": section} if section else {}))
    typer.echo(f"wrote {report}")


def _report_all(root: Path, *, report_only: bool, readme: Optional[Path], flags_given: bool) -> None:
    """``cdrec reproduce all --report-only --out ROOT``: every paper's report in ``ROOT/<paper>`` that holds
    finished runs, then ``ROOT/headline.md`` (and the README's headline block with ``--readme``)."""
    import os

    from cdrec.experiments.headline import PAPERS, headline_markdown, update_readme
    from cdrec.experiments.runner import recorded_invocation
    from cdrec.results.schema import atomic_write_text

    if not report_only:
        fail("all: only with --report-only (it rebuilds the reports under --out/<paper>; train one paper at a time)")
    if flags_given:
        fail("all --report-only: every paper's options are read from its reproduce.json; pass only --out (and --readme)")
    if not root.is_dir():
        fail(f"--out {root}: not a folder (expected one holding <paper>/ reproductions, e.g. docs/reproductions)")
    found = [paper for paper in PAPERS if any((root / paper / "runs").glob("**/results.json"))]
    if not found:
        fail(f"--out {root}: no <paper>/runs/**/results.json under it (papers: {', '.join(PAPERS)})")
    for paper in found:
        ran = recorded_invocation(paper, root / paper, quick=False, seeds=None, device="auto")
        typer.echo(f"wrote {importlib.import_module(RECIPES[paper]).report(root / paper, quick=ran.quick, seeds=ran.seeds, device=ran.device)}")
    link_base = Path(os.path.relpath(root, readme.parent if readme is not None else root)).as_posix()
    table = headline_markdown(root, link_base)
    atomic_write_text(root / "headline.md", table)
    typer.echo(f"wrote {root / 'headline.md'}")
    if readme is not None:
        update_readme(readme, table)
        typer.echo(f"wrote the headline table into {readme}")


def main() -> None:
    try:
        code = app(standalone_mode=False, prog_name="cdrec")
    except CdrecError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except RunFailed as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except ClickError as exc:  # usage mistakes: unknown option, a value of the wrong type, a missing argument
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        typer.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
