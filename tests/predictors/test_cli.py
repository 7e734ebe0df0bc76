"""`cdrec recommend --history` (sequential runs) and its argument checks, in-process through main()."""

from __future__ import annotations

import json

import pytest

from tests.cli_helpers import cli


@pytest.mark.parametrize("name", ["sasrec-dt", "abxi"])
def test_recommend_history_json_and_table(monkeypatch, capsys, runs, predictors, name):
    p = predictors[name]
    history = p.data.item_ids[[1, p.offsets[1] + 2]].tolist()
    expected = p.recommend_sequence(history, 3)
    arg = ",".join(map(str, history))
    code, out, _ = cli(monkeypatch, capsys, "recommend", runs[name], "--history", arg, "-k", 3, "--json")
    assert code == 0
    body = json.loads(out)["recommendations"]
    assert {d: [x["item"] for x in r["items"]] for d, r in body.items()} == {d: r.items for d, r in expected.items()}
    code, out, _ = cli(monkeypatch, capsys, "recommend", runs[name], "--history", arg, "-k", 3, "--domain", "D1")
    items = [int(line.split("|")[2]) for line in out.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert code == 0 and "domain D1" in out and items == expected["D1"].items


@pytest.mark.parametrize(
    "run, args, needle",
    [
        ("sasrec-dt", ["--history", "1,bogus"], "history[1]: unknown item 'bogus'"),
        ("sasrec-dt", ["--history", "1,,2"], "--history: expected comma-separated item ids"),
        ("sasrec-dt", ["--user", "1", "--history", "1"], "exactly one of --user and --history"),
        ("sasrec-dt", [], "exactly one of --user and --history"),
        ("sasrec-dt", ["--history", "1", "--fallback", "popularity"], "apply to --user only"),
        ("mlp-single", ["--history", "1"], "does not support recommendation from an item history"),
        ("mlp-single", ["--user", "1", "--domain", "D0"], "does not support top-K"),
    ],
)
def test_recommend_bad_input_exit_2(monkeypatch, capsys, runs, predictors, run, args, needle):
    known = str(predictors[run].items.raw[0])  # "1" in the history stands for a known item
    args = [",".join(known if x == "1" else x for x in a.split(",")) if i and args[i - 1] == "--history" else a for i, a in enumerate(args)]
    code, out, err = cli(monkeypatch, capsys, "recommend", runs[run], *args)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and out == "" and len(lines) == 1 and needle in lines[0], err


def test_evaluate_reproduces_the_runs_test_metrics(monkeypatch, capsys, runs):
    from cdrec.experiments.pipeline import evaluate_run

    stored = json.loads((runs["abxi"] / "results.json").read_text())["metrics"]
    again = evaluate_run(runs["abxi"], part="test", device="cpu").metrics
    code, out, _ = cli(monkeypatch, capsys, "evaluate", runs["abxi"], "--device", "cpu")
    assert code == 0
    for dom in ("D0", "D1"):
        assert again[dom]["MRR"] == pytest.approx(stored[dom]["MRR"], abs=1e-9)
        assert f"{stored[dom]['MRR']:.4f}" in out
