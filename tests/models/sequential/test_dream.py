"""DREAM: causal streams and extraction attention, padding, seeded reruns, shapes per domain,
the supervised contrastive loss, registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdrec.errors import CdrecError
from cdrec.models import registry
from cdrec.models.sequential.dream import DREAM, DREAMParams, supcon_loss

from .test_abxi import check_streams, eval_batch
from .test_merit import OFFSETS, later_items_replaced, make_batch

EXTRACTIONS = ["inject", "extract"]


def model(seed: int = 0, **kw) -> DREAM:
    torch.manual_seed(seed)
    return DREAM(70, OFFSETS, DREAMParams(**{"dim": 16, "n_heads": 2, "dropout": 0.0, "max_len": 24, "n_negatives": 8, **kw}))


@pytest.mark.parametrize("extraction", EXTRACTIONS)
def test_no_position_sees_a_future_item(extraction):
    net = model(extraction=extraction, n_layers=2).eval()
    batch = make_batch(b=4, length=10)
    items, doms = batch["items"], batch["domains"]
    t = 5
    items2 = later_items_replaced(items, doms, t)
    with torch.no_grad():
        (c1, s1, _), (c2, s2, _) = net.views(items, doms), net.views(items2, doms)
        for a, b in ((c1, c2), *zip(s1, s2)):
            assert torch.allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-5)
            assert not torch.allclose(a, b, atol=1e-5)  # the later positions did change
        target = net.item_domain(batch["targets"])
        assert torch.allclose(net.represent(items, doms, target)[:, : t + 1], net.represent(items2, doms, target)[:, : t + 1], atol=1e-5)


def test_domain_streams_are_decoupled_and_the_eam_mixes_them():
    """``inject``: the A stream never sees a B item, the cross-domain representation does."""
    net = model().eval()
    items = torch.tensor([[3, 40, 41, 5, 45, 50]])
    doms = torch.where(items > 0, (items - 1 >= 30).long(), -1)
    other = items.clone()
    other[0, 2] = 60  # another B item
    with torch.no_grad():
        h1, h2 = net.encode(items, doms), net.encode(other, doms)
        assert torch.equal(h1["A"], h2["A"]) and not torch.allclose(h1["B"], h2["B"])
        (c1, s1, has), (c2, _, _) = net.views(items, doms), net.views(other, doms)
        assert not torch.allclose(c1[0, 3], c2[0, 3])  # the A slot after it reads B through the EAM
        # S_A at every mixed position is H_A at the latest A slot (slot 3 for the last three)
        assert torch.equal(s1[0][0, 5], h1["A"][0, 3]) and torch.equal(s1[0][0, 1], h1["A"][0, 0])
        assert has[1].tolist() == [[False, True, True, True, True, True]] and float(s1[1][0, 0].abs().max()) == 0.0
        want = torch.tensor([[-1, -1, -1, -1, 0, 1]])
        h = net.represent(items, doms, want)[0]
        assert torch.allclose(h[4], c1[0, 4] + s1[0][0, 4]) and torch.allclose(h[5], c1[0, 5] + s1[1][0, 5])
        assert float(h[:4].abs().max()) == 0.0  # no target: nothing


@pytest.mark.parametrize("extraction", EXTRACTIONS)
def test_padding_changes_neither_loss_nor_score(extraction):
    net = model(extraction=extraction).eval()
    short, long = make_batch(length=10), make_batch(length=10, pad_to=20)
    with torch.no_grad():
        a, b = net.score(eval_batch(short)), net.score(eval_batch(long))
        assert torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-5)
        for negatives in ("sequence", "position"):
            net.params.negatives = negatives
            torch.manual_seed(5)
            la = net.loss_terms(short)
            torch.manual_seed(5)
            lb = net.loss_terms(long)
            assert float(la["scl"]) > 0
            for key in ("rec", "scl"):
                assert torch.isfinite(la[key]) and torch.allclose(la[key], lb[key], atol=1e-5), key


@pytest.mark.parametrize("extraction", EXTRACTIONS)
def test_seeded_rerun_is_identical(extraction):
    """Same seed: the same weights, dropout masks and negatives, so the same step and scores."""
    runs = []
    for _ in range(2):
        net = model(seed=4, dropout=0.3, extraction=extraction).train()
        torch.manual_seed(9)
        terms = net.loss_terms(make_batch())
        (terms["rec"] + terms["scl"]).backward()
        torch.optim.AdamW(net.parameters(), lr=1e-2).step()
        with torch.no_grad():
            runs.append((terms, net.eval().score(eval_batch(make_batch()))))
    (t1, s1), (t2, s2) = runs
    assert all(torch.equal(t1[k], t2[k]) for k in t1) and torch.equal(s1, s2)


@pytest.mark.parametrize("extraction", EXTRACTIONS)
def test_shapes_per_domain_and_scores(extraction):
    net = model(extraction=extraction).eval()
    batch = make_batch(b=6, length=12)
    with torch.no_grad():
        check_streams(net.encode(batch["items"], batch["domains"]), batch)
        cross, aligned, _ = net.views(batch["items"], batch["domains"])
        assert cross.shape == (6, 12, 16) and [a.shape for a in aligned] == [(6, 12, 16)] * 2
        assert float(cross[batch["items"] == 0].abs().max()) == 0.0
        ev = eval_batch(batch, n_candidates=7)
        scores = net.score(ev)
        assert scores.shape == (6, 7) and torch.isfinite(scores).all()
        flipped = net.score({**ev, "target_domain": 1 - ev["target_domain"]})
        assert not torch.allclose(scores, flipped)  # the target domain picks the domain-specific part
    loss = model(extraction=extraction, loss="full").train().loss(batch)
    loss.backward()
    assert torch.isfinite(loss)


def test_supervised_contrastive_loss():
    z = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]), dim=-1)
    sims = z @ z.T / 0.1

    def term(anchor: int, positive: int) -> torch.Tensor:  # -log softmax of the positive among the other rows
        others = [r for r in range(4) if r != anchor]
        return -(sims[anchor, positive] - torch.logsumexp(sims[anchor, others], 0))

    # one positive pair (rows 0, 1); rows 2 and 3 have no positive and are no anchors
    assert torch.allclose(supcon_loss(z, torch.tensor([1, 1, 2, 3]), 0.1), (term(0, 1) + term(1, 0)) / 2)
    # three rows share a label: each anchor averages over its two positives
    pairs = [(a, p) for a in range(3) for p in range(3) if a != p]
    assert torch.allclose(supcon_loss(z, torch.tensor([1, 1, 1, 3]), 0.1), sum(term(a, p) for a, p in pairs) / 6)
    # same-label rows close together: lower loss than same-label rows apart
    assert float(supcon_loss(z, torch.tensor([1, 1, 2, 2]), 0.1)) < float(supcon_loss(z, torch.tensor([1, 2, 1, 2]), 0.1))
    assert float(supcon_loss(z, torch.tensor([1, 2, 3, 4]), 0.1)) == 0.0  # no positives anywhere
    # the model's term: the cross-domain and the target domain's views at each window's last slot
    net, batch = model().eval(), make_batch()
    with torch.no_grad():
        cross, aligned, has = net.views(batch["items"], batch["domains"])
        last, dom = batch["targets"][:, -1], net.item_domain(batch["targets"])[:, -1]
        specific = torch.stack([aligned[int(d)][r, -1] for r, d in enumerate(dom)])
        kept = torch.stack([has[int(d)][r, -1] for r, d in enumerate(dom)])
        views = torch.nn.functional.normalize(torch.cat([cross[:, -1], specific[kept]]), dim=-1)
        assert torch.allclose(net.loss_terms(batch)["scl"], supcon_loss(views, torch.cat([last, last[kept]]), 0.1))
    # cl_weight scales the contrastive term; 0 drops it
    batch = make_batch()
    torch.manual_seed(2)
    terms = model(cl_weight=0.5).loss_terms(batch)
    torch.manual_seed(2)
    assert torch.allclose(model(cl_weight=0.5).loss(batch), terms["rec"] + 0.5 * terms["scl"])
    torch.manual_seed(2)
    assert torch.allclose(model(cl_weight=0.0).loss(batch), terms["rec"])


def test_cross_domain_by_design_and_user_errors():
    entry = registry.get("dream")
    assert (entry.family, entry.min_domains, entry.max_domains) == ("sequential", 2, 2)
    with pytest.raises(CdrecError, match="needs exactly 2 domains"):
        DREAM(90, np.array([0, 30, 70, 90]), DREAMParams(dim=16, max_len=24))
    with pytest.raises(CdrecError, match="needs exactly 2 domains"):
        DREAM(30, np.array([0, 30]), DREAMParams(dim=16, max_len=24))
    for bad, match in (({"extraction": "both"}, "extraction"), ({"negatives": "batch"}, "negatives"), ({"loss": "bpr"}, "loss"), ({"dim": 15}, "divisible")):
        with pytest.raises(CdrecError, match=match):
            model(**bad)
