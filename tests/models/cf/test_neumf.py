"""NeuMF (He et al., WWW 2017): the scores and the loss are NeuMF's Eq. 12 on the concatenated MLP input;
the log loss (Eq. 7) labels each positive 1 and its ``negatives`` sampled items 0 (section 4.1: 4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cdrec.config import load_config
from cdrec.errors import CdrecError
from cdrec.experiments.pipeline import run_config
from cdrec.models import registry
from cdrec.train.tasks import task_for, training_sampler

SYNTHETIC = ["scope=single", "train.progress=false", "train.device=cpu", "train.batch_size=256", "eval.ks=[10]", "model_params.dim=8",
             "data.synthetic.n_users=400", "data.synthetic.items_per_domain=250", "data.synthetic.n_domains=2", "data.synthetic.signal=1.0"]


def test_logits_are_eq12_on_the_concatenated_mlp_input():
    """``h^T [p^G * q^G ; MLP([p^M ; q^M])]`` for every candidate (the tower's first layer takes the user's
    half once per row), and the L2 term is every candidate's four squared embedding norms."""
    torch.manual_seed(0)
    model = registry.get("neumf").cls(7, 20, registry.build_params("neumf", {"dim": 6, "layers": [5, 3], "init_std": 0.5})).eval()
    users, items = torch.tensor([0, 3, 6]), torch.tensor([[1, 2, 19, 4], [0, 0, 5, 9], [7, 8, 1, 3]])
    ug, um = model.user_gmf(users)[:, None].expand(-1, 4, -1), model.user_mlp(users)[:, None].expand(-1, 4, -1)
    ig, im = model.item_gmf(items), model.item_mlp(items)
    expected = model.predict(torch.cat([ug * ig, model.tower(torch.cat([um, im], -1))], -1)).squeeze(-1)
    logits, l2 = model._logits(users, items)
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(model.score(users, items), expected)
    torch.testing.assert_close(l2, sum(t.pow(2).sum(-1) for t in (ug, um, ig, im)))
    batch = {"user": users, "pos": items[:, 0], "neg": items[:, 1]}
    bce = F.binary_cross_entropy_with_logits(expected[:, :2], torch.tensor([[1.0, 0.0]]).expand(3, -1))
    torch.testing.assert_close(model.loss(batch), bce + model.params.reg * l2[:, :2].mean())


def tiny_model(negatives: int):
    torch.manual_seed(0)
    params = registry.build_params("neumf", {"dim": 4, "layers": [3], "init_std": 0.5, "reg": 0.01, "negatives": negatives})
    return registry.get("neumf").cls(5, 12, params)


@pytest.mark.parametrize("model,expected", [("neumf", 4), ("bprmf", 1), ("lightgcn", 1)])
def test_the_sampler_draws_the_models_negatives(model, expected):
    """The ranking task's sampler draws NeuMF's 4 negatives per positive (``neg`` ``[B, 4]``), distinct
    per row and never one of the user's training items; every other model keeps one (``neg`` ``[B]``)."""
    cfg = load_config(None, [f"model={model}", *SYNTHETIC])
    task = task_for(model)
    prepared = task.prepare(cfg)
    _, split = prepared.scopes[0]
    sampler = training_sampler(task.build_model(cfg, split, prepared.params), split, cfg)
    assert sampler.n_negatives == expected
    batches = list(sampler.epoch(0))
    neg = np.concatenate([b["neg"] for b in batches])
    users = np.concatenate([b["user"] for b in batches])
    assert neg.shape == ((len(split.train.users), 4) if expected == 4 else (len(split.train.users),))
    neg = neg.reshape(len(users), -1)
    assert (np.sort(neg, 1)[:, 1:] != np.sort(neg, 1)[:, :-1]).all()  # distinct per row
    trained = set((split.train.users.astype(np.int64) * split.train.n_items + split.train.items).tolist())
    assert not set((users[:, None] * split.train.n_items + neg).ravel().tolist()) & trained
    start, stop = split.data.domain_item_range(0)
    assert ((neg >= start) & (neg < stop)).all()


def test_loss_is_the_log_loss_over_the_positive_and_four_negatives():
    """Eq. 7 by hand: ``-(log s(y_ui) + sum_j log(1 - s(y_uj)))`` averaged over the ``B * (1 + 4)`` logits,
    plus ``reg`` times the mean squared norm of the candidates' embeddings."""
    model = tiny_model(4)
    users, pos = torch.tensor([0, 2, 4]), torch.tensor([1, 5, 11])
    neg = torch.tensor([[0, 2, 3, 4], [6, 7, 8, 9], [10, 1, 2, 3]])
    logits, l2 = model._logits(users, torch.cat([pos[:, None], neg], 1))
    assert logits.shape == (3, 5)
    sig = torch.sigmoid(logits)
    by_hand = -(torch.log(sig[:, 0]).sum() + torch.log(1 - sig[:, 1:]).sum()) / 15
    torch.testing.assert_close(model.loss({"user": users, "pos": pos, "neg": neg}), by_hand + 0.01 * l2.mean())


def test_one_negative_is_the_pointwise_pair_loss_exactly():
    """``negatives=1`` (``neg`` ``[B]``) is the loss cdrec trained NeuMF with before, bit for bit."""
    model = tiny_model(1)
    assert model.train_negatives == 1
    users, pos, neg = torch.tensor([0, 2, 4]), torch.tensor([1, 5, 11]), torch.tensor([3, 6, 10])
    logits, l2 = model._logits(users, torch.stack([pos, neg], dim=1))
    before = F.binary_cross_entropy_with_logits(logits, torch.tensor([[1.0, 0.0]]).expand(3, -1)) + 0.01 * l2.mean()
    assert torch.equal(model.loss({"user": users, "pos": pos, "neg": neg}), before)


def test_negatives_is_bounded():
    with pytest.raises(CdrecError, match=r"model_params.negatives \(neumf\): expected a number >= 1, got 0"):
        registry.build_params("neumf", {"negatives": 0})


def test_seeded_runs_with_four_negatives_repeat(tmp_path):
    """Two seeded runs with the default 4 negatives give the same history; 1 negative trains differently."""
    extra = [*SYNTHETIC, "model=neumf", "train.epochs=2", "train.patience=5"]
    runs = [run_config(load_config(None, [*extra, *more]), tmp_path / str(k))
            for k, more in enumerate([[], [], ["model_params.negatives=1"]])]
    assert runs[0].history == runs[1].history and runs[0].metrics == runs[1].metrics
    valid = [[e["valid"] for e in r.history[0]["epochs"]] for r in runs]
    assert valid[0] != valid[2]
