import json

import pytest

from cdrec.config import load_config
from cdrec.experiments.pipeline import run_config
from tests.conftest import shared_path


def test_bprmf_learns_on_synthetic(tmp_path):
    cfg = load_config(None, ["train.epochs=25", "train.lr=0.01", "model_params.dim=16", "train.progress=false",
                             "data.synthetic={n_users: 400, items_per_domain: 150}", "split.n_negatives=20"])
    res = run_config(cfg, tmp_path / "r")
    assert res.metrics["overall"]["HR@10"] > 10 / 21 + 0.1  # a random ranking of 1+20 candidates gives 10/21


@pytest.mark.realdata
def test_bprmf_ml100k_leave_one_out_hr10(tmp_path):
    """Foundation acceptance: BPR-MF on ML-100K, leave-one-out, 1+99 candidates, HR@10 >= 0.55."""
    root = shared_path("ml-100k").parent
    cfg = load_config(None, ["data.name=ml-100k", f"data.data_dir={root}", "train.epochs=30", "train.patience=3",
                             "train.progress=false", "train.device=cpu"])
    res = run_config(cfg, tmp_path / "ml100k")
    assert res.metrics["overall"]["n"] == 943
    assert res.metrics["overall"]["HR@10"] >= 0.55
    saved = json.loads((tmp_path / "ml100k" / "results.json").read_text())
    assert saved["metrics"]["overall"]["HR@10"] == res.metrics["overall"]["HR@10"]
    assert (tmp_path / "ml100k" / "results.md").read_text().startswith("# bprmf on ml-100k")
