"""M3oE: Eqs. 5-7 by hand, the bi-level step (fusion weights learn only on held-out batches) and
the Table 3 ablation switches."""

from __future__ import annotations

import itertools

import pytest
import torch

from cdrec.config import TrainConfig
from cdrec.models import registry
from cdrec.models.ctr.layers import CTRSchema
from tests.models.ctr.test_ctr_models import batch

SCHEMA = CTRSchema(vocab_sizes=[11, 21, 3, 4], n_dense=1, n_domains=3, n_tasks=2)


def m3oe(**params):
    torch.manual_seed(0)
    return registry.get("m3oe").cls.from_schema(SCHEMA, registry.build_params("m3oe", params))


def set_fusion(model, beta_d=(0.3, -0.5, 1.0), beta_t=(0.7, -0.2), alpha_d=(0.1, 0.4, -0.9), alpha_t=(-0.3, 0.8)):
    with torch.no_grad():
        model.e_beta_d.copy_(torch.tensor(beta_d))
        model.e_beta_t.copy_(torch.tensor(beta_t))
        model.e_alpha_d.copy_(torch.tensor(alpha_d))
        model.e_alpha_t.copy_(torch.tensor(alpha_t))


def test_views_follow_equations_5_to_7():
    model = m3oe()
    set_fusion(model)
    b = batch(12)
    with torch.no_grad():
        x = model.embedding(b["sparse"], b["dense"])
        v = model.views(x, b["domain"])
    w = {k: torch.sigmoid(getattr(model, f"e_{k}")) for k in ("beta_d", "beta_t", "alpha_d", "alpha_t")}
    for i in range(12):
        d = int(b["domain"][i])
        dom_e, task_e = v["domain_experts"][i], v["task_experts"][i]
        others = [j for j in range(3) if j != d]
        expected_dom = w["beta_d"][d] * dom_e[d] + (1 - w["beta_d"][d]) / 2 * dom_e[others].sum(0)  # Eq. 5
        torch.testing.assert_close(v["domain"][i, 0], expected_dom)
        for t in range(2):
            expected_task = w["beta_t"][t] * task_e[t] + (1 - w["beta_t"][t]) * task_e[1 - t]  # Eq. 6, T = 2
            torch.testing.assert_close(v["task"][i, t], expected_task)
            fused = v["shared"][i, t] + w["alpha_d"][d] * expected_dom + w["alpha_t"][t] * expected_task  # Eq. 7
            torch.testing.assert_close(v["fused"][i, t], fused)


def test_fusion_weights_get_gradient_only_from_the_heldout_step():
    model = m3oe(arch_every=1)
    opts = model.configure_optimizers(TrainConfig(lr=1e-2))
    arch = model.arch_parameters()
    assert len(arch) == 4 and {id(p) for p in opts[1].param_groups[0]["params"]} == {id(p) for p in arch}
    assert not {id(p) for p in arch} & {id(p) for p in opts[0].param_groups[0]["params"]}
    before = [p.detach().clone() for p in arch]
    # lower level on a training batch, no held-out stream attached: no gradient reaches the weights
    model.train_step(batch(64, seed=1), opts)
    assert all(p.grad is None for p in arch)
    assert all(torch.equal(p, q) for p, q in zip(arch, before))
    assert model.w_sh.grad is not None
    # upper level on a held-out batch: only the weights get a gradient; W's gradients are untouched
    w_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.arch_step(batch(64, seed=2), opts[1])
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in arch)
    assert not all(torch.equal(p, q) for p, q in zip(arch, before))
    for name, p in model.named_parameters():
        if name in w_grads:
            assert torch.equal(p.grad, w_grads[name]), name


def heldout_draws(model, steps: int) -> int:
    """How many held-out batches ``steps`` training steps draw (one per fusion-weight update)."""
    opts = model.configure_optimizers(TrainConfig(lr=1e-2))
    drawn = []

    def stream():
        for k in itertools.count():
            drawn.append(k)
            yield batch(32, seed=100 + k)

    model.heldout = stream()
    for step in range(steps):
        model.train_step(batch(32, seed=step), opts)
    return len(drawn)


def test_train_step_draws_heldout_batches_every_k_steps():
    assert heldout_draws(m3oe(arch_every=2), 4) == 2


def test_arch_every_zero_steps_the_fusion_weights_once_per_epoch():
    """Section 2.6 literally: one epoch of W updates, then one held-out batch for the weights."""
    model = m3oe(arch_every=0)
    model.steps_per_epoch = 3
    assert heldout_draws(model, 7) == 2
    with pytest.raises(Exception, match="arch_every"):
        m3oe(arch_every=-1)


def output(model, b):
    with torch.no_grad():
        return model(b)


@pytest.mark.parametrize("ablation", ["no_automl", "gated"])
def test_fixed_weight_ablations_ignore_the_fusion_logits(ablation):
    model = m3oe(ablation=ablation)
    assert model.arch_parameters() == []
    b = batch()
    before = output(model, b)
    set_fusion(model)
    torch.testing.assert_close(output(model, b), before)
    if ablation == "no_automl":
        assert all(torch.all(v == 0.5) for v in model.fusion_weights().values())
        ref = m3oe()  # e = 0 gives sigmoid(0) = 0.5 everywhere: same computation as fixed 0.5
        torch.testing.assert_close(output(ref, b), before)
    else:
        assert model.gates.n_experts == 1 + 3 + 2


def test_full_model_depends_on_the_fusion_logits():
    model = m3oe()
    b = batch()
    before = output(model, b)
    set_fusion(model)
    assert not torch.allclose(output(model, b), before)


def test_concat_ablation_concatenates_modules():
    model = m3oe(ablation="concat")
    b = batch(8)
    with torch.no_grad():
        v = model.views(model.embedding(b["sparse"], b["dense"]), b["domain"])
    assert v["fused"].shape[-1] == 3 * model.params.hidden and model.towers.w1.shape[2] == 3 * model.params.hidden
    torch.testing.assert_close(v["fused"][..., : model.params.hidden], v["shared"])


@pytest.mark.parametrize(
    "ablation, uses_domain, uses_task",
    [("none", True, True), ("no_domain", False, True), ("no_task", True, False), ("no_domain_task", False, False)],
)
def test_module_removal_switches(ablation, uses_domain, uses_task):
    model = m3oe(ablation=ablation)
    set_fusion(model)
    b = batch(16)
    with torch.no_grad():
        v = model.views(model.embedding(b["sparse"], b["dense"]), b["domain"])
    w = model.fusion_weights()
    expected = v["shared"].clone()
    if uses_domain:
        expected += w["alpha_d"][b["domain"]].view(-1, 1, 1) * v["domain"]
    if uses_task:
        expected += w["alpha_t"].view(1, 2, 1) * v["task"]
    torch.testing.assert_close(v["fused"], expected)
    # the alpha of a removed module has no effect on the output
    before = output(model, b)
    with torch.no_grad():
        model.e_alpha_d.add_(2.0)
    assert torch.allclose(output(model, b), before) == (not uses_domain)
    before = output(model, b)
    with torch.no_grad():
        model.e_alpha_t.add_(2.0)
    assert torch.allclose(output(model, b), before) == (not uses_task)


def test_unknown_ablation_is_a_user_error():
    from cdrec.errors import CdrecError

    with pytest.raises(CdrecError, match="ablation"):
        m3oe(ablation="w/o everything")


def test_expert_layers_stack_equation_3_and_keep_the_one_layer_state_dict():
    """``expert_layers=2`` (the authors' code) feeds every expert's Eq. 3 output through a second Eq. 3
    layer of its own; the default (the paper's one layer) keeps the state dict saved by earlier runs."""
    one, two = m3oe(), m3oe(expert_layers=2)
    assert set(one.state_dict()) < set(two.state_dict())
    assert {k for k in set(two.state_dict()) - set(one.state_dict())} == {f"deeper_experts.0.{n}" for n in ("weight", "bias", "gamma", "beta")}
    b = batch(6)
    x = two.embedding(b["sparse"], b["dense"])
    first = two.experts(two.represent(x, b["domain"]))
    expected = two.deeper_experts[0](first)  # per expert: ReLU(LayerNorm(W_e' e + b_e'))
    w, bias = two.deeper_experts[0].weight, two.deeper_experts[0].bias
    z = torch.nn.functional.layer_norm(torch.einsum("bei,ieo->beo", first, w) + bias, (w.shape[-1],))
    torch.testing.assert_close(expected, torch.relu(z * two.deeper_experts[0].gamma + two.deeper_experts[0].beta))
    torch.testing.assert_close(two.views(x, b["domain"])["domain_experts"], expected[:, 1:4])
    from cdrec.errors import CdrecError

    with pytest.raises(CdrecError, match="expert_layers"):
        m3oe(expert_layers=0)
