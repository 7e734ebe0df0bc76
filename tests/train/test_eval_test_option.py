"""``eval.test=false`` (what ``cdrec tune``'s trials run with): every task validates but never scores the test
split, and ``cdrec evaluate`` can score it afterwards; MTAL, which scores the test entries during its rounds, refuses it."""

from __future__ import annotations

import pytest

from cdrec.config import load_config
from cdrec.errors import CdrecError
from cdrec.experiments.pipeline import evaluate_run, run_config
from cdrec.train.ctr import CTRTask

CASES = {
    "ranking-single": ["model=bprmf", "scope=single", "model_params.dim=8", "split.n_negatives=20"],
    "sequential-st": ["model=sasrec-st", "data.synthetic={n_users: 120, n_domains: 2, items_per_domain: 200}", "split.n_negatives=15",
                      "model_params.dim=16"],
    "ctr": ["model=mlp", "split.protocol=ratio", "train.metric=AUC", "train.batch_size=512", "train.max_batches=5"],
}
COMMON = ["data.name=synthetic", "data.synthetic={n_users: 200, items_per_domain: 100}", "train.epochs=1", "train.progress=false", "train.device=cpu"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_validation_only_runs_leave_the_test_split_for_later(tmp_path, case, monkeypatch):
    parts: list[str] = []
    predict_part = CTRTask.predict_part
    monkeypatch.setattr(CTRTask, "predict_part", lambda self, models, prepared, part, bs: parts.append(part) or predict_part(self, models, prepared, part, bs))
    cfg = load_config(None, [*COMMON, *CASES[case], "eval.test=false"])
    res = run_config(cfg, tmp_path / "run")
    assert res.metrics == {} and res.buckets == {}
    assert res.valid_metrics["overall"][cfg.train.metric] is not None  # what cdrec tune selects on
    assert "test" not in parts
    assert "not evaluated (eval.test=false)" in (tmp_path / "run" / "results.md").read_text()
    later = evaluate_run(tmp_path / "run", part="test")
    full = run_config(load_config(None, [*COMMON, *CASES[case]]), tmp_path / "full")
    assert later.metrics["overall"] == pytest.approx(full.metrics["overall"], nan_ok=True)  # the same model as a run that scored test


def test_mtal_refuses_to_skip_the_test_split(tmp_path):
    cfg = load_config(None, ["model=assisted-mf", "split.protocol=ratio", "train.metric=auto", "eval.test=false"])
    with pytest.raises(CdrecError, match="eval.test: the mtal task scores the test entries during its rounds"):
        run_config(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
