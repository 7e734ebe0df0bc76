import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_path

TINY = ["--set", "data.synthetic={n_users: 200, items_per_domain: 100}", "--set", "train.epochs=2", "--set", "model_params.dim=8",
        "--set", "split.n_negatives=20", "--set", "train.progress=false"]


def cdrec(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cdrec", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_on_every_command():
    for cmd in ([], ["demo"], ["data", "stats"], ["run"], ["evaluate"], ["reproduce"]):
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
