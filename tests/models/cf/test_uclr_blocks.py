"""UCLR building blocks: Eq. 3 against a hand computation, temperature clipping, LoRA start and freeze."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cdrec.models.cf.blocks import LoRAEmbedding, user_aware_contrastive_loss
from cdrec.models.cf.uclr import ContrastiveAE, UCLRParams


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_contrastive_loss_matches_hand_computation():
    anchor = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]
    positive = [[2.0, 1.0], [0.0, 1.0], [-1.0, 1.0]]
    tau = [0.5, 0.2, 1.0]
    expected = []
    for i in range(3):
        s_ii = _cos(anchor[i], positive[i])
        neg = sum(math.exp(_cos(anchor[i], positive[k]) / tau[i]) for k in range(3) if k != i)
        expected.append(-tau[i] * math.log(math.exp(s_ii / tau[i]) / neg))
    got = user_aware_contrastive_loss(torch.tensor(anchor), torch.tensor(positive), torch.tensor(tau))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    # the KL-constraint term adds tau_i * (rho - log(n - 1)) per anchor
    got_rho = user_aware_contrastive_loss(torch.tensor(anchor), torch.tensor(positive), torch.tensor(tau), rho=0.3)
    np.testing.assert_allclose(got_rho.numpy(), [e + t * (0.3 - math.log(2)) for e, t in zip(expected, tau)], rtol=1e-5)
    # a scalar temperature is one global temperature for every anchor
    glob = user_aware_contrastive_loss(torch.tensor(anchor), torch.tensor(positive), torch.tensor(0.5))
    assert glob[0].item() == pytest.approx(expected[0], rel=1e-5)


def test_eq3_temperature_gradient_is_the_negatives_entropy():
    torch.manual_seed(0)
    a, p = torch.randn(5, 4), torch.randn(5, 4)
    tau = torch.full((5,), 0.3, requires_grad=True)
    user_aware_contrastive_loss(a, p, tau).sum().backward()
    sim = torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(p, dim=-1).T
    for i in range(5):
        neg = torch.cat([sim[i, :i], sim[i, i + 1 :]]) / 0.3
        prob = torch.softmax(neg, 0)
        entropy = -(prob * prob.log()).sum()
        assert tau.grad[i].item() == pytest.approx(entropy.item(), rel=1e-4)


def test_temperatures_stay_in_bounds_after_updates():
    torch.manual_seed(0)
    params = UCLRParams(dim=8, hidden=[8, 4], tau_init=0.5, tau_min=1e-5, tau_max=1.0, tau_lr=5.0, rho=None)
    ae = ContrastiveAE(8, 30, params)
    opt = torch.optim.Adam(ae.optimizer_groups())
    x = torch.randn(30, 8)
    users = torch.arange(30)
    for _ in range(20):
        opt.zero_grad()
        ae.loss(x, users).backward()
        opt.step()
        ae.clip()
        tau = ae.tau.detach()
        assert bool((tau >= torch.tensor(1e-5)).all()) and bool((tau <= 1.0).all())
    assert float(ae.tau.detach().min()) == pytest.approx(1e-5)  # Eq. 3 alone pushes temperatures down to the clip
    # whole-user masking leaves most users' two streams identical (similarity 1), the case that drives
    # the KL term to the upper clip within these steps
    params_up = UCLRParams(dim=8, hidden=[8, 4], tau_init=0.5, tau_lr=5.0, rho=10.0, mask_mode="row")
    ae_up = ContrastiveAE(8, 30, params_up)
    opt = torch.optim.Adam(ae_up.optimizer_groups())
    for _ in range(20):
        opt.zero_grad()
        ae_up.loss(x, users).backward()
        opt.step()
        ae_up.clip()
    assert float(ae_up.tau.detach().max()) == pytest.approx(1.0)  # a large rho pushes them up to the upper clip


def test_lora_starts_at_w0_and_leaves_it_unchanged():
    torch.manual_seed(0)
    w0 = torch.randn(10, 6)
    lora = LoRAEmbedding(w0, rank=2)
    idx = torch.arange(10)
    assert torch.equal(lora.lora_B, torch.zeros(10, 2))
    assert torch.equal(lora(idx), w0)
    assert [n for n, _ in lora.named_parameters()] == ["lora_B", "lora_A"]
    opt = torch.optim.Adam(lora.parameters(), lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        (lora(idx) - 1.0).pow(2).sum().backward()
        opt.step()
    assert torch.equal(lora.weight0, w0)
    assert not torch.equal(lora(idx), w0)
    torch.testing.assert_close(lora.merged(), w0 + lora.lora_B @ lora.lora_A)
