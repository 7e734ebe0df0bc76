"""MERIT: extended causal masks, stop-gradient residual, padding, ablation switches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cdrec.models import registry
from cdrec.models.sequential.blocks import attention_mask, extended_causal_mask
from cdrec.models.sequential.merit import ABLATIONS, MERIT, MERITParams

OFFSETS = np.array([0, 30, 70])


def make_batch(b: int = 6, length: int = 12, seed: int = 0, pad_to: int | None = None) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    items = np.zeros((b, length), dtype=np.int64)
    for r in range(b):
        n = rng.integers(3, length + 1)
        items[r, length - n :] = rng.integers(1, 71, n)
    doms = np.where(items > 0, (items - 1 >= 30).astype(np.int64), -1)
    targets = np.zeros_like(items)
    targets[:, :-1] = items[:, 1:]
    targets[:, -1] = rng.integers(1, 71, b)
    dom_t = np.zeros_like(items)
    for r in range(b):  # next event of the same domain (0 when none)
        for i in range(length):
            if items[r, i]:
                later = [x for x in list(items[r, i + 1 :]) + [targets[r, -1]] if x and (x - 1 >= 30) == (items[r, i] - 1 >= 30)]
                dom_t[r, i] = later[0] if later else 0
    if pad_to:
        extra = pad_to - length
        items, targets, dom_t = (np.pad(a, ((0, 0), (extra, 0))) for a in (items, targets, dom_t))
        doms = np.pad(doms, ((0, 0), (extra, 0)), constant_values=-1)
    return {k: torch.as_tensor(v) for k, v in dict(items=items, domains=doms, targets=targets, domain_targets=dom_t).items()}


def model(**kw) -> MERIT:
    torch.manual_seed(0)
    params = MERITParams(dim=16, n_heads=2, dropout=0.0, max_len=24, n_negatives=8, **kw)
    return MERIT(70, OFFSETS, params)


def test_extended_causal_mask_hides_the_future_of_both_sequences():
    length = 5
    valid_m = torch.ones(1, length, dtype=torch.bool)
    valid_b = torch.tensor([[True, False, True, False, True]])
    mask = extended_causal_mask([valid_m, valid_b], self_visible=None)[0, 0]
    assert mask.shape == (length, 2 * length)
    for i in range(length):
        for part in range(2):
            for j in range(length):
                if j > i:
                    assert not mask[i, part * length + j], (i, part, j)
        assert mask[i, : i + 1].all()  # the whole mixed past is visible
        assert torch.equal(mask[i, length : length + i + 1], valid_b[0, : i + 1])
    causal = attention_mask(valid_b, causal=True)[0, 0]
    assert not causal.triu(1).any()


@pytest.mark.parametrize("ablation,extra", [("none", {}), ("SF1", {}), ("SF2", {}), ("SF3", {}), ("MF1", {}), ("none", {"null_key": True})])
def test_no_position_sees_a_future_item_of_any_stream(ablation, extra):
    net = model(ablation=ablation, **extra).eval()
    batch = make_batch(b=4, length=10)
    items, doms = batch["items"].clone(), batch["domains"].clone()
    t = 5
    with torch.no_grad():
        ref = net(items, doms)
        # replace every later item by another item of the same domain (the reversed in-domain
        # positions of section 4.2 count later events per domain, so the domain pattern stays)
        later = doms[:, t + 1 :]
        future = torch.where(later == 0, torch.randint(1, 31, later.shape), torch.randint(31, 71, later.shape))
        items2 = items.clone()
        items2[:, t + 1 :] = future
        doms2 = doms
        assert not torch.equal(items2, items)
        out = net(items2, doms2)
    for s in "MAB":
        assert torch.isfinite(out[s]).all()
        assert torch.allclose(ref[s][:, : t + 1], out[s][:, : t + 1], atol=1e-5), s


def mixed_only_params(net: MERIT) -> dict[str, torch.nn.Parameter]:
    """Parameters reachable only through h_M^F (CAF_M, its FFN, the H_M expert/norm/gate of moFFN_M)."""
    out = {f"caf.M.{n}": p for n, p in net.caf["M"].named_parameters()}
    out.update({f"ffn.M.{n}": p for n, p in net.ffn["M"].named_parameters()})
    out.update({f"moffn.M.experts.0.{n}": p for n, p in net.moffn["M"].experts[0].named_parameters()})
    out.update({f"moffn.M.norms.0.{n}": p for n, p in net.moffn["M"].norms[0].named_parameters()})
    return out


def domain_grads(ablation: str) -> dict[str, float]:
    net = model(ablation=ablation).train()
    torch.manual_seed(1)
    net.loss_terms(make_batch())["AB"].backward()
    return {n: 0.0 if p.grad is None else float(p.grad.abs().sum()) for n, p in mixed_only_params(net).items()}


def test_stop_gradient_keeps_domain_losses_off_the_mixed_stream():
    grads = domain_grads("none")
    assert grads and all(g == 0.0 for g in grads.values()), grads
    # without the stop-gradient (RL1) the domain losses do reach those parameters
    assert sum(domain_grads("RL1").values()) > 0
    # while the mixed loss reaches them in every variant
    net = model().train()
    net.loss_terms(make_batch())["M"].backward()
    assert sum(float(p.grad.abs().sum()) for p in mixed_only_params(net).values() if p.grad is not None) > 0


@pytest.mark.parametrize("name,extra", [("merit", {}), ("merit", {"negatives": "position"}), ("merit", {"loss_norm": "pooled"}), ("merit", {"null_key": True}), ("sasrec-dt", {}), ("sasrec-dt", {"loss": "full", "n_layers": 1}),
                                        ("abxi", {}), ("abxi", {"negatives": "position"})])
def test_padding_contributes_nothing_to_the_loss(name, extra):
    entry = registry.get(name)
    params = registry.build_params(name, {"dim": 16, "n_heads": 2, "dropout": 0.0, "max_len": 24, "n_negatives": 8, **extra})
    torch.manual_seed(0)
    net = entry.cls(70, OFFSETS, params).eval()
    short, long = make_batch(length=10), make_batch(length=10, pad_to=20)
    torch.manual_seed(5)
    a = net.loss(short)
    torch.manual_seed(5)
    b = net.loss(long)
    assert torch.isfinite(a) and torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_every_ablation_trains_and_scores(ablation):
    net = model(ablation=ablation).train()
    batch = make_batch()
    loss = net.loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    net.eval()
    ev = {"items": batch["items"], "domains": batch["domains"], "candidates": torch.randint(1, 71, (6, 5)), "target_domain": torch.tensor([0, 1, 0, 1, 0, 1])}
    with torch.no_grad():
        scores = net.score(ev)
    assert scores.shape == (6, 5) and torch.isfinite(scores).all()
    if ablation != "FF1":
        gates = net.gate_weights(ev)
        assert set(gates) == {"M", "M2A", "M2B", "A", "A2M", "A2B", "B", "B2M", "B2A"}
        g = gates["M"]
        assert torch.allclose(g.sum(-1), torch.ones(6))


def test_ablations_change_the_model():
    batch = make_batch()
    base = model().eval()
    with torch.no_grad():
        ref = base(batch["items"], batch["domains"])["A"]
        for ab in ("SF1", "SF2", "SF3", "SF4"):
            other = model(ablation=ab).eval()
            other.load_state_dict(base.state_dict())
            assert not torch.allclose(other(batch["items"], batch["domains"])["A"], ref), ab


def test_wrong_ablation_is_a_user_error():
    from cdrec.errors import CdrecError

    with pytest.raises(CdrecError, match="ablation"):
        model(ablation="XX")


def test_authors_code_defaults_attention_dropout_init_and_width():
    net = MERIT(70, OFFSETS, MERITParams(dim=48, n_heads=2, dropout=0.5, max_len=24, n_negatives=8))
    assert all(b.mha.dropout == 0.0 and b.drop.p == 0.5 for b in (*net.sa.values(), *net.caf.values()))
    old = MERIT(70, OFFSETS, MERITParams(dim=48, n_heads=2, dropout=0.5, max_len=24, n_negatives=8, attn_dropout=-1, init="torch"))
    assert all(b.mha.dropout == 0.5 for b in old.sa.values())
    # authors' init_weights: N(0, 0.02) Linear layers, Xavier-uniform fused in-projections, zero biases
    w = net.moffn["A"].experts[0].w1.weight.detach()
    assert w.shape == (128, 48) and abs(float(w.std()) - 0.02) < 0.003
    assert abs(float(old.moffn["A"].experts[0].w1.weight.detach().std()) - 0.02) > 0.01  # PyTorch's default differs
    bound = math.sqrt(6.0 / (4 * 48))
    q = net.sa["M"].mha.q.weight.detach()
    assert float(q.abs().max()) <= bound and float(q.abs().max()) > 0.9 * bound
    assert float(net.sa["M"].mha.kv.bias.detach().abs().max()) == 0.0 and abs(float(net.sa["M"].mha.out.weight.detach().std()) - 0.02) < 0.005
    for emb in (net.item_emb, net.pos_emb):
        assert float(emb.weight.detach().abs().max()) <= 0.04 and float(emb.weight.detach()[0].abs().max()) == 0.0
    wide = MERIT(70, OFFSETS, MERITParams(dim=48, n_heads=2, max_len=24, n_negatives=8, ffn_dim=680))
    assert wide.moffn["B"].shared.w1.weight.shape == (680, 48) and wide.ffn["M"].ffn.w3.weight.shape == (48, 680)


def test_loss_norm_domain_weights_each_target_domain_like_the_authors():
    """``domain``: L_M = mean over A-target positions + mean over B-target positions (per sequence,
    then over all sequences). With one sequence whose targets are all in one domain it equals the
    pooled mean; with both domains present the two differ."""
    batch = make_batch(b=6, length=12, seed=3)
    tdom = (batch["targets"] - 1 >= 30) & (batch["targets"] > 0)
    one = next(r for r in range(6) if tdom[r].any() and (~tdom[r] & (batch["targets"][r] > 0)).any())
    row = {k: v[one : one + 1] for k, v in batch.items()}
    only_a = {k: v.clone() for k, v in row.items()}
    keep_a = (only_a["targets"] > 0) & ~tdom[one : one + 1]
    only_a["targets"] = torch.where(keep_a, only_a["targets"], torch.zeros_like(only_a["targets"]))
    terms = {}
    for norm in ("domain", "pooled"):
        net = model(loss_norm=norm).eval()
        for name, b in (("a", only_a), ("mixed", row)):
            torch.manual_seed(7)
            terms[norm, name] = float(net.loss_terms(b)["M"].detach())
    assert terms["domain", "a"] == pytest.approx(terms["pooled", "a"], rel=1e-6)
    assert terms["domain", "mixed"] != pytest.approx(terms["pooled", "mixed"], rel=1e-3)


def test_wrong_init_or_loss_norm_is_a_user_error():
    from cdrec.errors import CdrecError

    with pytest.raises(CdrecError, match="init"):
        model(init="xavier")
    with pytest.raises(CdrecError, match="loss_norm"):
        model(loss_norm="mean")


def test_attend_padding_is_off_by_default_and_then_padding_changes_the_loss():
    """The authors' code lets attention see empty slots (bias-only keys); the default masks them,
    which is what keeps left padding out of the loss (test above). With ``attend_padding`` the same
    padded batch gives a different loss, so the switch really changes the attention."""
    assert MERITParams().attend_padding is False
    short, long = make_batch(length=10), make_batch(length=10, pad_to=20)
    net = model(attend_padding=True).eval()
    torch.manual_seed(5)
    a = net.loss(short)
    torch.manual_seed(5)
    b = net.loss(long)
    assert torch.isfinite(a) and torch.isfinite(b) and not torch.allclose(a, b, atol=1e-4)


def test_null_key_is_one_extra_slot_every_query_sees():
    """``null_key`` adds the projection of a zero input as a key/value every query attends to:
    off by default; on, the outputs change (part of each softmax goes to that slot) and the
    biases of the key/value projection receive gradient through it even when every input is zero."""
    from cdrec.models.sequential.blocks import MultiHeadAttention

    assert MERITParams().null_key is False
    torch.manual_seed(0)
    plain, with_null = MultiHeadAttention(8, 2, 0.0), MultiHeadAttention(8, 2, 0.0, null_key=True)
    with_null.load_state_dict(plain.state_dict())
    x = torch.randn(3, 5, 8)
    mask = attention_mask(torch.ones(3, 5, dtype=torch.bool), causal=True)
    assert not torch.allclose(plain(x, x, mask), with_null(x, x, mask), atol=1e-4)
    zero = torch.zeros(1, 1, 8)
    with_null(zero, zero, torch.zeros(1, 1, 1, 1, dtype=torch.bool)).sum().backward()
    assert with_null.kv.bias.grad is not None and with_null.kv.bias.grad.abs().sum() > 0
