import numpy as np
import pytest
from scipy import stats

from cdrec.results import RunResult, aggregate_seeds, paired_ttest, result_markdown


def make(model, seed, value):
    return RunResult(model=model, dataset="d", protocol="loo/1+99", seed=seed, metrics={"A": {"HR@10": value, "n": 10}, "overall": {"HR@10": value}})


def test_aggregate_and_paired_ttest():
    a = [make("x", s, v) for s, v in enumerate([0.5, 0.6, 0.7])]
    b = [make("y", s, v) for s, v in enumerate([0.4, 0.45, 0.65])]
    agg = aggregate_seeds(a + b)
    mean, std, n = agg[("x", "d")]["A"]["HR@10"]
    assert mean == pytest.approx(0.6) and std == pytest.approx(np.std([0.5, 0.6, 0.7], ddof=1)) and n == 3
    t, p = paired_ttest(a, b, "A", "HR@10")
    ref = stats.ttest_rel([0.5, 0.6, 0.7], [0.4, 0.45, 0.65])
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    assert "| A | 10 | 0.5000 |" in result_markdown(a[0])
