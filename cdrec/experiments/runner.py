"""The one run loop of every ``cdrec reproduce`` recipe.

A recipe is data: it lists its runs (:class:`PlannedRun`: a label, a run folder and the config,
which goes through :func:`cdrec.experiments.pipeline.run_config`, the ``cdrec run`` path) and how to
write its report from the run folders on disk. :func:`run_plan` runs the list:

* a run whose folder holds ``results.json`` is finished and kept as it is;
* a run that was started and not finished (its folder holds ``config.yaml``) continues from its last
  checkpoint (``checkpoint-*.pt``, written after every epoch by the Trainer) when it has one, as
  ``cdrec run --resume`` does, and ends with the metrics an uninterrupted run would have had; one
  without a checkpoint (killed in its first epoch, or an MTAL run: assistance rounds keep no
  checkpoints) is trained again from its start. A checkpoint written under another config (the recipe
  changed since) is not resumed: the run starts over and says so;
* one line per run: ``run k/N, <label>, elapsed, about ... left`` (the estimate is the mean time of the
  runs this invocation trained so far times the runs still to go);
* a run that raises is listed and the others go on; the report lists the failed runs and the
  command ends with :class:`~cdrec.errors.RunFailed` (exit code 1). Rerunning it retries them;
* Ctrl-C stops at once: it prints the run it interrupted and the command that continues it, and raises
  :class:`RecipeInterrupted` (the CLI exits with code 130).

The options a reproduction was started with are kept in ``reproduce.json`` beside its ``runs/``, so
``cdrec reproduce PAPER --report-only --out DIR`` rebuilds the same report from the same runs. A folder is
never reused under other options: :func:`run_plan` refuses, before writing anything, when ``reproduce.json``
records another paper, ``--quick`` or ``--seeds`` (:func:`check_recorded_options`), when a finished run
was trained with another config than the one planned for it (:func:`check_finished_runs`), or when a
finished run the plan does not list sits beside a planned one (:func:`check_unplanned_runs`), since the
reports, which read the run folders on disk, would otherwise mix those runs with the new ones.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from cdrec.config import RunConfig
from cdrec.errors import CdrecError, RunFailed, require
from cdrec.experiments.pipeline import config_changes, run_config
from cdrec.results.schema import atomic_write_text

OPTIONS_FILE = "reproduce.json"


class RecipeInterrupted(KeyboardInterrupt):
    """Ctrl-C during a recipe; the message names the interrupted run and the command that continues it."""


@dataclass(frozen=True)
class Invocation:
    """What ``cdrec reproduce`` was asked to do (the options every recipe's ``reproduce`` takes)."""

    paper: str
    out: Path
    data_dir: Path | None = None
    quick: bool = False
    seeds: int | None = None
    device: str = "auto"
    sections: tuple[str, ...] = ()
    """``--section`` values beyond the recipe's default plan (``cdrec reproduce merit --section switches``)."""

    def command(self, *, report_only: bool = False) -> str:
        """The ``cdrec reproduce`` command line that repeats this invocation (it skips finished runs)."""
        args = ["cdrec", "reproduce", self.paper, "--out", str(self.out)]
        args += ["--report-only"] if report_only else []
        args += ["--quick"] if self.quick else []
        args += ["--seeds", str(self.seeds)] if self.seeds is not None else []
        args += ["--data-dir", str(self.data_dir)] if self.data_dir is not None and not report_only else []
        args += ["--device", self.device] if self.device != "auto" and not report_only else []
        args += [a for section in self.sections for a in ("--section", section)] if not report_only else []
        return shlex.join(args)

    def save(self) -> None:
        """Record the options in ``out/reproduce.json`` (the report of ``--report-only`` reads them back)."""
        options = {"paper": self.paper, "quick": self.quick, "seeds": self.seeds, "device": self.device}
        if self.sections:
            options["sections"] = list(self.sections)
        atomic_write_text(Path(self.out) / OPTIONS_FILE, json.dumps(options, indent=2) + "\n")


def _read_recorded(out: Path) -> Invocation | None:
    """The options recorded in ``out/reproduce.json``; None when there is none."""
    path = Path(out) / OPTIONS_FILE
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
        return Invocation(saved["paper"], Path(out), quick=bool(saved["quick"]), seeds=saved["seeds"], device=saved["device"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CdrecError(f"{path}: not a cdrec reproduce.json ({type(exc).__name__}: {exc}); delete it and pass the options the runs were made with") from None


def recorded_invocation(paper: str, out: Path, *, quick: bool, seeds: int | None, device: str) -> Invocation:
    """The options of the reproduction in ``out`` for ``--report-only``: those recorded in
    ``reproduce.json`` (a flag that contradicts them is an error), else the flags given."""
    out = Path(out)
    require(any((out / "runs").glob("**/results.json")),
            f"--out {out}: holds no finished run (no runs/**/results.json); start with `cdrec reproduce {paper} --out {out}`")
    path = out / OPTIONS_FILE
    recorded = _read_recorded(out)
    if recorded is None:  # a reproduction from before options were recorded: the flags say how it ran
        return Invocation(paper, out, quick=quick, seeds=seeds, device=device)
    require(recorded.paper == paper, f"--out {out}: holds a `{recorded.paper}` reproduction ({path}), not `{paper}`")
    require(not quick or recorded.quick, f"--quick: the runs in {out} were made without --quick ({path})")
    require(seeds is None or seeds == recorded.seeds, f"--seeds {seeds}: the runs in {out} were made with --seeds {recorded.seeds} ({path})")
    return recorded


def check_recorded_options(invocation: Invocation) -> None:
    """Refuse to continue a reproduction in ``invocation.out`` that was started with another paper,
    ``--quick`` or ``--seeds`` (``--device`` and ``--section`` may change between invocations)."""
    recorded = _read_recorded(invocation.out)
    if recorded is None:
        return
    differ = [key for key in ("paper", "quick", "seeds") if getattr(recorded, key) != getattr(invocation, key)]
    require(not differ, f"--out {invocation.out}: holds a reproduction made with {_options(recorded, differ)} "
                        f"({Path(invocation.out) / OPTIONS_FILE}); this one asks for {_options(invocation, differ)}; "
                        "choose another --out (or remove that folder) to start one with these options")


def _options(invocation: Invocation, keys: Sequence[str]) -> str:
    """The options ``keys`` of ``invocation`` as the command line gives them."""
    words = {"paper": f"paper {invocation.paper}", "quick": "--quick" if invocation.quick else "no --quick",
             "seeds": "no --seeds" if invocation.seeds is None else f"--seeds {invocation.seeds}"}
    return ", ".join(words[key] for key in keys)


@dataclass(frozen=True)
class PlannedRun:
    """One run of a recipe's plan."""

    label: str
    """How progress lines and the failed-runs list name it, e.g. ``ml-100k/explicit/user/uniform/alone-mf/seed0``."""
    run_dir: Path
    config: RunConfig | Callable[[], RunConfig]
    """The config, or a function building it when the run starts (its mistakes are then that run's failure)."""
    prepare: Callable[[RunConfig], Any] | None = None
    """Optional ``task.prepare`` replacement (a recipe sharing one loaded data set and split between runs)."""

    @property
    def finished(self) -> bool:
        return (self.run_dir / "results.json").exists()

    def build_config(self) -> RunConfig:
        return self.config() if callable(self.config) else self.config


def check_finished_runs(invocation: Invocation, runs: Sequence[PlannedRun]) -> None:
    """Refuse to keep a finished run whose ``config.yaml`` differs from its planned config (outside
    :data:`~cdrec.experiments.pipeline.RESUME_FREE_KEYS`): it is not a run of this plan, and training it
    again would discard its results."""
    for run in runs:
        if run.finished and (run.run_dir / "config.yaml").exists():
            changed = config_changes(run.build_config(), run.run_dir)
            require(not changed, f"--out {invocation.out}: the finished run {run.label} ({run.run_dir}) was trained with another "
                                 f"config ({', '.join(changed)}); choose another --out (or remove that run's folder) to train it with this one")


def check_unplanned_runs(invocation: Invocation, runs: Sequence[PlannedRun]) -> None:
    """Refuse a finished run beside a planned one (in the same folder, e.g. a ``seed2`` next to the
    planned ``seed0`` and ``seed1``) that the plan does not list: the reports read every run there."""
    planned = {run.run_dir for run in runs}
    for folder in dict.fromkeys(run.run_dir.parent for run in runs):
        for results in sorted(folder.glob("*/results.json")):
            require(results.parent in planned, f"--out {invocation.out}: {results.parent} holds a finished run that this plan does not list "
                                               "(the report would include it); choose another --out (or remove that run's folder)")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _resume(cfg: RunConfig, run_dir: Path, say: Callable[[str], None]) -> bool:
    """Whether ``run_dir`` holds a checkpoint of this config to continue from."""
    if not ((run_dir / "config.yaml").exists() and any(run_dir.glob("checkpoint*.pt"))):
        return False
    changed = config_changes(cfg, run_dir)
    if changed:
        say(f"  its checkpoint was trained with another config ({', '.join(changed)}); starting it over")
    return not changed


def failed_section(failed: Sequence[str]) -> list[str]:
    """Report lines listing the runs that raised (empty when none did)."""
    if not failed:
        return []
    return [f"## Runs that failed ({len(failed)}; they are missing below, and rerunning the command retries them)", "",
            *[f"- `{f}`" for f in failed], ""]


def run_plan(invocation: Invocation, runs: Sequence[PlannedRun], report: Callable[[Sequence[str]], Path],
             *, say: Callable[[str], None] | None = None) -> Path:
    """Run every unfinished run of ``runs`` in order, then ``report(failed)``; returns the report's path.
    Raises :class:`CdrecError` before writing anything when ``invocation.out`` holds a reproduction made
    with other options, a finished run of another config or one beside the plan's; :class:`RunFailed`
    after the report when a run raised; :class:`RecipeInterrupted` on Ctrl-C."""
    say = say or (lambda line: print(line, flush=True))
    tag = f"[{invocation.paper}]"
    check_recorded_options(invocation)
    check_finished_runs(invocation, runs)
    check_unplanned_runs(invocation, runs)
    Path(invocation.out).mkdir(parents=True, exist_ok=True)
    invocation.save()
    todo = [k for k, run in enumerate(runs) if not run.finished]
    if len(todo) < len(runs):
        say(f"{tag} {len(runs) - len(todo)} of {len(runs)} runs already finished in {invocation.out} (kept)")
    failed: list[str] = []
    start = time.perf_counter()
    for done, k in enumerate(todo):
        run = runs[k]
        elapsed = time.perf_counter() - start
        left = f"about {_clock(elapsed / done * (len(todo) - done))} left" if done else "time left not known yet"
        say(f"{tag} run {k + 1}/{len(runs)}, {run.label}, elapsed {_clock(elapsed)}, {left}")
        try:
            cfg = run.build_config()
            resume = _resume(cfg, run.run_dir, say)
            if resume:
                say("  continuing it from its last checkpoint")
            run_config(cfg, run.run_dir, resume=resume, prepared=run.prepare(cfg) if run.prepare else None)
        except KeyboardInterrupt:
            message = (f"interrupted during run {k + 1}/{len(runs)}, {run.label} ({run.run_dir}); continue it with: {invocation.command()} "
                       f"(finished runs are kept; `{invocation.command(report_only=True)}` reports them now)")
            print(message, file=sys.stderr, flush=True)  # the CLI exits with code 130 (typer turns Ctrl-C into that exit)
            raise RecipeInterrupted(message) from None
        except Exception as exc:  # one failed run must not stop the others; the report lists it
            failed.append(f"{run.label}: {type(exc).__name__}: {' '.join(str(exc).split())}")
            say(f"{tag} run {k + 1}/{len(runs)} FAILED: {failed[-1]}")
    path = report(failed)
    if failed:
        raise RunFailed(f"{len(failed)} {invocation.paper} run(s) failed, listed in {path}; the first: {failed[0]}")
    return path


def coverage_section(out: Path, planned: Sequence[Path], continue_command: str, depth: int = 2) -> list[str]:
    """Report lines saying which of the plan's run folders ``planned`` hold a finished run: a one-line
    count when all do, else the count and, per group of runs (the folder above each run, cut to its
    first ``depth`` levels under ``runs/``, e.g. ``ml-1m/M3oE``), how many are finished and which are
    missing, with the command that trains them. A report made of part of its plan says so."""
    out = Path(out)
    groups: dict[str, list[Path]] = {}
    for path in planned:
        parts = path.relative_to(out / "runs").parts
        groups.setdefault("/".join(parts[:-1][:depth]), []).append(path)
    missing = [p for p in planned if not (p / "results.json").exists()]
    if not missing:
        return [f"_All {len(planned)} runs of the plan are finished and shown below._", ""]
    lines = [f"## Coverage: {len(planned) - len(missing)} of the {len(planned)} runs of the plan are finished", "",
             "Only finished runs are in the tables below; a cell of a run not yet trained is left out (or shown as –). "
             f"`{continue_command}` trains the missing ones (finished runs are kept). Per group of runs under `runs/`:", ""]
    for group, paths in groups.items():
        absent = [p for p in paths if p in missing]
        if not absent:
            continue
        names = [str(p.relative_to(out / "runs" / group)) for p in absent]
        which = f": missing {', '.join(names)}" if len(names) <= 4 else ""
        lines.append(f"- `{group}`: {len(paths) - len(absent)} of {len(paths)} finished{which}")
    return [*lines, ""]
