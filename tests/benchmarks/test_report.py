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


def test_ctr_throughput_lands_in_the_summary_with_ratios_against_shared_bottom(tmp_path) -> None:
    from benchmarks.bench_ctr import MODELS, run

    record = run(batch=64, steps=1, devices=["cpu"])
    assert [r["model"] for r in record["rows"]] == MODELS and record["rows"][0]["x_sharedbottom"] == 1.0
    assert all(r["samples_per_s"] > 0 for r in record["rows"])
    (tmp_path / "ctr_throughput.json").write_text(json.dumps(record))
    text = write_summary(tmp_path).read_text()
    m3oe = next(r for r in record["rows"] if r["model"] == "m3oe")
    assert f"| cpu | m3oe | {m3oe['samples_per_s']:,} | {m3oe['x_sharedbottom']:.2f} |" in text


def test_gpu_check_record_is_summarised(tmp_path) -> None:
    check = {"date": "2026-12-04", "machine": {"torch": "2.11", "cpu_count": 16, "threads_per_process": 16, "gpu": "H200"}, "command": "pytest tests/train/test_cuda.py",
             "tests_passed": 28, "tests_total": 28, "seconds": 38.5, "max_abs_metric_diff_cpu_vs_cuda": {"bprmf": 0.0, "uclr": 0.0018},
             "full_suite_on_gpu": {"passed": 470, "skipped": 12, "failed_or_error": 0, "why": "none", "real_data": "absent"}, "demo_cuda_s": 18}
    (tmp_path / "gpu_check.json").write_text(json.dumps(check))
    text = write_summary(tmp_path).read_text()
    assert "28 of 28 passed" in text and "within 0.0018 of the same run on the CPU" in text and "(largest: uclr)" in text
