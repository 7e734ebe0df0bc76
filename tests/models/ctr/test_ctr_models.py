"""Shared blocks and every CTR model: shapes, the summed per-head loss, per-domain towers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cdrec.models import registry
from cdrec.models.ctr.layers import CTRSchema, Towers

SCHEMA = CTRSchema(vocab_sizes=[11, 21, 3, 4], n_dense=1, n_domains=3, n_tasks=2)
MODELS = ["mlp", "sharedbottom", "mmoe", "ple", "star", "adatt", "adatt-sp", "m2m", "m3oe"]


def batch(n: int = 48, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "sparse": torch.randint(0, 3, (n, 4), generator=g),
        "dense": torch.randn(n, 1, generator=g),
        "domain": torch.randint(0, 3, (n,), generator=g),
        "label": torch.randint(0, 2, (n, 2), generator=g).float(),
    }


def build(name: str, **params):
    torch.manual_seed(0)
    return registry.get(name).cls.from_schema(SCHEMA, registry.build_params(name, params))


@pytest.mark.parametrize("name", MODELS)
def test_model_shapes_and_gradients(name):
    model = build(name)
    b = batch()
    logits = model(b)
    assert logits.shape == (48, 2) and torch.isfinite(logits).all()
    model.loss(b).backward()
    assert model.embedding.table.weight.grad is not None


def test_loss_sums_per_head_means():
    model = build("mmoe")
    b = batch()
    logits = model(b)
    expected = 0.0
    for d in range(3):
        mask = b["domain"] == d
        for t in range(2):
            expected += F.binary_cross_entropy_with_logits(logits[mask, t], b["label"][mask, t])
    torch.testing.assert_close(model.head_loss(logits, b), expected)


def test_towers_use_each_samples_own_domain():
    towers = Towers(3, 2, 5, 4)
    x = torch.randn(10, 2, 5)
    domain = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    out = towers(x, domain)
    for i in range(10):
        d = int(domain[i])
        for t in range(2):
            h = torch.relu(x[i, t] @ towers.w1[d, t] + towers.b1[d, t])
            torch.testing.assert_close(out[i, t], h @ towers.w2[d, t] + towers.b2[d, t])
    shared = torch.randn(10, 5)
    torch.testing.assert_close(towers(shared, domain), towers(shared.unsqueeze(1).expand(-1, 2, -1), domain))


def test_domain_specific_heads_are_separate():
    """A sample of domain 0 does not touch domain 1's tower."""
    model = build("mmoe")
    b = batch()
    b["domain"] = torch.zeros_like(b["domain"])
    model.loss(b).backward()
    assert model.towers.w1.grad[1].abs().sum() == 0 and model.towers.w1.grad[0].abs().sum() > 0
