"""ABXI: causal streams, task-guided alignment, padding, seeded reruns, shapes per domain, registry."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

from cdrec.errors import CdrecError
from cdrec.models import registry
from cdrec.models.sequential.abxi import ABXI, ABXIParams, latest_at_or_before

from .test_merit import OFFSETS, later_items_replaced, make_batch


def model(seed: int = 0, **kw) -> ABXI:
    torch.manual_seed(seed)
    params = ABXIParams(**{"dim": 16, "n_heads": 2, "dropout": 0.0, "max_len": 24, "n_negatives": 8, **kw})
    net = ABXI(70, OFFSETS, params)
    with torch.no_grad():  # the LoRAs start silent (W_up = 0); make them count in the tests
        for lora in (m for m in net.modules() if m.__class__.__name__ == "LoRA"):
            lora.up.normal_(0, 0.5)
    return net


def eval_batch(batch: dict[str, torch.Tensor], n_candidates: int = 5) -> dict[str, torch.Tensor]:
    b = len(batch["items"])
    gen = torch.Generator().manual_seed(3)
    return {"items": batch["items"], "domains": batch["domains"], "candidates": torch.randint(1, 71, (b, n_candidates), generator=gen),
            "target_domain": torch.arange(b) % 2}


def check_streams(streams: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], dim: int = 16) -> None:
    """``H_X, H_A, H_B`` are ``[B, L, dim]``, zero exactly at each stream's empty slots."""
    for s, valid in (("X", batch["items"] > 0), ("A", batch["domains"] == 0), ("B", batch["domains"] == 1)):
        assert streams[s].shape == (*valid.shape, dim)
        assert float(streams[s][~valid].abs().max()) == 0.0 and bool((streams[s][valid].abs().sum(-1) > 0).all())


@pytest.mark.parametrize("negatives", ["sequence", "position"])
def test_no_position_sees_a_future_item(negatives):
    net = model(negatives=negatives).eval()
    batch = make_batch(b=4, length=10)
    items, doms = batch["items"], batch["domains"]
    t = 5
    items2 = later_items_replaced(items, doms, t)
    targets = net.item_domain(batch["targets"])
    with torch.no_grad():
        ref, out = net.encode(items, doms), net.encode(items2, doms)
        for s in "XAB":
            assert torch.allclose(ref[s][:, : t + 1], out[s][:, : t + 1], atol=1e-5), s
            assert not torch.allclose(ref[s], out[s], atol=1e-5), s  # the later positions did change
        h_ref, h_out = net.represent(items, doms, targets), net.represent(items2, doms, targets)
    assert torch.allclose(h_ref[:, : t + 1], h_out[:, : t + 1], atol=1e-5)


def test_task_guided_alignment_reads_the_latest_event_of_the_target_domain():
    h = torch.arange(1, 6, dtype=torch.float32).view(1, 5, 1).expand(1, 5, 2)
    valid = torch.tensor([[False, True, False, False, True]])
    got = latest_at_or_before(h, valid)[0, :, 0]
    assert got.tolist() == [0.0, 2.0, 2.0, 2.0, 5.0]  # nothing before the first event: zero
    # a prediction for a domain-A target reads the A stream: changing a B item changes it only
    # through the mixed stream, changing the latest A item changes it through both
    net = model().eval()
    items = torch.tensor([[3, 40, 41, 5, 45, 50]])
    doms = torch.where(items > 0, (items - 1 >= 30).long(), -1)
    want = torch.tensor([[-1, -1, -1, -1, -1, 0]])
    with torch.no_grad():
        ref = net.represent(items, doms, want)[0, -1]
        streams = net.encode(items, doms)
        inv = net.ilora["A"](streams["X"], want == 0, net.proj_invariant)[0, -1]
        spec = net.proj_domain["A"](latest_at_or_before(streams["A"], doms == 0), want == 0)[0, -1]
        assert torch.allclose(ref, inv + spec, atol=1e-6)
        # the A part is the A stream at slot 3 (item 5), the latest A event
        assert torch.allclose(latest_at_or_before(streams["A"], doms == 0)[0, -1], streams["A"][0, 3])
        assert float(net.represent(items, doms, torch.full_like(items, -1)).abs().max()) == 0.0  # no target: nothing


def test_padding_changes_no_score():
    """(The loss: ``test_merit.test_padding_contributes_nothing_to_the_loss`` runs abxi too.)"""
    net = model().eval()
    short, long = make_batch(length=10), make_batch(length=10, pad_to=20)
    with torch.no_grad():
        a, b = net.score(eval_batch(short)), net.score(eval_batch(long))
    assert torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-5)


def seeded_train_step(build: Callable[[], nn.Module]) -> tuple[float, torch.Tensor]:
    """Loss of one seeded training step of a freshly built model and its scores afterwards."""
    net = build().train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    torch.manual_seed(9)
    loss = net.loss(make_batch())
    loss.backward()
    opt.step()
    net.eval()
    with torch.no_grad():
        return float(loss), net.score(eval_batch(make_batch()))


def test_seeded_rerun_is_identical():
    (l1, s1), (l2, s2) = (seeded_train_step(lambda: model(seed=4, dropout=0.3)) for _ in range(2))
    assert l1 == l2 and torch.equal(s1, s2)


def test_shapes_per_domain_and_scores():
    net = model().eval()
    batch = make_batch(b=6, length=12)
    with torch.no_grad():
        check_streams(net.encode(batch["items"], batch["domains"]), batch)
        ev = eval_batch(batch, n_candidates=7)
        scores = net.score(ev)
        assert scores.shape == (6, 7) and torch.isfinite(scores).all()
        # the target domain selects the prediction: the same history scored for A and for B differs
        flipped = net.score({**ev, "target_domain": 1 - ev["target_domain"]})
        assert not torch.allclose(scores, flipped)
    loss = model().train().loss(batch)
    loss.backward()
    assert torch.isfinite(loss)


def test_lora_ranks_and_authors_defaults():
    p = ABXIParams()
    assert (p.dim, p.n_heads, p.dropout, p.rank_domain, p.rank_invariant, p.n_negatives, p.temperature) == (256, 2, 0.5, 8, 8, 128, 0.75)
    assert (p.warmup_epochs, p.lr_factor, p.lr_patience) == (1, 0.3162, 30)
    net = ABXI(70, OFFSETS, ABXIParams(dim=16, max_len=24, n_negatives=8))
    assert float(net.dlora["A"].lora.up.detach().abs().max()) == 0.0 and net.dlora["A"].lora.down.shape == (16, 8)  # starts silent
    assert float(net.item_emb.weight.detach().abs().max()) <= 0.04  # the authors' truncated init
    plain = ABXI(70, OFFSETS, ABXIParams(dim=16, max_len=24, n_negatives=8, rank_domain=0, rank_invariant=0))
    assert all(m.lora is None for m in (*plain.dlora.values(), *plain.ilora.values()))
    assert sum(p.numel() for p in net.parameters()) - sum(p.numel() for p in plain.parameters()) == 5 * 2 * 16 * 8


def test_cross_domain_by_design_and_user_errors():
    entry = registry.get("abxi")
    assert (entry.family, entry.min_domains, entry.max_domains) == ("sequential", 2, 2)
    with pytest.raises(CdrecError, match="needs exactly 2 domains"):
        ABXI(90, np.array([0, 30, 70, 90]), ABXIParams(dim=16, max_len=24))
    with pytest.raises(CdrecError, match="negatives"):
        model(negatives="batch")
    with pytest.raises(CdrecError, match="divisible"):
        model(dim=15)
