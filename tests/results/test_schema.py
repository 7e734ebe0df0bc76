"""``results.json`` is standard JSON that any reader parses, and reads back into the same result."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cdrec.results.schema import RunResult, strict_json, write_result


def test_a_metric_that_could_not_be_computed_is_written_as_null(tmp_path):
    result = RunResult(model="aae", dataset="ml-100k", protocol="p", seed=0,
                       metrics={"Fantasy": {"MAP@10": float("nan"), "n": 8}, "overall": {"MAP@10": np.float32(0.75), "n": 9}},
                       history=[{"round": 0, "test": {"RMSE": np.inf}}])
    path = write_result(tmp_path, result)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    strict = json.loads(text, parse_constant=lambda name: pytest.fail(f"results.json holds {name}"))
    assert strict["metrics"]["Fantasy"] == {"MAP@10": None, "n": 8} and strict["history"][0]["test"]["RMSE"] is None
    back = RunResult.read(path)
    assert back.metrics["overall"]["MAP@10"] == pytest.approx(0.75) and back.metrics["Fantasy"]["MAP@10"] is None


def test_strict_json_converts_numpy_and_takes_a_fallback():
    assert json.loads(strict_json({"a": np.arange(3), "b": np.float64("nan")}, indent=None)) == {"a": [0, 1, 2], "b": None}
    assert json.loads(strict_json({"s": {1}}, default=str)) == {"s": "{1}"}
    with pytest.raises(TypeError, match="not JSON serialisable: set"):
        strict_json({"s": {1}})

