"""Run the ``cdrec`` command line in this process (fast) the way ``python -m cdrec`` runs it."""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass


@dataclass
class CliOutcome:
    code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None


def call_main(*args: str) -> CliOutcome:
    """``cdrec.cli.main.main()`` with ``sys.argv = ["cdrec", *args]``; any exception other than
    ``SystemExit`` is caught and returned (a traceback the user would have seen)."""
    from cdrec.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["cdrec", *args]
    code, exc = 0, None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException as error:  # noqa: BLE001  (reported by the caller as a traceback)
        code, exc = 1, error
    finally:
        sys.argv = argv
    return CliOutcome(code, out.getvalue(), err.getvalue(), exc)


def cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``main()`` with ``sys.argv`` patched and output captured by pytest: (exit code, stdout, stderr)."""
    from cdrec.cli.main import main

    monkeypatch.setattr(sys, "argv", ["cdrec", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
