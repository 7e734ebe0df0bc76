import json

import numpy as np
import pytest
import torch

from cdrec.config import load_config
from cdrec.experiments.pipeline import run_config

FAST = ["train.epochs=4", "train.progress=false", "train.lr=0.01", "train.batch_size=512", "model_params.dim=16",
        "data.synthetic={n_users: 300, items_per_domain: 120}", "split.n_negatives=20", "train.device=cpu"]


def test_same_seed_same_metrics_and_checkpoint_resume(tmp_path):
    a = run_config(load_config(None, FAST), tmp_path / "a")
    b = run_config(load_config(None, FAST), tmp_path / "b")
    assert a.metrics == b.metrics
    c = run_config(load_config(None, [*FAST, "seed=1"]), tmp_path / "c")
    assert c.metrics != a.metrics
    for name in ("results.json", "results.md", "config.yaml", "model.pt"):
        assert (tmp_path / "a" / name).exists()
    data = json.loads((tmp_path / "a" / "results.json").read_text())
    assert {"model", "dataset", "protocol", "seed", "metrics", "buckets", "config", "data_stats", "timing"} <= set(data)
    assert set(data["timing"]) == {"train_s", "eval_s", "peak_rss_mb"}
    assert set(data["metrics"]) == {"D0", "D1", "D2", "overall"}


def test_resume_continues_from_checkpoint(tmp_path):
    from cdrec.train import tasks

    cfg_full = load_config(None, FAST)
    full = run_config(cfg_full, tmp_path / "full")
    # stop after 2 epochs by running a 2-epoch config that keeps its checkpoint, then resume to 4
    cfg_half = load_config(None, [*FAST, "train.epochs=2"])
    task = tasks.task_for("bprmf")
    prepared = task.prepare(cfg_half)
    run_dir = tmp_path / "half"
    run_dir.mkdir()
    from cdrec.data.samplers import BPRSampler
    from cdrec.train.trainer import Trainer

    scope, split = prepared.scopes[0]
    from cdrec.train.trainer import seed_everything

    seed_everything(0)
    model = task.build_model(cfg_half, split, prepared.params)
    sampler = BPRSampler(split.train, cfg_half.train.batch_size, seed=0)
    Trainer(model, cfg_half.train, seed=0, device=torch.device("cpu"), checkpoint=run_dir / f"checkpoint-{scope}.pt").fit(
        sampler.epoch, lambda: task.evaluate(model, split, "valid", cfg_half, torch.device("cpu")).metrics["overall"]
    )
    assert (run_dir / "checkpoint-joint.pt").exists()
    resumed = run_config(cfg_full, run_dir, resume=True)
    assert resumed.metrics == full.metrics


def test_early_stopping_keeps_best_epoch(tmp_path):
    res = run_config(load_config(None, [*FAST, "train.epochs=30", "train.patience=2", "train.lr=0.2"]), tmp_path / "r")
    hist = res.history[0]["epochs"]
    scores = [h["valid"]["MRR@10"] for h in hist]
    best = int(np.argmax(scores)) + 1
    assert res.history[0]["best_epoch"] == best
    assert len(hist) <= 30
    assert res.valid_metrics["overall"]["MRR@10"] == pytest.approx(max(scores))


@pytest.mark.parametrize("full", [False, True])
def test_ratio_split_ranks_sampled_or_full_candidates(tmp_path, full):
    """``split.protocol=ratio`` for a ranking model: every held-out row is ranked, among 1 + n_negatives
    sampled items or (``full_ranking``) all items of its domain."""
    res = run_config(load_config(None, [*FAST, "split.protocol=ratio", f"split.full_ranking={str(full).lower()}"]), tmp_path / "r")
    assert res.protocol == ("ratio-0.8-0.1-0.1/full" if full else "ratio-0.8-0.1-0.1/1+20")
    assert res.metrics["overall"]["n"] > 0 and 0 < res.metrics["overall"]["HR@10"] <= 1
