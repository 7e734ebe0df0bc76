"""Faults: a run killed with SIGKILL mid-training resumes from its last checkpoint and ends exactly
like an uninterrupted run; two runs with one config and seed give bit-identical results on CPU."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.cli_helpers import call_main
from tests.train._runs import REPO, cdrec_cmd, cli_env, results, run_cli, tiny_config

EPOCHS = 40
COMPARED = ("metrics", "valid_metrics", "buckets")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One config; two uninterrupted runs in separate processes."""
    base = tmp_path_factory.mktemp("faults")
    cfg = tiny_config(base / "cfg.yaml", epochs=EPOCHS)
    for name in ("a", "b"):
        proc = run_cli("run", str(cfg), "--out", str(base / name))
        assert proc.returncode == 0, proc.stderr[-2000:]
    return base, cfg


def _epochs(result: dict) -> list[dict]:
    return result["history"][0]["epochs"]


@pytest.mark.slow
def test_same_config_and_seed_give_bit_identical_results(runs):
    base, _ = runs
    a, b = results(base / "a"), results(base / "b")
    for key in COMPARED:
        assert a[key] == b[key], key  # exact equality of every float, not approx
    assert _epochs(a) == _epochs(b)
    assert len(_epochs(a)) == EPOCHS


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(runs):
    base, cfg = runs
    out = base / "killed"
    ckpt = out / "checkpoint-joint.pt"
    proc = subprocess.Popen(cdrec_cmd("run", str(cfg), "--out", str(out)), env=cli_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert ckpt.exists(), "no checkpoint appeared"
    proc.send_signal(signal.SIGKILL)  # a real kill: no handler, no cleanup
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "results.json").exists(), "the run finished before it was killed"
    done = torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"]
    assert EPOCHS > done >= 1

    resumed = run_cli("run", str(cfg), "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    got, want = results(out), results(base / "a")
    assert got["history"][0]["resumed_from"] == done  # continued from the last checkpoint, did not start over
    for key in COMPARED:
        assert got[key] == want[key], key
    assert _epochs(got) == _epochs(want)
    assert not ckpt.exists()  # removed once the run finished
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind


def test_resume_refuses_a_different_config(runs, tmp_path):
    base, cfg = runs
    unfinished = tmp_path / "a"  # run a's folder as an interruption leaves it: config.yaml, no results
    shutil.copytree(base / "a", unfinished)
    for name in ("results.json", "results.md", "model.pt"):
        (unfinished / name).unlink(missing_ok=True)
    before = sorted(p.name for p in unfinished.iterdir())
    got = call_main("run", str(cfg), "--out", str(unfinished), "--resume", "--set", "train.lr=0.5")
    assert got.code == 2 and got.exception is None
    assert got.stderr.count("\n") == 1 and "config differs" in got.stderr and "(train.lr)" in got.stderr
    assert sorted(p.name for p in unfinished.iterdir()) == before
    assert Path(unfinished / "config.yaml").read_text().count("lr: 0.01") == 1
