"""Issue #35 through the command line: interrupted runs are kept and resumable, cross-domain models
refuse data they cannot learn from, progress suits logs, and `data stats` reads TSV and sniffed files."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pandas as pd
import pytest

import cdrec.train.trainer as trainer_module
from tests.cli_helpers import call_main

SYNTH = "data.synthetic={n_users: 200, items_per_domain: 100}"
BASE = ["--set", SYNTH, "--set", "split.n_negatives=20", "--device", "cpu"]
TINY = [*BASE, "--set", "model_params.dim=8"]


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


# ---------------------------------------------------------------------------- 1. interrupted runs
def interrupt_after_checkpoint(monkeypatch, epoch: int) -> None:
    """Ctrl-C right after the checkpoint of ``epoch`` is written (the trainer's save, then KeyboardInterrupt)."""
    save = trainer_module.atomic_torch_save

    def save_then_interrupt(obj, path):
        save(obj, path)
        if isinstance(obj, dict) and obj.get("epoch") == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module, "atomic_torch_save", save_then_interrupt)


def test_ctrl_c_prints_the_epoch_and_the_command_that_resumes_and_a_rerun_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "m" / "m9"
    args = ["run", *TINY, "--set", "train.epochs=4", "--set", "train.progress=false", "--out", str(out)]
    interrupt_after_checkpoint(monkeypatch, 2)
    got = call_main(*args)
    assert got.code == 130 and got.exception is None, got.stderr
    first, second = got.stderr.strip().splitlines()
    assert first == f"interrupted: {out} holds epoch 2/4 (checkpoint-joint.pt)"
    assert second == "resume with: " + shlex.join(["cdrec", *args, "--resume"])
    assert (out / "checkpoint-joint.pt").exists() and not (out / "results.json").exists()
    monkeypatch.undo()

    # the same command again refuses, naming both ways on, and leaves the checkpoint alone
    saved = (out / "checkpoint-joint.pt").read_bytes()
    again = call_main(*args)
    line = one_error_line(again.stderr)
    assert again.code == 2 and "unfinished run" in line and "epoch 2/4" in line and "--resume" in line and "--overwrite" in line
    assert (out / "checkpoint-joint.pt").read_bytes() == saved and not (out / "results.json").exists()

    # the printed command resumes and ends where an uninterrupted run ends
    resumed = call_main(*shlex.split(second.removeprefix("resume with: "))[1:])
    assert resumed.code == 0, resumed.stderr
    result = json.loads((out / "results.json").read_text())
    assert result["history"][0]["resumed_from"] == 2
    whole = call_main("run", *TINY, "--set", "train.epochs=4", "--set", "train.progress=false", "--out", str(tmp_path / "whole"))
    assert whole.code == 0, whole.stderr
    assert result["metrics"] == json.loads((tmp_path / "whole" / "results.json").read_text())["metrics"]


def test_overwrite_starts_an_unfinished_run_over_and_ctrl_c_before_a_checkpoint_says_so(tmp_path, monkeypatch):
    out = tmp_path / "r"
    args = ["run", *TINY, "--set", "train.epochs=3", "--set", "train.progress=false", "--out", str(out)]
    interrupt_after_checkpoint(monkeypatch, 2)
    assert call_main(*args).code == 130
    monkeypatch.undo()

    def interrupt_first_step(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module.Trainer, "step", interrupt_first_step)
    got = call_main(*args, "--overwrite")  # starting over drops the old checkpoint, so nothing is left to resume
    assert got.code == 130
    assert got.stderr.strip().splitlines() == [
        f"interrupted before a checkpoint was written: {out} holds no finished epoch",
        "start again with: " + shlex.join(["cdrec", *args]),
    ]
    assert not list(out.glob("checkpoint-*.pt"))
    monkeypatch.undo()
    done = call_main(*args)  # a folder without checkpoints or results takes a plain run
    assert done.code == 0, done.stderr
    assert "resumed_from" not in json.loads((out / "results.json").read_text())["history"][0]


# ---------------------------------------------------------------------------- 3. cross-domain models
MTAL = ["--set", "model=aae", "--set", "setting.mode=mtal", "--set", "setting.rounds=1", "--set", "split.protocol=ratio", "--set", "train.metric=auto"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "model=uclr", "--set", "data.synthetic.n_domains=1"], "model uclr: needs at least 2 domains"),
        (["--set", "model=pge+ae", "--set", "data.synthetic.n_domains=1"], "model pge+ae: needs at least 2 domains"),
        (["--set", "model=uclr", "--set", "scope=single"], "scope: single trains one uclr per domain, but uclr is cross-domain by design"),
        ([*MTAL, "--set", "data.synthetic.n_domains=1"], "model aae: needs at least 2 domains"),
        ([*MTAL, "--set", 'data.keep_domains=["D1"]'], "model aae: needs at least 2 domains"),
        (["--set", "model=merit", "--set", "data.name=synthetic"], "model merit: needs exactly 2 domains"),
        (["--set", "model=merit", "--set", "data.name=synthetic", "--set", "data.synthetic.n_domains=1"], "model merit: needs exactly 2 domains"),
        (["--set", "model=abxi", "--set", "data.name=synthetic"], "model abxi: needs exactly 2 domains"),
    ],
)
def test_cross_domain_models_refuse_data_they_cannot_learn_from(tmp_path, args, message):
    got = call_main("run", *BASE, *args, "--set", "train.epochs=1", "--out", str(tmp_path / "o"))
    line = one_error_line(got.stderr)
    assert got.code == 2 and message in line, line
    assert not (tmp_path / "o").exists() and got.stdout == ""


def test_federated_split_refuses_one_organization(tmp_path):
    got = call_main("federated", "split", "--set", SYNTH, "--set", "data.synthetic.n_domains=1", "--out", str(tmp_path / "orgs"))
    assert got.code == 2 and "model aae: needs at least 2 domains" in one_error_line(got.stderr)
    assert not (tmp_path / "orgs").exists()


# ---------------------------------------------------------------------------- 4. progress in logs
def test_progress_without_a_terminal_is_one_plain_line_per_epoch(tmp_path):
    got = call_main("run", *TINY, "--set", "train.epochs=3", "--set", "train.patience=5", "--out", str(tmp_path / "r"))
    assert got.code == 0, got.stderr
    assert "\r" not in got.stderr  # captured stderr is no terminal
    lines = got.stderr.strip().splitlines()
    assert [line.split(":", 2)[1].strip() for line in lines] == ["joint epoch 1/3", "joint epoch 2/3", "joint epoch 3/3"]
    assert all(line.startswith("bprmf:joint epoch") and "loss" in line and "MRR@10" in line for line in lines)
    quiet = call_main("run", *TINY, "--set", "train.epochs=1", "--set", "train.progress=false", "--out", str(tmp_path / "q"))
    assert quiet.code == 0 and quiet.stderr == ""


def test_run_help_documents_train_progress():
    got = call_main("run", "--help")
    assert got.code == 0 and "train.progress=false" in got.stdout and "one plain line per epoch" in got.stdout


# ---------------------------------------------------------------------------- 5. delimiters in data stats and run
def write_table(path: Path, sep: str, columns: tuple[str, ...] = ("user", "item", "domain", "rating")) -> None:
    rows = [(f"u{u}", f"{d.lower()}{(u * 7 + k * 3) % 20}", d, 1 + (u + k) % 5) for u in range(30) for d in "AB" for k in range(4)]
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, sep=sep, index=False)


def stats(*args: str) -> dict:
    got = call_main("data", "stats", *args, "--json")
    assert got.code == 0, got.stderr
    return json.loads(got.stdout)


@pytest.mark.parametrize("name, sep", [("t.tsv", "\t"), ("t.tsv.gz", "\t"), ("semicolon.csv", ";"), ("pipes.txt", "|"), ("tabs.csv", "\t")])
def test_data_stats_reads_tsv_by_suffix_and_sniffs_other_delimiters(tmp_path, name, sep):
    write_table(tmp_path / name, sep)
    got = stats(str(tmp_path / name))
    assert (got["users"], got["interactions"], sorted(got["domains"])) == (30, 240, ["A", "B"])


def test_data_stats_takes_sep_and_set_and_names_data_sep_when_the_delimiter_is_wrong(tmp_path):
    path = tmp_path / "export.csv"
    write_table(path, "\t", ("customer", "product", "domain", "rating"))
    mapping = ["--set", "data.columns={user: customer, item: product}"]
    assert stats(str(path), "--sep", "\\t", *mapping)["interactions"] == 240
    assert stats(str(path), "--set", "data.sep=\t", *mapping)["interactions"] == 240
    wrong = call_main("data", "stats", str(path), "--sep", ",", *mapping)
    line = one_error_line(wrong.stderr)
    assert wrong.code == 2 and "with delimiter ','" in line and "set data.sep" in line
    other = call_main("data", "stats", str(path), "--set", "train.lr=1")
    assert other.code == 2 and "data stats reads only data.* keys" in one_error_line(other.stderr)


def test_a_sniffed_delimiter_that_fails_to_parse_names_data_sep(tmp_path):
    path = tmp_path / "t.csv"
    write_table(path, ";")
    path.write_text(path.read_text() + "u1;a1;A;3;surplus\n")
    got = call_main("data", "stats", str(path))
    line = one_error_line(got.stderr)
    assert got.code == 2 and "separated by ';' (sniffed from the first lines; data.sep sets the delimiter)" in line


def test_run_trains_on_a_semicolon_file_without_data_sep(tmp_path):
    write_table(tmp_path / "d.csv", ";")
    got = call_main("run", "--set", "data.name=table", "--set", f"data.path={tmp_path / 'd.csv'}", "--set", "model_params.dim=8",
                    "--set", "split.n_negatives=5", "--set", "train.epochs=1", "--set", "train.progress=false", "--device", "cpu",
                    "--out", str(tmp_path / "r"))
    assert got.code == 0, got.stderr
    assert json.loads((tmp_path / "r" / "results.json").read_text())["data_stats"]["interactions"] == 240
