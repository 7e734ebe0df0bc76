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


def test_mtal_scaling_child_times_each_round(tmp_path) -> None:
    from benchmarks.scaling import child_generate, child_train

    path = tmp_path / "table.npz"
    gen = child_generate({"n_users": 300, "path": str(path)})
    out = child_train({"model": "AAE-MTAL", "path": str(path), "epochs": 2, "threads": 1})
    assert out["organizations"] == 3 and 0 < out["train_entries"] < gen["interactions"]
    assert len(out["epoch_cpu_s"]) == 2 and all(0 < f <= e for f, e in zip(out["fit_cpu_s"], out["epoch_cpu_s"]))
    assert all(np.isfinite(out["test_rmse_by_round"]))


def test_summary_states_a_missed_scaling_target(tmp_path) -> None:
    runs = [{"interactions": n, "epoch_median_s": t, "epoch_cpu_median_s": t, "peak_rss_mb": m} for n, t, m in ((10**5, 1.0, 400.0), (10**6, 14.0, 500.0))]
    sc = {"items_per_domain": 400, "epochs": 2, "machine": {"threads_per_process": 1, "load_average_at_start": [0, 0, 0]}, "empty_process_rss_mb": 300,
          "tables": {"100000": {"interactions": 10**5, "users": 10}, "1000000": {"interactions": 10**6, "users": 100}},
          "models": {"BPR-MF": {"runs": runs, "exponent": {"time_cpu": 1.15, "time_wall": 1.15, "memory_total": 0.1, "memory_above_empty": 0.3, "target_max": 1.1}}}}
    (tmp_path / "scaling.json").write_text(json.dumps(sc))
    text = write_summary(tmp_path).read_text()
    assert "time cpu exponent 1.15 misses the target 1.1 by 0.05" in text.lower()
    assert "| BPR-MF | 100,000 - 1,000,000 (10x) | 1.15 | **no** (+0.05)" in text
