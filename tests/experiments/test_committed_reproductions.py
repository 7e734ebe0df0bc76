"""The committed reproductions under docs/reproductions/<paper>/ (issue #31).

* ``cdrec reproduce <paper> --report-only`` on a copy of the committed runs rebuilds the committed
  ``report.md`` byte for byte, so a report edited by hand or left stale by a recipe change fails;
* the README's headline table is the one the committed runs give;
* the cheapest committed run of each paper, rerun from its ``config.yaml`` with ``cdrec run`` (one
  thread, as the reproductions ran), gives its committed metrics.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cdrec.experiments.headline import BEGIN, END, PAPERS, headline_markdown
from cdrec.models import registry
from tests.conftest import REPO, SHARED_DATA

ROOT = REPO / "docs" / "reproductions"
COMMITTED = [paper for paper in PAPERS if any((ROOT / paper / "runs").glob("**/results.json"))]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""The reproductions were trained with one thread per run; another thread count may sum in another order."""


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cdrec", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=900)


def test_every_paper_has_a_committed_reproduction():
    assert COMMITTED == list(PAPERS), f"papers without committed runs under {ROOT}: {sorted(set(PAPERS) - set(COMMITTED))}"


@pytest.mark.parametrize("paper", COMMITTED)
def test_report_only_rebuilds_the_committed_report_byte_for_byte(paper, tmp_path):
    copy = tmp_path / paper
    shutil.copytree(ROOT / paper, copy)
    (copy / "report.md").unlink()
    done = _cli("reproduce", paper, "--report-only", "--out", str(copy), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (copy / "report.md").read_text() == (ROOT / paper / "report.md").read_text(), (
        f"docs/reproductions/{paper}/report.md is not what its runs give; rebuild it with `make reports`")


def test_readme_headline_table_is_the_one_the_committed_runs_give():
    readme = (REPO / "README.md").read_text()
    assert BEGIN in readme and END in readme
    written = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")
    assert written == headline_markdown(ROOT, "docs/reproductions").strip("\n"), "README's headline table is stale; run `make reports`"


TRAINED_S = 1.0
"""The rerun check takes a run of a model with something to optimise (not Pop or ItemKNN, ``optimised = False``)
whose recorded training took at least this long (the item-mean base fits in less), so it covers a seeded training."""


def _trains(result: dict) -> bool:
    return getattr(registry.get(result["config"]["model"]).cls, "optimised", True) and result.get("timing", {}).get("train_s", 0.0) >= TRAINED_S


def _cheapest_run(paper: str) -> Path:
    """The committed run of ``paper`` with test metrics that trained a model (:data:`TRAINED_S`) in the least recorded
    time (ties: the first by path); a run of validation only (``eval.test=false``, e.g. `cdrec reproduce uclr --section
    choices`) has no test metrics to compare."""
    runs = [json.loads(p.read_text()) | {"path": p} for p in sorted((ROOT / paper / "runs").glob("**/results.json"))]
    trained = [r for r in runs if r["metrics"] and _trains(r)]
    return min(trained, key=lambda r: (r["timing"]["train_s"], str(r["path"])))["path"].parent


@pytest.mark.parametrize("paper", COMMITTED)
def test_a_committed_run_reruns_to_its_metrics(paper, tmp_path):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} is absent (needs ../shared/data beside the repo)")
    run = _cheapest_run(paper)
    done = _cli("run", str(run / "config.yaml"), "--out", str(tmp_path / "rerun"), cwd=REPO, env={**ONE_THREAD, "CDREC_DATA_DIR": str(SHARED_DATA)})
    assert done.returncode == 0, done.stderr
    committed = json.loads((run / "results.json").read_text())["metrics"]
    rerun = json.loads((tmp_path / "rerun" / "results.json").read_text())["metrics"]
    assert rerun.keys() == committed.keys()
    for domain, values in committed.items():
        assert rerun[domain] == pytest.approx(values, rel=1e-9, abs=1e-12), f"{run.relative_to(REPO)}: {domain} metrics differ on a rerun"
