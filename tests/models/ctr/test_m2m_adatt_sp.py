"""M2M and AdaTT-sp: M2M's meta unit, meta attention and meta tower by hand, AdaTT-sp as AdaTT
without shared experts, and for both a gradient in every parameter, a seeded rerun and a planted
cross-domain signal that the model finds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from cdrec.errors import CdrecError
from cdrec.models import registry
from cdrec.models.ctr.layers import own_domain
from cdrec.models.ctr.m2m import per_domain
from tests.models.ctr.test_ctr_models import SCHEMA, batch, build

NEW = ["m2m", "adatt-sp"]


@pytest.mark.parametrize("name", NEW)
def test_every_parameter_gets_a_gradient(name):
    model = build(name)
    model.loss(batch(96)).backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not silent, silent


@pytest.mark.parametrize("name", NEW)
def test_seeded_rerun_is_identical(name):
    def trained():
        model = build(name)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for step in range(4):
            opt.zero_grad()
            model.loss(batch(64, seed=step)).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            return model(batch(32, seed=9))

    torch.testing.assert_close(trained(), trained(), rtol=0, atol=0)


def planted(n: int, seed: int, *, train: bool) -> dict[str, torch.Tensor]:
    """click = field 0 below 5, flipped in domain 1; like = click and field 1 below 10. Domain 2
    follows domain 0's rule but its training rows only show field-0 values 0-2 and 8-10: its
    middle values (3-7, the test rows) can only be scored right by carrying domain 0's rule over."""
    g = torch.Generator().manual_seed(seed)
    sparse = torch.stack([torch.randint(0, v, (n,), generator=g) for v in SCHEMA.vocab_sizes], dim=1)
    domain = torch.randint(0, 3, (n,), generator=g)
    middle = (sparse[:, 0] >= 3) & (sparse[:, 0] <= 7)
    keep = ~(middle & (domain == 2)) if train else (middle & (domain == 2))
    sparse, domain = sparse[keep], domain[keep]
    click = (sparse[:, 0] < 5) ^ (domain == 1)
    like = click & (sparse[:, 1] < 10)
    return {"sparse": sparse, "dense": torch.zeros(len(domain), 1), "domain": domain, "label": torch.stack([click, like], 1).float()}


@pytest.mark.parametrize("name", NEW)
def test_finds_a_planted_cross_domain_signal(name):
    model = build(name, hidden=32, tower_hidden=16)
    data = planted(4000, seed=0, train=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(120):
        idx = torch.randint(0, len(data["domain"]), (256,), generator=g)
        opt.zero_grad()
        model.loss({k: v[idx] for k, v in data.items()}).backward()
        opt.step()
    model.eval()
    unseen = planted(3000, seed=1, train=False)  # domain 2, field-0 values 3-7 only
    with torch.no_grad():
        probs = model.predict(unseen)
    for t in range(2):
        assert roc_auc_score(unseen["label"][:, t].numpy(), probs[:, t].numpy()) > 0.9, (name, t)


# ---------------------------------------------------------------- M2M by hand
def test_per_domain_product_uses_each_samples_own_domain():
    g = torch.Generator().manual_seed(0)
    h, w, b = torch.randn(9, 2, 3, 4, generator=g), torch.randn(3, 2, 4, 5, generator=g), torch.randn(3, 2, 5, generator=g)
    domain = torch.tensor([2, 0, 1, 1, 2, 0, 0, 2, 1])
    reference = own_domain(torch.einsum("bgmi,dgio->bdgmo", h, w) + b[None, :, :, None], domain)
    torch.testing.assert_close(per_domain(h, domain, w, b), reference)


def test_m2m_follows_the_meta_unit_attention_and_tower():
    model = build("m2m", tower_layers=1)
    model.eval()
    b = batch(6)
    with torch.no_grad():
        x = model.embedding(b["sparse"], b["dense"])
        experts = model.experts(model.features(x))
        knowledge = model.scenario(torch.arange(3))
        tasks = model.task_view(torch.arange(2))
        att = model.attention.layers[0]
        tower = model.meta_tower[0]
        logits = model(b)
        for i in range(6):
            d = int(b["domain"][i])
            w_att = att.gen_weight(knowledge[d]).view(128, 64) / 128**0.5  # W = reshape(V_w S + b_w) / sqrt(fan_in)
            b_att = att.gen_bias(knowledge[d])
            w_tow = tower.gen_weight(knowledge[d]).view(2, 64, 64) / 64**0.5
            b_tow = tower.gen_bias(knowledge[d]).view(2, 64)
            for t in range(2):
                scores = torch.stack([F.relu(torch.cat([experts[i, e], tasks[t]]) @ w_att + b_att) @ model.v for e in range(4)])
                r = torch.softmax(scores, 0) @ experts[i]  # R_t = sum_i alpha_{t,i} E_i
                hidden = F.relu(r @ w_tow[t] + b_tow[t] + r)  # L^(1) = sigma(W(S) R + b(S) + R)
                tw = model.towers
                expected = F.relu(hidden @ tw.w1[0, t] + tw.b1[0, t]) @ tw.w2[0, t] + tw.b2[0, t]
                torch.testing.assert_close(logits[i, t], expected)


def test_m2m_domains_reach_the_network_only_through_their_scenario_knowledge():
    model = build("m2m")
    b = batch()
    b["domain"] = torch.zeros_like(b["domain"])
    model.loss(b).backward()
    grad = model.scenario[0].weight.grad
    assert grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0
    model.zero_grad()
    with torch.no_grad():
        moved = dict(b, domain=torch.full_like(b["domain"], 2))
        assert not torch.allclose(model(b), model(moved))


def test_m2m_options_and_errors():
    shared = build("m2m", tower_per_task=False, transformer_layers=0, attention_layers=2, tower_layers=2)
    assert shared.transformer is None and shared.meta_tower[0].shape == (1, 64, 64) and len(shared.attention.layers) == 2
    assert shared(batch()).shape == (48, 2)
    assert build("m2m").meta_tower[0].shape == (2, 64, 64)
    with pytest.raises(CdrecError, match=r"model_params.n_heads \(m2m\): expected a divisor of embed_dim = 16, got 3"):
        build("m2m", n_heads=3)


# ---------------------------------------------------------------- AdaTT-sp
def test_adatt_sp_is_adatt_without_shared_experts():
    sp, plain = build("adatt-sp", mode="mdmt"), build("adatt", mode="mdmt", n_shared=0)
    assert registry.build_params("adatt-sp", {}).n_shared == 0 and registry.build_params("adatt", {}).n_shared == 1
    assert sp.experts.n_experts == 6 and build("adatt").experts.n_experts == 7  # D x T heads, one expert each (+ 1 shared)
    assert {k: v.shape for k, v in sp.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    b = batch()
    torch.testing.assert_close(sp(b), plain(b))
    with pytest.raises(CdrecError, match=r"model_params.n_shared \(adatt-sp\): expected a number in \[0, 0\], got 1"):
        registry.build_params("adatt-sp", {"n_shared": 1})
