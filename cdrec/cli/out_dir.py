"""What ``cdrec run`` may do with its ``--out`` folder, and what it says when Ctrl-C stops it.

A folder with ``results.json`` holds a finished run; one with checkpoints and no ``results.json`` an
unfinished one (killed or interrupted). A plain rerun into either is refused, so a repeated command
never throws away earlier work: ``--resume`` continues an unfinished run, ``--overwrite`` starts over.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from cdrec.errors import CdrecError, require


def saved_epochs(out: Path) -> list[tuple[str, int, int | None, bool]]:
    """``(scope, finished epochs, the scope's epochs, finished)`` of each checkpoint in ``out``, the
    most recently written last. A scope is a run's scope or a stage of a multi-stage model (UCLR's
    ``pge``, CAT-ART's ``mf``, ...); checkpoints written before the Trainer recorded its length and
    whether it finished give ``None`` and ``False`` there."""
    import torch

    found = []
    for path in sorted(out.glob("checkpoint-*.pt"), key=lambda p: p.stat().st_mtime):
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
            epoch = int(state["epoch"])
        except Exception:  # a foreign or damaged file: resuming reports it; here it is only not counted
            continue
        found.append((path.stem.removeprefix("checkpoint-"), epoch, state.get("epochs"), bool(state.get("finished", False))))
    return found


def _holds(out: Path, epochs: int) -> str:
    """``stage mf (finished, checkpoint-mf.pt), epoch 1/2 (checkpoint-cat.pt)``, one entry per
    checkpoint (``epochs`` where a checkpoint does not record its own)."""
    return ", ".join(
        f"stage {scope} (finished, checkpoint-{scope}.pt)" if finished else f"epoch {epoch}/{total or epochs} (checkpoint-{scope}.pt)"
        for scope, epoch, total, finished in saved_epochs(out)
    )


def check_out_dir(out: Path, *, resume: bool, overwrite: bool, epochs: int) -> None:
    """Refuse a plain rerun into a folder holding a finished or an unfinished run (one ``error:`` line
    naming ``--resume`` / ``--overwrite``), and ``--resume`` of a finished run."""
    finished = (out / "results.json").exists()
    require(
        overwrite or not finished,
        f"--resume: {out} holds a finished run, so there is nothing to resume; pass --overwrite to train it again" if resume
        else f"--out {out}: holds a finished run; pass --overwrite to replace it, or choose another --out",
    )
    if resume or overwrite or finished or not any(out.glob("checkpoint-*.pt")):
        return
    raise CdrecError(f"--out {out}: holds an unfinished run ({_holds(out, epochs) or 'checkpoints'}); "
                     "pass --resume to continue it, or --overwrite to start it over")


def resume_command(argv: list[str], out: Path) -> str:
    """The ``cdrec run`` command line ``argv`` (without the program name) that continues its run in ``out``."""
    args = [a for a in argv if a != "--overwrite"]
    if not any(a == "--out" or a.startswith("--out=") for a in args):
        args += ["--out", str(out)]
    if "--resume" not in args:
        args.append("--resume")
    return shlex.join(["cdrec", *args])


def interrupted_message(out: Path, epochs: int, argv: list[str]) -> str:
    """Two lines for Ctrl-C: the epochs the checkpoints hold, and the exact command that resumes."""
    holds = _holds(out, epochs) if out.is_dir() else ""
    if not holds:
        start = shlex.join(["cdrec", *(a for a in argv if a not in ("--overwrite", "--resume"))])
        return f"interrupted before a checkpoint was written: {out} holds no finished epoch\nstart again with: {start}"
    return f"interrupted: {out} holds {holds}\nresume with: {resume_command(argv, out)}"
