"""Benchmark helpers that need no timing: the log-log fit and the summary writer."""

from __future__ import annotations

import json

import numpy as np

from benchmarks.report import write_summary
from benchmarks.scaling import fit_exponent


def test_fit_exponent_recovers_a_power_law() -> None:
    x = [1e5, 1e6, 1e7]
    assert np.isclose(fit_exponent(x, [3 * v**1.0 for v in x]), 1.0)
    assert np.isclose(fit_exponent(x, [v**1.5 for v in x]), 1.5)


def test_summary_lists_missing_benchmarks(tmp_path) -> None:
    (tmp_path / "gpu.json").write_text(json.dumps({"skipped": "no CUDA GPU available on this machine"}))
    text = write_summary(tmp_path).read_text()
    assert "Not run (no peer.json)" in text and "no CUDA GPU" in text
