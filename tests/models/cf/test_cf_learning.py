"""NeuMF, LightGCN and the UCLR ladder learn on small synthetic data (beat a random scorer)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdrec.config import load_config
from cdrec.experiments.pipeline import run_config

RANDOM_MRR10 = sum(1 / r for r in range(1, 11)) / 100  # expected MRR@10 of a random scorer, 1+99 candidates

COMMON = ["train.progress=false", "train.batch_size=256", "train.device=cpu", "train.lr=0.01", "train.patience=2", "eval.ks=[10]",
          "data.synthetic.n_users=400", "data.synthetic.items_per_domain=250", "data.synthetic.n_domains=2", "data.synthetic.signal=1.0"]


@pytest.mark.parametrize("model", ["neumf", "lightgcn"])
def test_baselines_beat_random(model, tmp_path):
    cfg = load_config(None, [f"model={model}", "scope=single", "train.epochs=8", "model_params.dim=32", *COMMON])
    res = run_config(cfg, tmp_path / model)
    # validation (held out, used for early stopping) well above random; test (held out) above random
    assert res.valid_metrics["overall"]["MRR@10"] > 2 * RANDOM_MRR10
    assert res.metrics["overall"]["MRR@10"] > RANDOM_MRR10


def test_uclr_ladder_learns_and_reuses_pge(tmp_path):
    cache = tmp_path / "pge.pt"
    extra = ["train.epochs=10", "model_params.dim=32", "model_params.ae_epochs=2", "model_params.ae_passes=3",
             "model_params.ft_epochs=2", f"model_params.pge_cache={cache}", *COMMON]
    pge = run_config(load_config(None, ["model=pge", *extra]), tmp_path / "pge")
    assert cache.exists()
    uclr = run_config(load_config(None, ["model=uclr", *extra]), tmp_path / "uclr")
    assert uclr.valid_metrics["overall"]["MRR@10"] > 2 * RANDOM_MRR10
    assert uclr.metrics["overall"]["MRR@10"] > RANDOM_MRR10
    # the ladder reused the cached pretraining: identical PGE history, no PGE training time
    assert [h["valid"] for h in uclr.history[0]["epochs"] if h["stage"] == "pge"] == [h["valid"] for h in pge.history[0]["epochs"]]
    stages = {h["stage"] for h in uclr.history[0]["epochs"]}
    assert {"pge", "ae", "finetune:0", "finetune:1"} <= stages
    temps = np.load(tmp_path / "uclr" / "temperatures.npz")
    tau = temps["tau_ae"]
    assert tau.min() >= np.float32(1e-5) and tau.max() <= 1.0 and tau.std() > 0
    # LoRA kept W0 frozen at the pretrained user table
    state = torch.load(tmp_path / "uclr" / "model.pt", weights_only=False)["joint"]
    torch.testing.assert_close(state["heads.0.lora.weight0"], state["user_emb.weight"])


def test_uclr_options_frozen_items_and_embedding_scoring(tmp_path):
    cache = tmp_path / "pge.pt"
    extra = ["train.epochs=3", "model_params.dim=16", "model_params.ae_epochs=1", "model_params.ae_passes=2",
             "model_params.ft_epochs=2", f"model_params.pge_cache={cache}", *COMMON]
    frozen = run_config(load_config(None, ["model=uclr", "model_params.finetune_items=false", "model_params.score_with=finetuned", *extra]), tmp_path / "frozen")
    pretrained = torch.load(cache, weights_only=False)
    state = torch.load(tmp_path / "frozen" / "model.pt", weights_only=False)["joint"]
    torch.testing.assert_close(state["item_emb.weight"], pretrained["item"])  # items never finetuned
    assert frozen.metrics["overall"]["MRR@10"] > 0
    tuned = run_config(load_config(None, ["model=uclr", *extra]), tmp_path / "tuned")
    state = torch.load(tmp_path / "tuned" / "model.pt", weights_only=False)["joint"]
    finetuned = [h for h in tuned.history[0]["epochs"] if h["stage"].startswith("finetune") and h["epoch"] > 0]
    assert finetuned, "the finetune stage ran"
    if any(not torch.equal(state[f"heads.{d}.lora.lora_B"], torch.zeros_like(state[f"heads.{d}.lora.lora_B"])) for d in range(2)):
        assert not torch.equal(state["item_emb.weight"], pretrained["item"])  # a kept finetune moved the domain's items


def test_uclr_finetune_validates_with_the_runs_protocol_and_metric(tmp_path):
    """Every stage, the per-domain finetune included, is selected on ``train.metric`` under the run's
    protocol: full ranking and a cutoff other than 10 (finetune used to score 1+99 at @10 only)."""
    extra = ["model=uclr", "train.epochs=2", "model_params.dim=16", "model_params.ae_epochs=1", "model_params.ae_passes=1",
             "model_params.ft_epochs=2", *COMMON, "eval.ks=[5]", "train.metric=NDCG@5", "split.full_ranking=true"]
    res = run_config(load_config(None, extra), tmp_path / "uclr")
    assert res.protocol.endswith("/full")
    finetune = [h for h in res.history[0]["epochs"] if h["stage"].startswith("finetune")]
    assert len(finetune) >= 4 and all(np.isfinite(h["valid"]["NDCG@5"]) for h in finetune)
