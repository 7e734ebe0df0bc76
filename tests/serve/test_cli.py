"""`cdrec recommend` / `cdrec export` / `cdrec serve` argument checks, run in-process through main()."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.cli_helpers import cli


def one_line_error(err: str, needle: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err


def test_recommend_table_and_json(monkeypatch, capsys, joint_run, joint_predictor):
    user = joint_predictor.data.user_ids[2]
    expected = joint_predictor.recommend(user, "D1", 4)
    code, out, _ = cli(monkeypatch, capsys, "recommend", joint_run, "--user", user, "--domain", "D1", "-k", 4, "--device", "cpu")
    assert code == 0
    table_items = [int(line.split("|")[2]) for line in out.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert table_items == expected.items
    code, out, _ = cli(monkeypatch, capsys, "recommend", joint_run, "--user", user, "--domain", "D1", "-k", 4, "--json")
    assert code == 0
    payload = json.loads(out)
    assert [r["item"] for r in payload["items"]] == expected.items and payload["source"] == "model"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--user", "nobody", "--domain", "D0"], "unknown user 'nobody'; pass --fallback popularity for"),
        (["--user", "0", "--domain", "D9"], "--domain: unknown domain 'D9'"),
        (["--user", "0"], "--domain: this run has 3 domains, name one of"),
        (["--user", "0", "--domain", "D0", "-k", "0"], "--k: expected an integer >= 1"),
        (["--user", "0", "--domain", "D0", "--device", "tpu"], "--device: expected auto, cpu or cuda"),
        (["--user", "0", "--domain", "D0", "--fallback", "random"], "--fallback"),
    ],
)
def test_recommend_bad_input_exit_2(monkeypatch, capsys, joint_run, args, needle):
    code, out, err = cli(monkeypatch, capsys, "recommend", joint_run, *args)
    assert code == 2 and out == ""
    one_line_error(err, needle)


def test_recommend_fallback_and_not_a_run(monkeypatch, capsys, joint_run, tmp_path):
    code, out, _ = cli(monkeypatch, capsys, "recommend", joint_run, "--user", "nobody", "--domain", "D0", "-k", 3, "--fallback", "popularity", "--json")
    assert code == 0 and json.loads(out)["source"] == "popularity"
    code, _, err = cli(monkeypatch, capsys, "recommend", tmp_path, "--user", "1")
    assert code == 2
    one_line_error(err, "no config.yaml")


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_all_users_per_domain(monkeypatch, capsys, joint_run, joint_predictor, tmp_path, fmt):
    out = tmp_path / f"recs.{fmt}"
    code, stdout, _ = cli(monkeypatch, capsys, "export", joint_run, "--format", fmt, "--out", out, "-k", 3, "--batch-size", 50)
    assert code == 0 and f"to {out}" in stdout
    frame = pd.read_parquet(out) if fmt == "parquet" else pd.read_csv(out)
    assert list(frame.columns) == ["user", "domain", "rank", "item", "score"]
    assert sorted(frame["domain"].unique()) == ["D0", "D1", "D2"]
    assert len(frame) == int(stdout.split()[1])
    n_users = joint_predictor.data.n_users
    per_domain = frame.groupby("domain")["user"].nunique()
    assert (per_domain == n_users).all()
    for user in joint_predictor.data.user_ids[[0, 17, 101]]:
        rows = frame[(frame["user"] == user) & (frame["domain"] == "D2")].sort_values("rank")
        assert rows["item"].tolist() == joint_predictor.recommend(user, "D2", 3).items
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--format", "xlsx"], "--format: expected one of"),
        (["-k", "0"], "--k: expected an integer >= 1"),
        (["--domain", "D9"], "--domain: unknown domain 'D9'"),
        (["--device", "tpu"], "--device: expected auto, cpu or cuda"),
        (["--batch-size", "0"], "--batch-size"),
    ],
)
def test_export_bad_input_writes_nothing(monkeypatch, capsys, joint_run, tmp_path, args, needle):
    out = tmp_path / "recs.parquet"
    code, stdout, err = cli(monkeypatch, capsys, "export", joint_run, "--out", out, *args)
    assert code == 2 and stdout == ""
    one_line_error(err, needle)
    assert list(tmp_path.iterdir()) == []


def test_export_into_missing_folder(monkeypatch, capsys, joint_run, tmp_path):
    code, _, err = cli(monkeypatch, capsys, "export", joint_run, "--out", tmp_path / "no" / "recs.csv")
    assert code == 2
    one_line_error(err, "does not exist")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--port", "0"], "--port: expected 1..65535"),
        (["--port", "70000"], "--port: expected 1..65535"),
        (["--api-key", " "], "--api-key: empty key"),
        (["--max-k", "0"], "--max-k"),
        (["--device", "tpu"], "--device: expected auto, cpu or cuda"),
    ],
)
def test_serve_bad_options_exit_2_before_loading(monkeypatch, capsys, tmp_path, args, needle):
    code, _, err = cli(monkeypatch, capsys, "serve", tmp_path, *args)
    assert code == 2
    one_line_error(err, needle)


def test_serve_port_in_use_exit_2(monkeypatch, capsys, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = cli(monkeypatch, capsys, "serve", tmp_path, "--port", port)
    assert code == 2
    one_line_error(err, "cannot listen there")


def test_export_without_a_known_suffix_asks_for_a_format(monkeypatch, capsys, joint_run, tmp_path):
    code, _, err = cli(monkeypatch, capsys, "export", joint_run, "--out", tmp_path / "recs")
    assert code == 2
    one_line_error(err, "cannot tell the format from its suffix")
    assert list(tmp_path.iterdir()) == []
    code, _, _ = cli(monkeypatch, capsys, "export", joint_run, "--out", tmp_path / "recs", "--format", "CSV", "-k", 2)
    assert code == 0 and "user" in (tmp_path / "recs").read_text().splitlines()[0]


def test_export_keeps_an_existing_file_unless_overwrite_and_refuses_a_mismatched_suffix(monkeypatch, capsys, joint_run, tmp_path):
    out = tmp_path / "recs.csv"
    out.write_text("precious\n")
    code, stdout, err = cli(monkeypatch, capsys, "export", joint_run, "--out", out, "-k", 2)
    assert code == 2 and stdout == ""
    one_line_error(err, "the file exists; pass --overwrite")
    assert out.read_text() == "precious\n"
    code, _, err = cli(monkeypatch, capsys, "export", joint_run, "--out", tmp_path / "x.csv", "--format", "parquet")
    assert code == 2
    one_line_error(err, "a .csv name for --format parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recs.csv"]
    code, _, _ = cli(monkeypatch, capsys, "export", joint_run, "--out", out, "-k", 2, "--overwrite")
    assert code == 0 and out.read_text().startswith("user,domain,rank,item,score")
