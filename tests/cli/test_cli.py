import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.cli_helpers import call_main
from tests.conftest import shared_path

TINY = ["--set", "data.synthetic={n_users: 200, items_per_domain: 100}", "--set", "train.epochs=2", "--set", "model_params.dim=8",
        "--set", "split.n_negatives=20", "--set", "train.progress=false"]


def cdrec(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cdrec", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_on_every_command():
    for cmd in ([], ["demo"], ["data", "stats"], ["run"], ["evaluate"], ["reproduce"], ["compare"], ["tune"], ["recommend"], ["export"], ["serve"]):
        out = cdrec(*cmd, "--help")
        assert out.returncode == 0, out.stderr
        assert "Usage" in out.stdout


def test_run_then_evaluate(tmp_path):
    out = cdrec("run", *TINY, "--out", str(tmp_path / "r"), "--device", "cpu")
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "r" / "results.json").read_text())
    ev = cdrec("evaluate", str(tmp_path / "r"), "--device", "cpu")
    assert ev.returncode == 0, ev.stderr
    hr = f"{result['metrics']['overall']['HR@10']:.4f}"
    assert hr in ev.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--set", "model=nope"], "unknown model 'nope'"),
        (["run", "missing.yaml"], "missing.yaml: config file not found"),
        (["run", "--set", "data.name=imdb"], "unknown dataset 'imdb'"),
        (["run", "--set", "data.name=table", "--set", "data.path=nowhere.csv"], "nowhere.csv: file not found"),
        (["run", "--set", "train.batch_size=0"], "train.batch_size"),
        (["data", "stats", "nodata"], "unknown dataset 'nodata'"),
        (["evaluate", "no-such-run"], "not a run directory"),
        (["reproduce", "nopaper", "--out", "x"], "unknown paper"),
        (["run", "--config", "c.yaml"], "--config"),  # click's wording of "no such option" differs by version
        (["reproduce", "mtal", "--out", "x", "--seeds", "two"], "Invalid value for '--seeds'"),
        (["reproduce", "m3oe", "--out", "x", "--device", "tpu"], "--device: expected auto, cpu or cuda, got 'tpu'"),
        (["reproduce", "merit", "--out", "x", "--section", "switch"], "--section: expected one of ['main', 'switches'] for merit, got 'switch'"),
        (["reproduce", "m3oe", "--out", "x", "--section", "switches"], "--section: the m3oe recipe has no sections"),
        (["reproduce", "mtal", "--out", "x", "--section", "privacy-sweep"], "--section: expected one of ['main', 'privacy'] for mtal, got 'privacy-sweep'"),
        (["reproduce", "uclr", "--out", "x", "--section", "classic"], "--section: expected one of ['choices', 'classics', 'main'] for uclr, got 'classic'"),
        (["reproduce", "merit", "--out", "x", "--report-only", "--section", "switches"], "--section: --report-only reports every section"),
        (["demo", "--out", "x", "--device", "tpu"], "--device: expected auto, cpu or cuda, got 'tpu'"),
        (["demo", "--out", "x", "--devices", "cpu"], "--devices"),
        (["demo", "--out", "x", "--devices", "cpu"], "(see `cdrec demo --help`)"),
    ],
)
def test_user_mistakes_exit_2_with_one_line_and_no_output(tmp_path, args, message):
    out = cdrec(*args, "--out", str(tmp_path / "o"), cwd=tmp_path) if args[0] == "run" else cdrec(*args, cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    err = out.stderr.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "x").exists() and not (tmp_path / "runs").exists()


def test_table_with_wrong_column(tmp_path):
    (tmp_path / "t.csv").write_text("user,item,score\n1,2,3\n")
    out = cdrec("run", "--set", "data.name=table", "--set", f"data.path={tmp_path / 't.csv'}", "--set",
                "data.columns={user: user, item: item, rating: rating}", "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "missing column 'rating'" in out.stderr and str(tmp_path / "t.csv") in out.stderr
    assert not (tmp_path / "o").exists()


def test_data_stats_ml100k_genre():
    root = shared_path("ml-100k").parent
    out = cdrec("data", "stats", "ml-100k", "--data-dir", str(root), "--domains", "genre", "--json")
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100000)
    assert sum(d["interactions"] for d in stats["domains"].values()) == 100000
    assert sum(d["items"] for d in stats["domains"].values()) == 1682
    text = cdrec("data", "stats", "ml-100k", "--data-dir", str(root), "--domains", "genre").stdout
    assert "943 users, 1682 items, 100000 interactions" in text


def _table(path: Path, n_users: int = 60, n_items: int = 200, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, 900)
    items = rng.integers(0, n_items, 900)
    frame = pd.DataFrame({"user": [f"u{u}" for u in users], "item": [f"i{i}" for i in items],
                          "domain": np.where(items < n_items // 2, "books", "music"), "timestamp": np.arange(900)})
    frame.drop_duplicates(["user", "item"]).to_csv(path, index=False)


@pytest.mark.parametrize("change", ["shuffle", "drop_item"])
def test_a_saved_run_refuses_data_changed_since_training(tmp_path, change):
    """Changed rows (same sizes: different split and metrics) or a dropped item (a model that no
    longer fits) give one line naming the run, exit code 2, for evaluate and recommend alike."""
    data = tmp_path / "d.csv"
    _table(data)
    run = tmp_path / "run"
    common = ["--set", "data.name=table", "--set", f"data.path={data}", "--set", "split.n_negatives=5",
              "--set", "train.epochs=1", "--set", "train.progress=false", "--set", "model_params.dim=8"]
    assert call_main("run", *common, "--out", str(run)).code == 0
    assert call_main("evaluate", str(run)).code == 0
    frame = pd.read_csv(data)
    frame = frame.sample(frac=1.0, random_state=1) if change == "shuffle" else frame[frame["item"] != frame["item"].iloc[0]]
    frame.to_csv(data, index=False)
    for args in (["evaluate", str(run)], ["recommend", str(run), "--user", str(frame["user"].iloc[0]), "--domain", "books"]):
        got = call_main(*args)
        assert got.code == 2 and got.exception is None, (args, got)
        assert got.stderr.count("\n") == 1 and "differs from the data this run was trained on" in got.stderr


def test_relative_data_path_and_tab_separated_table(tmp_path, monkeypatch):
    """``data.sep`` reads a tab-separated table; a relative ``data.path`` is stored absolute, so the
    run evaluates from another working folder."""
    _table(tmp_path / "d.csv")
    pd.read_csv(tmp_path / "d.csv").to_csv(tmp_path / "d.tsv", sep="\t", index=False)
    monkeypatch.chdir(tmp_path)
    sets = ["--set", "data.name=table", "--set", "data.path=d.tsv", "--set", "data.sep=\t", "--set", "split.n_negatives=5",
            "--set", "train.epochs=1", "--set", "train.progress=false", "--set", "model_params.dim=8"]
    assert call_main("run", *sets, "--out", "run").code == 0
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["config"]["data"]["path"] == str(tmp_path / "d.tsv") and saved["dataset"] == "d"
    monkeypatch.chdir(tmp_path.parent)
    again = call_main("evaluate", str(tmp_path / "run"))
    assert again.code == 0, again.stderr
    assert call_main("run", *sets[:4], "--out", str(tmp_path / "comma")).code == 2  # the default ',' finds one column


def test_data_stats_reads_the_data_section_of_a_run_config(tmp_path):
    _table(tmp_path / "d.csv")
    frame = pd.read_csv(tmp_path / "d.csv").rename(columns={"user": "customer", "item": "product"})
    frame.to_csv(tmp_path / "own.csv", index=False)
    (tmp_path / "c.yaml").write_text(f"data:\n  name: table\n  path: {tmp_path / 'own.csv'}\n  columns: {{user: customer, item: product}}\n")
    got = call_main("data", "stats", str(tmp_path / "c.yaml"), "--json")
    assert got.code == 0, got.stderr
    stats = json.loads(got.stdout)
    assert stats["name"] == "own" and stats["interactions"] == len(frame) and set(stats["domains"]) == {"books", "music"}


def test_run_refuses_a_finished_run_folder_unless_overwrite(tmp_path):
    out = tmp_path / "r"
    assert call_main("run", *TINY, "--set", "train.epochs=1", "--out", str(out)).code == 0
    before = (out / "results.json").read_text()
    again = call_main("run", *TINY, "--set", "train.epochs=1", "--set", "seed=1", "--out", str(out))
    assert again.code == 2 and again.exception is None and again.stderr.count("\n") == 1
    assert "holds a finished run; pass --overwrite" in again.stderr
    assert (out / "results.json").read_text() == before and (out / "model.pt").exists()
    resumed = call_main("run", *TINY, "--set", "train.epochs=1", "--out", str(out), "--resume")  # nothing left to resume
    assert resumed.code == 2 and resumed.stderr.count("\n") == 1 and "holds a finished run, so there is nothing to resume" in resumed.stderr
    assert (out / "results.json").read_text() == before
    assert call_main("run", *TINY, "--set", "train.epochs=1", "--set", "seed=1", "--out", str(out), "--overwrite").code == 0
    assert json.loads((out / "results.json").read_text())["seed"] == 1


def test_data_stats_last_row_counts_shared_users_and_items_once():
    """User-owned domains share items: the last row repeats the header's distinct counts, not the sums."""
    got = call_main("data", "stats", "synthetic", "--domains", "uniform-users:2", "--json")
    assert got.code == 0, got.stderr
    stats = json.loads(got.stdout)
    assert sum(d["items"] for d in stats["domains"].values()) > stats["items"]  # items are shared
    table = call_main("data", "stats", "synthetic", "--domains", "uniform-users:2").stdout.strip().splitlines()
    assert [c.strip() for c in table[-1].split("|")[1:5]] == ["all (distinct)", str(stats["users"]), str(stats["items"]), str(stats["interactions"])]


def test_a_repeated_pair_is_refused_naming_the_option_and_the_file_line(tmp_path):
    """``data.duplicates: error`` (the default) names the repeat's line (the header is line 1);
    ``first`` / ``last`` / ``mean`` load one row per pair."""
    data = tmp_path / "own.csv"
    data.write_text("user,item,rating,timestamp\nu1,a,4,1\nu1,b,3,2\nu2,a,5,3\nu1,a,2,4\n")
    got = call_main("run", "--set", "data.name=table", "--set", f"data.path={data}", "--out", str(tmp_path / "o"))
    assert got.code == 2 and got.exception is None and got.stderr.count("\n") == 1, got
    assert got.stderr.startswith(f"error: {data}: line 5 repeats the pair of line 2 with other values (user 'u1', item 'a')")
    assert "set data.duplicates to first, last or mean" in got.stderr
    assert not (tmp_path / "o").exists()
    for policy in ("first", "last", "mean"):
        (tmp_path / "c.yaml").write_text(f"data:\n  name: table\n  path: {data}\n  duplicates: {policy}\n")
        stats = call_main("data", "stats", str(tmp_path / "c.yaml"), "--json")
        assert stats.code == 0, stats.stderr
        assert json.loads(stats.stdout)["interactions"] == 3
