"""Every malformed input of the corpus, through the command line: exit code 2, one line
``error: <message naming the problem>``, no traceback, no output files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bad_inputs.corpus import CASES, DIR, Case, base_rows, csv_text, run_config
from tests.cli_helpers import call_main

REPO = Path(__file__).resolve().parents[2]


def materialise(case: Case, root: Path) -> list[str]:
    for rel, content in case.files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is DIR:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(str(content).replace("{d}", str(root)), encoding="utf-8")
    if case.setup is not None:
        case.setup(root)
    return [a.replace("{d}", str(root)) for a in case.argv]


def snapshot(root: Path) -> dict[str, int]:
    """Every path under ``root`` (hidden temporary files included) with its size."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1) for p in sorted(root.rglob("*"))}


def check_outcome(case: Case, code: int, stdout: str, stderr: str) -> None:
    assert code == 2, f"{case.name}: exit {code}\n{stderr[-2000:]}"
    assert "Traceback" not in stderr and "Traceback" not in stdout
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{case.name}: {stderr!r}"
    assert case.expect.lower() in lines[0].lower(), f"{case.name}: {lines[0]!r} lacks {case.expect!r}"
    assert stdout == ""


def test_corpus_is_large_and_distinct():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


def test_base_table_is_valid(tmp_path):
    """The cases differ from a config and table that do run: each failure is its own defect's."""
    (tmp_path / "data.csv").write_text(csv_text(base_rows()))
    (tmp_path / "cfg.yaml").write_text(run_config().replace("{d}", str(tmp_path)))
    got = call_main("run", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "out"))
    assert got.code == 0 and got.exception is None, got.stderr
    assert (tmp_path / "out" / "results.json").exists()


def test_unicode_and_inner_space_ids_are_valid(tmp_path):
    """The other side of the id rule: Unicode ids and ids with inner spaces load as distinct ids."""
    rows = base_rows()
    for r in rows:
        r[0] = {"u0": "Zoë Ångström", "u1": "用户 1", "u2": "u 2"}.get(r[0], r[0])
    (tmp_path / "ids.csv").write_text(csv_text(rows), encoding="utf-8")
    got = call_main("data", "stats", str(tmp_path / "ids.csv"), "--json")
    assert got.code == 0 and got.exception is None, got.stderr
    assert '"users": 8' in got.stdout


@pytest.mark.parametrize("case", [c for c in CASES if not c.as_other_user], ids=lambda c: c.name)
def test_bad_input_gives_exit_2_and_one_line(case, tmp_path, monkeypatch):
    for key, value in case.env.items():
        if value:
            monkeypatch.setenv(key, value)
        else:
            monkeypatch.delenv(key, raising=False)
    argv = materialise(case, tmp_path)
    before = snapshot(tmp_path)
    got = call_main(*argv)
    if got.exception is not None:
        raise AssertionError(f"{case.name}: uncaught {type(got.exception).__name__}: {got.exception}") from got.exception
    check_outcome(case, got.code, got.stdout, got.stderr)
    assert snapshot(tmp_path) == before, f"{case.name}: wrote or changed files"


DROP_DAC = ["--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


@pytest.mark.parametrize("case", [c for c in CASES if c.as_other_user], ids=lambda c: c.name)
def test_unreadable_file(case, tmp_path):
    """``chmod 0`` only stops a reader without CAP_DAC_OVERRIDE, and root has it (root reads anything).
    So under root the case runs in a subprocess started by ``setpriv`` with CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH dropped: still uid 0, but file permission bits now apply to it. Skipped
    when running as root without ``setpriv``."""
    argv = materialise(case, tmp_path)
    before = snapshot(tmp_path)
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot drop CAP_DAC_OVERRIDE, so root reads the chmod-0 file")
        prefix = [setpriv, *DROP_DAC]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*prefix, sys.executable, "-m", "cdrec", *argv], env=env, capture_output=True, text=True, timeout=120)
    check_outcome(case, proc.returncode, proc.stdout, proc.stderr)
    assert snapshot(tmp_path) == before


def test_real_subprocess(tmp_path):
    """One case through ``python -m cdrec`` itself (the in-process runner mirrors it; the permission
    case above is a real subprocess too)."""
    case = next(c for c in CASES if c.name == "wrong_delimiter_semicolon")
    argv = materialise(case, tmp_path)
    before = snapshot(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "cdrec", *argv], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    check_outcome(case, proc.returncode, proc.stdout, proc.stderr)
    assert snapshot(tmp_path) == before
