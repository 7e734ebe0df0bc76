"""The ST-CDSR models (CD-SASRec, CD-ASR, MGCL): causal source and target streams, the transferred
source representation, padding, seeded reruns, shapes, the target-domain-only training and
evaluation, the two-domain refusal, and MGCL's training-only graph and contrastive views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdrec.config import load_config
from cdrec.data.sequences import next_events
from cdrec.errors import CdrecError
from cdrec.experiments.pipeline import run_config
from cdrec.models import registry
from cdrec.models.sequential.cdasr import CDASR, multiplicative_attention
from cdrec.models.sequential.cdsasrec import TargetDomainModel, cumulative_mean
from cdrec.models.sequential.mgcl import MGCL, info_nce
from cdrec.train.sequential import SequentialTask, cached_split

from .test_abxi import eval_batch, seeded_train_step
from .test_merit import OFFSETS, make_batch

VARIANTS = [("cd-sasrec", {"source": "sequence"}), ("cd-sasrec", {"source": "items"}), ("cd-asr", {}), ("mgcl", {}), ("mgcl", {"graph": "directed"})]
IDS = ["cd-sasrec", "cd-sasrec-items", "cd-asr", "mgcl", "mgcl-directed"]
NAMES = ["cd-sasrec", "cd-asr", "mgcl"]
TINY = ["data.name=synthetic", "split.n_negatives=10", "train.epochs=1", "train.progress=false", "train.device=cpu",
        "model_params.dim=16", "model_params.max_len=8", "model_params.warmup_epochs=0"]


def model(name: str = "cd-sasrec", seed: int = 0, **kw) -> TargetDomainModel:
    torch.manual_seed(seed)
    params = registry.build_params(name, {"dim": 16, "n_heads": 2, "dropout": 0.0, "max_len": 24, "n_negatives": 8, **kw})
    net = registry.get(name).cls(70, OFFSETS, params)
    if isinstance(net, MGCL):
        net.set_graph(np.random.default_rng(1).integers(0, 70, (2, 200)))  # a random graph over both domains' items
    return net


def same_domain_replacement(items: torch.Tensor, doms: torch.Tensor, after: int) -> torch.Tensor:
    """``items`` with every slot after ``after`` replaced by another item of the same domain."""
    later = doms[:, after + 1 :]
    gen = torch.Generator().manual_seed(1)
    out = items.clone()
    out[:, after + 1 :] = torch.where(later == 0, torch.randint(1, 31, later.shape, generator=gen),
                                      torch.where(later == 1, torch.randint(31, 71, later.shape, generator=gen), 0))
    return out


@pytest.mark.parametrize("name,extra", VARIANTS, ids=IDS)
def test_no_position_sees_a_future_item(name, extra):
    net = model(name, **extra).eval()
    batch = make_batch(b=4, length=10)
    items, doms = batch["items"], batch["domains"]
    t = 5
    items2 = same_domain_replacement(items, doms, t)
    assert not torch.equal(items2, items)
    with torch.no_grad():
        for target in (0, 1):
            ref, out = net.represent(items, doms, target), net.represent(items2, doms, target)
            assert torch.allclose(ref[:, : t + 1], out[:, : t + 1], atol=1e-5)
            assert not torch.allclose(ref, out, atol=1e-5)  # the later positions did change


@pytest.mark.parametrize("source", ["sequence", "items"])
def test_the_source_domain_is_transferred_into_the_target_encoding(source):
    net = model(source=source).eval()
    # A target (domain 0) at the end; source (domain 1) events before and between the A events
    items = torch.tensor([[40, 3, 41, 5, 45, 6]])
    doms = torch.where(items > 0, (items - 1 >= 30).long(), -1)
    swapped = items.clone()
    swapped[0, 0] = 60  # another source item before the first A event
    with torch.no_grad():
        ref, out = net.represent(items, doms, 0)[0, -1], net.represent(swapped, doms, 0)[0, -1]
        assert not torch.allclose(ref, out, atol=1e-5)
        # a target item swapped for another changes it too; the representation ignores nothing
        other = items.clone()
        other[0, 3] = 9
        assert not torch.allclose(ref, net.represent(other, doms, 0)[0, -1], atol=1e-5)
        # before any A event the prediction is the projected source summary alone
        only_source = net.represent(items, doms, 0)[0, 0]
        assert torch.allclose(only_source, net.source_summary(items, doms == 1)[0, 0])
        # and nothing at all before any event of either domain
        padded = torch.tensor([[0, 0, 3]])
        assert float(net.represent(padded, torch.where(padded > 0, 0, -1), 1)[0, :2].abs().max()) == 0.0


def test_cumulative_mean_of_the_source_items():
    v = torch.arange(1, 6, dtype=torch.float32).view(1, 5, 1)
    valid = torch.tensor([[False, True, False, True, True]])
    assert cumulative_mean(v, valid)[0, :, 0].tolist() == pytest.approx([0.0, 2.0, 2.0, 3.0, 11 / 3])


@pytest.mark.parametrize("name,extra", VARIANTS, ids=IDS)
def test_padding_changes_no_score(name, extra):
    """(The loss: ``test_merit.test_padding_contributes_nothing_to_the_loss`` runs these too.)"""
    net = model(name, **extra).eval()
    short, long = make_batch(length=10), make_batch(length=10, pad_to=20)
    with torch.no_grad():
        a, b = net.score(eval_batch(short)), net.score(eval_batch(long))
    assert torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("name,extra", VARIANTS, ids=IDS)
def test_seeded_rerun_is_identical(name, extra):
    (l1, s1), (l2, s2) = (seeded_train_step(lambda: model(name, seed=4, dropout=0.3, **extra)) for _ in range(2))
    assert l1 == l2 and torch.equal(s1, s2)


@pytest.mark.parametrize("name,extra", VARIANTS, ids=IDS)
def test_shapes_and_the_target_domain_selects_the_prediction(name, extra):
    net = model(name, **extra).eval()
    batch = make_batch(b=6, length=12)
    assert net.represent(batch["items"], batch["domains"], 0).shape == (6, 12, 16)
    ev = eval_batch(batch, n_candidates=7)
    with torch.no_grad():
        scores = net.score(ev)
        assert scores.shape == (6, 7) and torch.isfinite(scores).all()
        flipped = net.score({**ev, "target_domain": 1 - ev["target_domain"]})
    assert not torch.allclose(scores, flipped)
    loss = model(name, **extra).train().loss(batch)
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("name", NAMES)
def test_training_and_evaluation_keep_to_the_target_domain(name, tmp_path):
    cfg = load_config(None, [f"model={name}", *TINY, "data.synthetic={n_users: 120, n_domains: 2, items_per_domain: 60, seed: 3}"])
    prepared = SequentialTask().prepare(cfg)
    data = prepared.data
    owner = np.r_[-1, data.item_domain()]
    assert [s.name for s in prepared.scopes] == ["D0", "D1"]
    for scope in prepared.scopes:
        targets = scope.train.targets
        assert set(np.unique(owner[targets[targets > 0]])) == {scope.domain}  # the loss sees its domain's targets only
        assert {0, 1} <= set(np.unique(scope.train.domains))  # but reads the mixed sequence
        for view in scope.parts.values():
            assert (view.target_domain == scope.domain).all() and len(view.rows) > 0
            assert {0, 1} <= set(np.unique(view.history.domains))  # mixed histories
    res = run_config(cfg, tmp_path / "run")
    assert [h["scope"] for h in res.history] == ["D0", "D1"]
    assert res.metrics["D0"]["n"] + res.metrics["D1"]["n"] == res.metrics["overall"]["n"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n_domains", [1, 3])
def test_refuses_other_than_two_domains(name, n_domains, tmp_path):
    entry = registry.get(name)
    assert (entry.family, entry.min_domains, entry.max_domains, entry.cls.single_target, entry.cls.mixed_input) == ("sequential", 2, 2, True, True)
    offsets = np.arange(n_domains + 1) * 30
    with pytest.raises(CdrecError, match="needs exactly 2 domains"):
        entry.cls(int(offsets[-1]), offsets, entry.params(dim=16, max_len=24))
    cfg = load_config(None, [f"model={name}", *TINY, f"data.synthetic={{n_users: 40, n_domains: {n_domains}, items_per_domain: 60}}"])
    with pytest.raises(CdrecError, match="needs exactly 2 domains"):
        run_config(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_user_errors():
    with pytest.raises(CdrecError, match="model_params.source"):
        model(source="graph")
    for name in NAMES:
        with pytest.raises(CdrecError, match="divisible"):
            model(name, dim=15)
    with pytest.raises(CdrecError, match="model_params.graph"):
        model("mgcl", graph="bipartite")
    with pytest.raises(CdrecError, match="cl_temperature"):
        model("mgcl", cl_temperature=0)
    unattached = registry.get("mgcl").cls(70, OFFSETS, registry.build_params("mgcl", {"dim": 16, "max_len": 24}))
    with pytest.raises(CdrecError, match="mgcl: no item graph"):
        unattached.score(eval_batch(make_batch()))


def test_cd_asr_attends_multiplicatively_to_the_source_items_so_far():
    # the attention by hand: softmax_j(q^T W k_j) over the visible keys
    torch.manual_seed(0)
    bilinear = torch.nn.Linear(4, 4, bias=False)
    q, k = torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    valid = torch.tensor([[True, False, True]])
    got = multiplicative_attention(q, k, bilinear, valid)[0]
    with torch.no_grad():
        w = torch.softmax(torch.stack([q[0, 2] @ bilinear(k[0, 0]), q[0, 2] @ bilinear(k[0, 2])]), dim=0)
        assert torch.allclose(got[2], w[0] * k[0, 0] + w[1] * k[0, 2], atol=1e-6)
        assert torch.allclose(got[1], k[0, 0]) and torch.allclose(got[0], k[0, 0])  # one visible key
        assert float(multiplicative_attention(q, k, bilinear, torch.zeros_like(valid))[0].abs().max()) == 0.0  # none: zero
    # in the model: the final representation reads the current (target) and general (source) preferences
    net = model("cd-asr").eval()
    assert isinstance(net, CDASR)
    items = torch.tensor([[40, 3, 41, 5, 45, 6]])
    doms = torch.where(items > 0, (items - 1 >= 30).long(), -1)
    with torch.no_grad():
        ref = net.represent(items, doms, 0)[0, -1]
        swapped = items.clone()
        swapped[0, 2] = 60  # another source item
        assert not torch.allclose(ref, net.represent(swapped, doms, 0)[0, -1], atol=1e-5)
        current, _ = net.target_stream(items, doms, 0)
        src = doms == 1
        general = multiplicative_attention(current, net.encoder.item_emb(items * src), net.bilinear, src)
        assert torch.allclose(ref, net.combine(torch.cat([current, general], -1))[0, -1], atol=1e-6)


@pytest.mark.parametrize("extra", [{}, {"cl_weight": 0.0}], ids=["cl", "no-cl"])
def test_mgcl_padding_contributes_nothing_to_the_loss(extra):
    net = model("mgcl", **extra).eval()
    torch.manual_seed(5)
    a = net.loss(make_batch(length=10))
    torch.manual_seed(5)
    b = net.loss(make_batch(length=10, pad_to=20))
    assert torch.isfinite(a) and torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("graph", ["undirected", "directed"])
def test_mgcl_graph_holds_training_transitions_only(graph):
    cfg = load_config(None, ["model=mgcl", *TINY, "data.synthetic={n_users: 80, n_domains: 2, items_per_domain: 60, seed: 5}"])
    data, split = cached_split(cfg)
    _, items, _, nxt, _ = next_events(data, np.arange(len(data)))
    everything = set(zip((items[nxt > 0] - 1).tolist(), (nxt[nxt > 0] - 1).tolist()))
    _, items, _, nxt, _ = next_events(data, split.train_rows)
    train = set(zip((items[nxt > 0] - 1).tolist(), (nxt[nxt > 0] - 1).tolist()))
    held_out = everything - train
    assert held_out, "the check needs transitions that only validation/test events make"
    expected = train if graph == "directed" else train | {(b, a) for a, b in train}
    net = MGCL(data.n_items, data.item_offsets, registry.build_params("mgcl", {"dim": 8, "graph": graph}))
    net.attach_training(split)
    edges = {(a - 1, b - 1) for a, b in net.graph.indices().T.tolist()}
    assert edges == expected and not edges & (held_out - expected)
    rows = torch.sparse.sum(net.graph, dim=1).to_dense()
    assert torch.allclose(rows[rows > 0], torch.ones_like(rows[rows > 0]))


def test_mgcl_fuses_both_views_and_the_graph_enters_the_cross_domain_view():
    net = model("mgcl").eval()
    batch = make_batch(b=4, length=10)
    items, doms = batch["items"], batch["domains"]
    with torch.no_grad():
        s, c, has_own = net.views(items, doms, 0)
        assert torch.allclose(net.represent(items, doms, 0), s + c)
        assert float(s[~has_own].abs().max()) == 0.0 and bool((c[items > 0].abs().sum(-1) > 0).all())
        # another graph changes the cross-domain view but not the specific-domain one
        other = model("mgcl")
        other.load_state_dict(net.state_dict())
        other.set_graph(np.random.default_rng(7).integers(0, 70, (2, 200)))
        s2, c2, _ = other.eval().views(items, doms, 0)
        assert torch.allclose(s, s2) and not torch.allclose(c, c2, atol=1e-5)
        # no propagation: the graph view reads the item table itself
        flat = model("mgcl", gnn_layers=0)
        assert torch.equal(flat.graph_items(), flat.encoder.item_emb.weight)


def test_mgcl_contrastive_terms_enter_the_loss():
    batch = make_batch()
    torch.manual_seed(5)
    with_cl = model("mgcl", cl_weight=0.5).train().loss(batch)
    torch.manual_seed(5)
    without = model("mgcl", cl_weight=0.0).train().loss(batch)
    torch.manual_seed(5)
    base = TargetDomainModel.loss(model("mgcl", cl_weight=0.5).train(), batch)
    assert torch.allclose(without, base) and float((with_cl - without).detach()) > 0
    # InfoNCE by hand: matching rows are the positives
    a, p = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    expected = -torch.log_softmax(torch.tensor([[1.0, 0.0], [0.0, 1.0]]) / 0.5, dim=1).diagonal().mean()
    assert torch.allclose(info_nce(a, p, 0.5), expected)
