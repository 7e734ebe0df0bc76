"""HeroGraph and GA-MTCDR (multi-target cross-domain baselines of UCLR's Table 2): per-domain output
shapes, gradients into every parameter group, seeded reruns, a planted cross-domain signal they find
(and single-domain BPR-MF cannot), and the faces (`cdrec run`, `evaluate`, `recommend`, `serve`)."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cdrec.config import TrainConfig, load_config
from cdrec.data.splits import leave_one_out
from cdrec.data.synthetic import make_synthetic
from cdrec.errors import CdrecError
from cdrec.experiments.pipeline import evaluate_run, load_run_config, run_config
from cdrec.models import registry
from cdrec.models.cf.lightgcn import sparse_matmul, sparse_product, to_csr
from cdrec.train.tasks import task_for
from tests.cli_helpers import call_main

VARIANTS = {
    "herograph": ("herograph", {}),
    "herograph-concat": ("herograph", {"combine": "concat"}),
    "ga-mtcdr": ("ga-mtcdr", {}),
    "ga-mtcdr-domain-towers": ("ga-mtcdr", {"attention": "domain", "towers": [12, 6]}),
}
DIM = 8


def tiny_split(seed: int = 0):
    data = make_synthetic(n_users=60, n_domains=3, items_per_domain=30, seed=seed)
    return leave_one_out(data, seed=seed)


def build(variant: str, split, seed: int = 0):
    name, extra = VARIANTS[variant]
    torch.manual_seed(seed)
    params = registry.build_params(name, {"dim": DIM, **extra})
    return registry.get(name).cls.from_split(split, params)


def output_width(variant: str) -> int:
    extra = VARIANTS[variant][1]
    return extra["towers"][-1] if "towers" in extra else 2 * DIM if extra.get("combine") == "concat" else DIM


def batch_of(split, n: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    """Training triples with a negative from the positive's domain."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(split.train), size=n, replace=False)
    users, pos = split.train.users[rows].astype(np.int64), split.train.items[rows].astype(np.int64)
    offsets = np.asarray(split.data.item_offsets)
    dom = split.data.item_domain()[pos]
    neg = rng.integers(offsets[dom], offsets[dom + 1])
    return {"user": torch.as_tensor(users), "pos": torch.as_tensor(pos), "neg": torch.as_tensor(neg), "domain": torch.as_tensor(dom)}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_one_user_table_per_domain_and_scores_routed_by_the_items_domain(variant):
    split = tiny_split()
    data = split.data
    model = build(variant, split).eval()
    users, items = model.propagate()
    assert users.shape == (data.n_domains, data.n_users, output_width(variant))
    assert items.shape == (data.n_items, output_width(variant))
    if variant != "ga-mtcdr":  # GA-MTCDR's domains share the attention's equal starting weights (no towers)
        assert not torch.allclose(users[0], users[1])  # each domain has its own user vectors
    who = torch.tensor([0, 5, 9])
    for d in range(data.n_domains):
        start, stop = data.domain_item_range(d)
        full = model.score_all(who, start, stop)
        assert full.shape == (3, stop - start)
        torch.testing.assert_close(full, users[d][who] @ items[start:stop].T)
        cand = torch.arange(start, start + 4).expand(3, -1)
        torch.testing.assert_close(model.score(who, cand), full[:, :4])
    # a row of candidates from several domains: each scored with its own domain's user vector
    mixed = torch.tensor([[data.domain_item_range(d)[0] for d in range(data.n_domains)]])
    expected = torch.stack([users[d][0] @ items[mixed[0, d]] for d in range(data.n_domains)])
    torch.testing.assert_close(model.score(torch.tensor([0]), mixed)[0], expected)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gradient_reaches_every_parameter(variant):
    split = tiny_split()
    model = build(variant, split).train()
    model.loss(batch_of(split)).backward()
    towers = VARIANTS[variant][1].get("towers", [])
    # the item tower's last bias adds u . b to the positive and the negative alike: BPR cancels it
    assert_every_gradient_nonzero(model, {f"item_towers.{d}.{2 * len(towers) - 2}.bias" for d in range(split.data.n_domains)})


def assert_every_gradient_nonzero(model: torch.nn.Module, cancelled: set[str]) -> None:
    """After a backward pass every parameter but ``cancelled`` (biases BPR cancels) has a gradient."""
    for name, param in model.named_parameters():
        if name not in cancelled:
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def dense_twin(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose embedding tables give dense gradients (the path before sparse tables)."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if isinstance(module, torch.nn.Embedding):
            module.sparse = False
    return twin


def assert_steps_as_plain_adam_on_dense_gradients(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], sparse: set[str] = frozenset()) -> None:
    """``model``'s own optimizer (fused Adam, the tables' row-sparse gradients made dense before each step)
    moves every parameter as plain (non-fused) Adam on the dense twin's gradients does, step after step;
    the parameters named in ``sparse`` (read by lookups alone) get row-sparse gradients."""
    assert sparse <= {name for name, _ in model.named_parameters()}
    twin = dense_twin(model)
    fast = model.configure_optimizers(TrainConfig(lr=0.01))
    plain = torch.optim.Adam(twin.parameters(), lr=0.01)
    for step, batch in enumerate(batches):
        for net, opt in ((model, fast), (twin, plain)):
            opt.zero_grad(set_to_none=True)
            net.loss(batch).backward()
        assert all(p.grad.is_sparse for name, p in model.named_parameters() if name in sparse)
        fast.step()
        plain.step()
        for (name, mine), theirs in zip(model.named_parameters(), twin.parameters()):
            torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=1e-5, msg=f"step {step}: {name}")


SINGLE_DOMAIN = {"lightgcn": ({}, set()), "neumf": ({"layers": [12, 6]}, {"user_gmf.weight", "item_gmf.weight", "user_mlp.weight", "item_mlp.weight"})}
"""UCLR's single-domain baselines with embedding tables: extra options and the tables only lookups read."""


@pytest.mark.parametrize("variant", [*VARIANTS, *SINGLE_DOMAIN])
def test_sparse_tables_step_as_dense_adam_on_dense_gradients(variant):
    """The embedding tables' lookups give row-sparse gradients (HeroGraph's within-domain tables and NeuMF's,
    which no propagation reads, keep them to the step; a propagated table's sum with the graph's gradient is
    dense), and the fused step moves every parameter as plain Adam on the dense tables' gradients, over three steps."""
    split = tiny_split()
    if variant in SINGLE_DOMAIN:
        extra, sparse = SINGLE_DOMAIN[variant]
        torch.manual_seed(0)
        model = registry.get(variant).cls.from_split(split, registry.build_params(variant, {"dim": DIM, **extra}))
    else:
        model, sparse = build(variant, split), {"domain_user_emb.weight", "item_emb.weight"} if variant.startswith("herograph") else set()
    assert all(m.sparse for m in model.modules() if isinstance(m, torch.nn.Embedding))
    assert_steps_as_plain_adam_on_dense_gradients(model.train(), [batch_of(split, seed=step) for step in range(3)], sparse)


def test_sparse_product_is_the_matrix_product_to_the_bit():
    """The propagation's sparse product (``addmm`` onto a broadcast zero for CSR on the CPU) gives exactly
    ``A @ x``, for contiguous and column-major ``x``, and its backward exactly ``A^T @ grad``."""
    generator = torch.Generator().manual_seed(0)
    for rows, cols, width, nnz in [(50, 70, 8, 300), (900, 700, 64, 9000), (10, 10, 1, 0)]:
        index = torch.stack([torch.randint(0, rows, (nnz,), generator=generator), torch.randint(0, cols, (nnz,), generator=generator)])
        coo = torch.sparse_coo_tensor(index, torch.rand(nnz, generator=generator), (rows, cols), check_invariants=True).coalesce()
        matrix, transposed = to_csr(coo), to_csr(coo.t().coalesce())
        x = torch.randn(cols, width, generator=generator)
        for right in (x, x.t().contiguous().t()):
            assert torch.equal(sparse_product(matrix, right), matrix @ right)
            assert torch.equal(sparse_product(coo, right), coo @ right)
        leaf = x.clone().requires_grad_()
        out = sparse_matmul(matrix, leaf, transposed)
        grad = torch.randn(out.shape, generator=generator)
        out.backward(grad)
        assert torch.equal(out, matrix @ x) and torch.equal(leaf.grad, transposed @ grad)


def test_ga_attention_combines_only_the_domains_a_user_is_in():
    split = tiny_split()
    model = build("ga-mtcdr", split)
    present = model.present
    both = int(torch.nonzero(present[0] & present[1] & ~present[2])[0])
    weights = model.attention_weights(torch.tensor([both]), 2)[0]  # target domain 2, where the user is absent
    torch.testing.assert_close(weights[:2].sum(0), torch.ones(DIM))
    assert torch.all(weights[2] == 0)
    nowhere = torch.nonzero(~present.any(0))
    if len(nowhere):  # a user with no training row keeps the target domain's own embedding
        torch.testing.assert_close(model.attention_weights(nowhere[:1, 0], 1)[0, 1], torch.ones(DIM))


def test_bad_options_are_user_errors():
    with pytest.raises(CdrecError, match="model_params.combine"):
        registry.build_params("herograph", {"combine": "max"})
    with pytest.raises(CdrecError, match="model_params.attention"):
        registry.build_params("ga-mtcdr", {"attention": "item"})


# ------------------------------------------------------------------------------ through run_config
BASE = ["train.progress=false", "train.device=cpu", "train.batch_size=256", "train.lr=0.01", "eval.ks=[10]", "model_params.dim=16"]


@pytest.mark.parametrize("model", ["herograph", "ga-mtcdr"])
def test_seeded_rerun_is_identical(model, tmp_path):
    assert_seeded_rerun_identical([f"model={model}", *BASE, "train.epochs=2", "data.synthetic={n_users: 120, n_domains: 2, items_per_domain: 120, seed: 1}", "split.n_negatives=20"], tmp_path)


def assert_seeded_rerun_identical(sets: list[str], folder: Path) -> None:
    """Two runs of ``sets`` give the same metrics and the same saved weights."""
    first = run_config(load_config(None, sets), folder / "a")
    second = run_config(load_config(None, sets), folder / "b")
    assert first.metrics == second.metrics
    a, b = (torch.load(p / "model.pt", weights_only=False)["joint"] for p in (folder / "a", folder / "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def planted_cross_domain(path: Path, n_users: int = 300, n_items: int = 80, seed: int = 0) -> None:
    """Two domains whose items users choose by the SAME latent preference; every user has 15 items
    in ``dense``, two thirds of the users only 3 in ``sparse`` (one left for training)."""
    rng = np.random.default_rng(seed)
    taste = rng.normal(size=(n_users, 4))
    sparse_user = rng.random(n_users) < 2 / 3
    frames = []
    for name, counts in (("dense", np.full(n_users, 15)), ("sparse", np.where(sparse_user, 3, 12))):
        affinity = 2.0 * taste @ rng.normal(size=(n_items, 4)).T
        order = np.argsort(-(affinity - np.log(-np.log(rng.random(affinity.shape)))), axis=1)
        user, rank = np.nonzero(np.arange(n_items)[None, :] < counts[:, None])
        frames.append(pd.DataFrame({"user": user, "item": [f"{name}{i}" for i in order[user, rank]], "domain": name}))
    pd.concat(frames).to_csv(path, index=False)


def planted_with_control(folder: Path) -> None:
    """``both.csv`` (:func:`planted_cross_domain`) and its control ``unlinked.csv``: the same rows,
    the dense domain's users renamed at random."""
    planted_cross_domain(folder / "both.csv")
    frame = pd.read_csv(folder / "both.csv")
    dense = frame["domain"] == "dense"
    frame.loc[dense, "user"] = np.random.default_rng(1).permutation(frame["user"].max() + 1)[frame.loc[dense, "user"]]
    frame.to_csv(folder / "unlinked.csv", index=False)


def test_cross_domain_signal_found_on_the_sparse_domain(tmp_path):
    """Both models rank the sparse domain far better than single-domain BPR-MF, and only because the
    dense domain's users are the same people: with them renamed at random the gain is gone."""
    planted_with_control(tmp_path)
    sets = [*BASE, "train.epochs=10", "split.n_negatives=50"]

    def sparse_mrr(model: str, csv: str, *extra: str) -> float:
        cfg = load_config(None, [f"model={model}", "data.name=table", f"data.path={tmp_path / csv}", *sets, *extra])
        return run_config(cfg, tmp_path / f"{model}-{csv}-{len(extra)}").metrics["sparse"]["MRR@10"]

    bprmf = sparse_mrr("bprmf", "both.csv", "scope=single")
    for model in ("herograph", "ga-mtcdr"):
        joint = sparse_mrr(model, "both.csv")
        unlinked = sparse_mrr(model, "unlinked.csv")  # the same model when the dense domain says nothing about these users
        assert joint > bprmf + 0.1, (model, joint, bprmf)
        assert joint > unlinked + 0.05, (model, joint, unlinked)


# ------------------------------------------------------------------------------ the faces
@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("cross-domain-graphs")
    out = {}
    for model in ("herograph", "ga-mtcdr"):
        out[model] = cli_run(base / model, [f"model={model}", *CLI_SETS])
    return out


CLI_SETS = [*BASE, "train.epochs=2", "data.synthetic={n_users: 100, n_domains: 2, items_per_domain: 120, seed: 3}", "split.n_negatives=20"]


def cli_run(out: Path, sets: list[str]) -> Path:
    """``cdrec run --set ... --out OUT``, which must succeed."""
    done = call_main("run", *[arg for s in sets for arg in ("--set", s)], "--out", str(out))
    assert done.code == 0, done.stderr
    return out


def assert_evaluation_matches_saved(run: Path) -> dict:
    """``cdrec evaluate`` (Python and CLI) gives the metrics of the run's ``results.json``; returns them."""
    saved = json.loads((run / "results.json").read_text())["metrics"]
    evaluated = evaluate_run(run, device="cpu").metrics
    assert set(evaluated) == set(saved)
    for dom in saved:
        for metric in ("MRR@10", "HR@10", "NDCG@10"):
            assert evaluated[dom][metric] == pytest.approx(saved[dom][metric], abs=1e-6)
    shown = call_main("evaluate", str(run), "--device", "cpu")
    assert shown.code == 0 and f"{saved['overall']['MRR@10']:.4f}" in shown.stdout, shown.stdout + shown.stderr
    return saved


@pytest.mark.parametrize("model", ["herograph", "ga-mtcdr"])
def test_run_evaluate_recommend_and_serve(cli_runs, model):
    import cdrec
    from cdrec.serve import create_app

    run = cli_runs[model]
    assert_evaluation_matches_saved(run)

    cfg = load_run_config(run)
    prepared, models = task_for(model).restore(cfg, run)
    trained, data = models["joint"], prepared.data
    users, items = trained.propagate()
    predictor = cdrec.load(run, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    with TestClient(create_app(predictor)) as client:
        for d, dom in enumerate(data.domains):
            start, stop = data.domain_item_range(d)
            for user in (0, 42):
                raw = data.user_ids[user]
                with torch.no_grad():
                    scores = (users[d][user] @ items[start:stop].T).numpy()
                top = [str(data.item_ids[start + j]) for j in np.argsort(-scores, kind="stable")[:5]]
                assert [str(i) for i in predictor.recommend(raw, dom, 5, exclude_seen=False).items] == top
                out = call_main("recommend", str(run), "--user", str(raw), "--domain", dom, "-k", "5", "--include-seen", "--json", "--device", "cpu")
                assert out.code == 0 and [str(r["item"]) for r in json.loads(out.stdout)["items"]] == top
                body = client.get("/recommend", params={"user": str(raw), "domain": dom, "k": 5, "exclude_seen": "false"}).json()
                assert [str(r["item"]) for r in body["items"]] == top
