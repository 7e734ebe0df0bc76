"""MERIT: extended causal masks, stop-gradient residual, padding, ablation switches."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from cdrec.models import registry
from cdrec.models.sequential.blocks import attention_mask, extended_causal_mask
from cdrec.models.sequential.merit import ABLATIONS, AUTHORS_CODE, MERIT, MERITParams

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


def later_items_replaced(items: torch.Tensor, doms: torch.Tensor, t: int, seed: int = 1) -> torch.Tensor:
    """``items`` with every item after slot ``t`` replaced by a random item of the same domain (the
    domain pattern stays: reversed in-stream positions count later events per stream)."""
    later = doms[:, t + 1 :]
    gen = torch.Generator().manual_seed(seed)
    out = items.clone()
    out[:, t + 1 :] = torch.where(later == 0, torch.randint(1, 31, later.shape, generator=gen), torch.randint(31, 71, later.shape, generator=gen))
    assert not torch.equal(out, items)
    return out


def model(**kw) -> MERIT:
    torch.manual_seed(0)
    params = MERITParams(**{"dim": 16, "n_heads": 2, "dropout": 0.0, "max_len": 24, "n_negatives": 8, **kw})
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
                                        ("abxi", {}), ("abxi", {"negatives": "position"}),
                                        ("cd-sasrec", {}), ("cd-sasrec", {"source": "items"}), ("cd-asr", {})])
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


def test_authors_code_is_off_by_default_and_refuses_unknown_names():
    from cdrec.config import load_config
    from cdrec.errors import CdrecError

    assert MERITParams().authors_code == [] and model().zero_grad_each_step
    assert registry.build_params("merit", {"authors_code": list(AUTHORS_CODE)}).authors_code == list(AUTHORS_CODE)
    for bad in (["no_key_padding"], ["score_h_m_only", "SF2"]):
        with pytest.raises(CdrecError) as err:
            registry.build_params("merit", {"authors_code": bad})
        assert str(err.value).startswith("model_params.authors_code: unknown switch") and "\n" not in str(err.value)
    with pytest.raises(CdrecError, match="model_params.authors_code"):
        MERITParams(authors_code=["x"])
    with pytest.raises(CdrecError, match="model_params.authors_code"):  # a string, not a list
        registry.build_params("merit", load_config(None, ["model=merit", "model_params.authors_code=swapped_positions"]).model_params)


def outputs(net: MERIT, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return net(batch["items"], batch["domains"])


def test_no_key_padding_mask_lets_padding_change_the_valid_outputs():
    """The authors' attentions see empty slots (bias-only keys): the amount of left padding then
    changes every valid position's output, which the default's key-padding mask prevents."""
    short, long = make_batch(length=10), make_batch(length=10, pad_to=20)
    for switches, same in (([], True), (["no_key_padding_mask"], False)):
        net = model(authors_code=switches).eval()
        a, b = outputs(net, short), outputs(net, long)
        for s in "MAB":
            assert torch.allclose(a[s], b[s][:, 10:], atol=1e-5) == same, (switches, s)


def test_score_h_m_only_scores_the_mixed_stream_alone():
    """With the authors' swapped domain masks the domain stream read at test time is zero: the score
    is h_M^F at the latest slot, plus the other domain's stream at the earliest slot when the history
    has no event of the target's domain (their get_last_idx fallback)."""
    batch = make_batch(b=6, length=12, seed=4)
    items, doms = batch["items"].clone(), batch["domains"].clone()
    only_b = (items[0] > 0) & (doms[0] == 0)
    items[0, only_b] = 31 + torch.arange(int(only_b.sum()))  # row 0: B events only, target in A
    doms[0, only_b] = 1
    ev = {"items": items, "domains": doms, "candidates": torch.randint(1, 71, (6, 5)), "target_domain": torch.tensor([0, 1, 0, 1, 0, 1])}
    paper, authors = model().eval(), model(authors_code=["score_h_m_only"]).eval()
    with torch.no_grad():
        f = authors(items, doms)
        h_paper, h_authors = paper.final_for_target(ev), authors.final_for_target(ev)
    earliest = int((items[0] > 0).long().argmax())
    assert torch.allclose(h_authors[1:], f["M"][1:, -1])
    assert torch.allclose(h_authors[0], f["M"][0, -1] + f["B"][0, earliest])
    assert not torch.allclose(h_paper[1:], h_authors[1:], atol=1e-4)


def test_ecaf_first_part_only_is_ecaf_without_the_other_domains_transfer():
    """The authors' ECAF sees H_M2A only (their attn_mask is dropped under is_causal): the same
    outputs as ablation SF2 with the same weights, and different ones from the paper's ECAF."""
    batch = make_batch()
    base = model()
    variants = {"paper": base, "authors": model(authors_code=["ecaf_first_part_only"]), "SF2": model(ablation="SF2")}
    out = {k: outputs(v.eval(), batch) for k, v in variants.items()}
    for s in "AB":
        assert torch.equal(out["authors"][s], out["SF2"][s])
        assert not torch.allclose(out["authors"][s], out["paper"][s], atol=1e-4)
    assert torch.equal(out["authors"]["M"], out["paper"]["M"])


def test_swapped_positions_rotate_the_streams_positions():
    """Authors' MERIT.py L78-80: M gets A's reversed positions, A gets B's (0 at its own slots, the
    untrained padding row, kept as initialized), B gets the mixed sequence's."""
    valid_m = torch.tensor([[False, True, True, True, True]])
    valid_a = torch.tensor([[False, True, False, True, False]])
    valid = {"M": valid_m, "A": valid_a, "B": valid_m & ~valid_a}
    paper, authors = model(), model(authors_code=["swapped_positions"])
    pos = authors.stream_positions(valid)
    assert pos["M"].tolist() == [[0, 2, 0, 1, 0]] and pos["A"].tolist() == [[0, 0, 2, 0, 1]] and pos["B"].tolist() == [[0, 4, 3, 2, 1]]
    assert paper.stream_positions(valid)["A"].tolist() == [[0, 2, 0, 1, 0]]
    assert float(paper.pos_emb.weight[0].detach().abs().max()) == 0.0 < float(authors.pos_emb.weight[0].detach().abs().max())
    batch = make_batch()
    authors.load_state_dict(paper.state_dict())  # same weights (row 0 zero): only the indices differ
    a, b = outputs(paper.eval(), batch), outputs(authors.eval(), batch)
    assert all(not torch.allclose(a[s], b[s], atol=1e-4) for s in "MAB")


@functools.cache
def tiny_training(switches: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Two seeded epochs of three batches through the Trainer; the weights and the validation scores."""
    from cdrec.config import TrainConfig
    from cdrec.train.trainer import Trainer

    net = model(authors_code=list(switches), dropout=0.2, warmup_epochs=1)
    ev = make_batch(b=6, seed=9)
    ev = {"items": ev["items"], "domains": ev["domains"], "candidates": torch.randint(1, 71, (6, 5), generator=torch.Generator().manual_seed(0)), "target_domain": torch.tensor([0, 1] * 3)}
    scores = []

    def validate() -> dict[str, float]:
        scores.append(float(net.score(ev).sum()))
        return {"MRR_sum": scores[-1]}

    cfg = TrainConfig(epochs=2, lr=0.01, progress=False, metric="MRR_sum")
    Trainer(net, cfg, seed=0, device=torch.device("cpu")).fit(lambda epoch: [make_batch(seed=10 * epoch + k) for k in range(3)], validate)
    return {k: v.clone() for k, v in net.state_dict().items()}, scores


@pytest.mark.parametrize("switch", sorted(AUTHORS_CODE))
def test_every_switch_reruns_identically_and_changes_training(switch):
    first, again, paper = tiny_training.__wrapped__((switch,)), tiny_training((switch,)), tiny_training(())
    assert first[1] == again[1] and all(torch.equal(first[0][k], again[0][k]) for k in first[0])
    assert first[1] != paper[1]


def test_epoch_grad_accumulation_sums_the_epochs_gradients_in_each_step():
    """A loss with a constant gradient g under SGD: zeroing per step moves the weight by lr * g per
    step; the authors' once-per-epoch zeroing by lr * k * g at the epoch's k-th step."""
    from cdrec.config import TrainConfig
    from cdrec.train.trainer import Trainer

    class Linear(torch.nn.Module):
        def __init__(self, per_step: bool) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.zero_grad_each_step = per_step

        def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.w.sum()

    moved = {}
    for per_step in (True, False):
        net = Linear(per_step)
        cfg = TrainConfig(epochs=2, lr=0.1, optimizer="sgd", progress=False, metric="m", patience=10)
        Trainer(net, cfg, seed=0, device=torch.device("cpu")).fit(lambda epoch: [{}] * 3, lambda n=net: {"m": -float(n.w.detach())})
        moved[per_step] = -float(net.w.detach()) / 0.1
    assert moved[True] == pytest.approx(6) and moved[False] == pytest.approx(2 * (1 + 2 + 3))
    assert model(authors_code=["epoch_grad_accumulation"]).zero_grad_each_step is False


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_warmup_start_factor_sets_the_first_epochs_learning_rate():
    """Default 1e-5 (the authors' LinearLR: a wasted first epoch); 1 / warmup_epochs starts at lr / n."""
    from cdrec.config import TrainConfig

    cfg = TrainConfig(lr=0.01)
    for factor, first in ((None, 1e-7), (0.25, 0.0025)):
        net = model(warmup_epochs=4, **({} if factor is None else {"warmup_start_factor": factor}))
        opt = net.configure_optimizers(cfg)
        lrs = []
        for epoch in range(6):
            lrs.append(opt.param_groups[0]["lr"])
            net.on_epoch_end(epoch, {"MRR_sum": 1.0})
        assert lrs[0] == pytest.approx(first) and lrs[4] == pytest.approx(0.01) and lrs[1] > lrs[0]


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


def test_run_folders_with_the_old_attend_padding_key_still_load():
    """``attend_padding`` (config.yaml of runs before 2026-12-07) maps to the ``no_key_padding_mask`` switch."""
    assert registry.build_params("merit", {"attend_padding": False}).authors_code == []
    assert registry.build_params("merit", {"attend_padding": True, "authors_code": ["score_h_m_only"]}).authors_code == [
        "no_key_padding_mask", "score_h_m_only"]


def reference_loss_terms(net: MERIT, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """L_M and L_A + L_B as computed before the shared lookup (per-sequence negatives): L_M's logits
    once per target domain, one embedding lookup per targets / negatives tensor, the domain losses
    one after the other, each drawing its negatives when its domain has targets."""
    from cdrec.models.sequential.blocks import sample_domain_negatives, sampled_info_nce, seen_mask

    items, domains, targets, dom_t = batch["items"], batch["domains"], batch["targets"], batch["domain_targets"]
    p = net.params
    all_rows = p.loss_norm == "domain"
    f = net.forward(items, domains)
    seen = torch.cat([items, targets, dom_t], dim=1)
    weights = [net.item_domain(targets) == d for d in range(2)] if all_rows else [targets > 0]
    neg = torch.cat([sample_domain_negatives(len(items), p.n_negatives, a, b, items.device) for a, b in net.item_ranges], dim=1)
    e_pos, e_neg = net.item_emb(targets), net.item_emb(neg)
    loss_m = sum(sampled_info_nce(f["M"], e_pos, e_neg, seen_mask(neg, seen), w, p.temperature, all_rows=all_rows) for w in weights)
    h_ab = f["A"] + f["B"] + f["M"].detach()
    loss_ab = h_ab.new_zeros(())
    for d, (a, b) in enumerate(net.item_ranges):
        w = net.item_domain(dom_t) == d
        if bool(w.any()):
            neg = sample_domain_negatives(len(items), p.n_negatives, a, b, items.device)
            loss_ab = loss_ab + sampled_info_nce(h_ab, net.item_emb(dom_t), net.item_emb(neg), seen_mask(neg, seen), w, p.temperature, all_rows=all_rows)
    return {"M": loss_m, "AB": loss_ab}


@pytest.mark.parametrize("loss_norm,one_domain", [("domain", False), ("pooled", False), ("domain", True)])
def test_shared_lookup_loss_matches_the_reference_formulation(loss_norm, one_domain):
    """The training loss (one embedding lookup, L_M's logits once) equals the earlier formulation
    with the same draws: values, every parameter's gradient and the random state left for the next
    batch, with dropout on."""
    batch = make_batch(b=6, length=12, seed=3)
    if one_domain:  # no domain-B targets in L_A + L_B: its negatives are not drawn
        keep = batch["domain_targets"] <= 30
        batch["domain_targets"] = torch.where(keep, batch["domain_targets"], torch.zeros_like(batch["domain_targets"]))
    grads = []
    for compute in (MERIT.loss_terms, reference_loss_terms):
        net = model(loss_norm=loss_norm, dropout=0.3).train()
        torch.manual_seed(7)
        terms = compute(net, batch)
        (terms["M"] + terms["AB"]).backward()
        grads.append(({k: t.detach() for k, t in terms.items()}, {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}, torch.get_rng_state()))
    (fast, fast_grad, fast_rng), (ref, ref_grad, ref_rng) = grads
    assert torch.equal(fast_rng, ref_rng)
    for k in ("M", "AB"):
        assert fast[k].item() == pytest.approx(ref[k].item(), rel=1e-6, abs=1e-7), k
    assert fast_grad.keys() == ref_grad.keys()
    for name, g in fast_grad.items():
        torch.testing.assert_close(g, ref_grad[name], rtol=1e-5, atol=1e-7, msg=name)
