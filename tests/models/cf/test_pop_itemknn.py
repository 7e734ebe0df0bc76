"""The memory-based baselines ``pop`` and ``itemknn``: similarities against scikit-learn, top-k
truncation, scores against brute force, the one-pass fit (no Trainer, no epochs), reruns, and the
command-line path run -> evaluate -> recommend -> serve."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics.pairwise import cosine_similarity

import cdrec
from cdrec.config import load_config
from cdrec.data.views import interaction_matrix
from cdrec.experiments.pipeline import run_config
from cdrec.models.cf.itemknn import EPS, ItemKNN, ItemKNNParams, cosine_top_k
from cdrec.models.cf.pop import Pop, PopParams
from cdrec.train import tasks
from cdrec.train.tasks import make_split
from tests.cli_helpers import call_main

SYNTH = "data.synthetic={n_users: 150, n_domains: 2, items_per_domain: 60, min_activity: 6, max_activity: 25, signal: 1.0, seed: 3}"
COMMON = [SYNTH, "split.n_negatives=20", "train.progress=false", "train.device=cpu"]


def tiny_matrix(seed: int = 0, users: int = 40, items: int = 14, density: float = 0.3) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((users, items)) < density).astype(np.float32))


def dense_similarity(matrix: sp.csr_matrix, shrink: float = 0.0) -> np.ndarray:
    """The oracle: scikit-learn's cosine of the item columns, shrunk, without self-similarity."""
    cos = cosine_similarity(matrix.T.toarray())
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=0)).ravel())
    product = np.outer(norms, norms)
    sim = cos * product / (product + shrink + EPS)
    np.fill_diagonal(sim, 0.0)
    return sim


@pytest.mark.parametrize("shrink", [0.0, 2.5])
def test_similarities_match_sklearn_cosine(shrink):
    matrix = tiny_matrix()
    got = cosine_top_k(matrix, k=100, shrink=shrink).toarray()
    assert got.shape == (14, 14) and np.all(np.diag(got) == 0)
    np.testing.assert_allclose(got, dense_similarity(matrix, shrink), rtol=1e-5, atol=1e-7)


def test_top_k_keeps_the_k_most_similar_per_item_lower_index_first_on_ties():
    matrix = tiny_matrix(seed=1)
    matrix = sp.hstack([matrix, matrix[:, :3]]).tocsr()  # items 14-16 copy items 0-2: exact ties
    full = dense_similarity(matrix)
    got = cosine_top_k(matrix, k=4)
    assert np.all(np.diff(got.indptr) <= 4)
    for i in range(matrix.shape[1]):
        order = np.lexsort((np.arange(len(full)), -full[i].round(5)))  # similarity descending, index
        expected = [j for j in order[:4] if full[i, j] > 0]
        row = got[i]
        assert sorted(row.indices.tolist()) == sorted(expected), i
        np.testing.assert_allclose(row.toarray()[0, expected], full[i, expected], rtol=1e-5)


def test_blocks_and_pools_change_no_similarity():
    matrix = tiny_matrix(seed=2, items=20)
    whole = cosine_top_k(matrix, k=5)
    assert (cosine_top_k(matrix, k=5, block_cells=7) != whole).nnz == 0  # many small blocks
    pools = [(0, 8), (8, 20)]
    split_pools = cosine_top_k(matrix, k=5, pools=pools, block_cells=11)
    for lo, hi in pools:  # each pool alone, and nothing across pools
        alone = cosine_top_k(matrix[:, lo:hi], k=5).toarray()
        np.testing.assert_array_equal(split_pools[lo:hi, lo:hi].toarray(), alone)
    assert split_pools[:8, 8:].nnz == 0 and split_pools[8:, :8].nnz == 0


@pytest.fixture
def split(tiny_synthetic):
    cfg = load_config(None, ["split.n_negatives=20"])
    return make_split(tiny_synthetic, cfg)


def test_itemknn_scores_are_the_users_summed_neighbour_similarities(split):
    model = ItemKNN.from_split(split, ItemKNNParams(k=10))
    model.fit_interactions(split)
    history = interaction_matrix(split.train).toarray()
    sims = model.neighbours.toarray()
    assert np.all((sims > 0).sum(axis=1) <= 10)
    brute = history @ sims.T  # score(u, i) = sum_j R[u, j] S[i, j]
    users = np.arange(0, split.data.n_users, 7)
    start, stop = split.data.domain_item_range(1)
    all_scores = model.score_all(torch.as_tensor(users), start, stop)
    assert all_scores.shape == (len(users), stop - start) and all_scores.dtype == torch.float32
    np.testing.assert_allclose(all_scores.numpy(), brute[users, start:stop], rtol=1e-5, atol=1e-6)
    cands = split.candidates["test"][: len(users)]
    sampled = model.score(torch.as_tensor(users), torch.as_tensor(cands))
    assert sampled.shape == cands.shape
    np.testing.assert_allclose(sampled.numpy(), brute[users[:, None], cands], rtol=1e-5, atol=1e-6)


def test_itemknn_state_round_trips_and_refuses_other_sizes(split):
    model = ItemKNN.from_split(split, ItemKNNParams(k=5))
    model.fit_interactions(split)
    fresh = ItemKNN.from_split(split, ItemKNNParams(k=5))
    fresh.load_state_dict(model.state_dict())
    assert (fresh.neighbours != model.neighbours).nnz == 0
    smaller = ItemKNN(sp.csr_matrix((3, 4), dtype=np.float32), [0, 4], ItemKNNParams())
    with pytest.raises(RuntimeError, match="saved neighbours"):
        smaller.load_state_dict(model.state_dict())


def test_pop_ranks_by_training_count(split):
    model = Pop.from_split(split, PopParams())
    model.fit_interactions(split)
    counts = np.bincount(split.data.items[split.train_rows], minlength=split.data.n_items)
    start, stop = split.data.domain_item_range(0)
    scores = model.score_all(torch.as_tensor([0, 5]), start, stop)
    np.testing.assert_array_equal(scores[0].numpy(), counts[start:stop])
    np.testing.assert_array_equal(scores[1].numpy(), scores[0].numpy())  # the same for every user
    cands = split.candidates["test"][:4]
    ranked = model.score(torch.as_tensor([1, 2, 3, 4]), torch.as_tensor(cands)).numpy()
    np.testing.assert_array_equal(ranked, counts[cands])
    assert int(torch.argmax(scores[0])) + start == start + int(np.argmax(counts[start:stop]))


@pytest.mark.parametrize("model", ["pop", "itemknn"])
def test_one_pass_fit_without_trainer_and_an_honest_history(model, tmp_path, monkeypatch):
    def no_trainer(*args, **kwargs):
        raise AssertionError("the Trainer was built for a model with nothing to optimise")

    monkeypatch.setattr(tasks, "Trainer", no_trainer)
    first = run_config(load_config(None, [f"model={model}", "scope=single", *COMMON]), tmp_path / "a")
    assert first.history == [{"scope": d, "fit": "one-pass", "best_epoch": 0, "epochs": []} for d in ("D0", "D1")]
    assert not list((tmp_path / "a").glob("checkpoint*")) and (tmp_path / "a" / "model.pt").exists()
    again = run_config(load_config(None, [f"model={model}", "scope=single", *COMMON]), tmp_path / "b")
    assert again.metrics == first.metrics and again.valid_metrics == first.valid_metrics  # seeded rerun: identical


def test_itemknn_beats_pop_and_random_on_structured_data(tmp_path):
    results = {m: run_config(load_config(None, [f"model={m}", *COMMON]), tmp_path / m).metrics["overall"] for m in ("pop", "itemknn")}
    assert results["itemknn"]["HR@10"] > 10 / 21 + 0.1  # a random ranking of 1+20 candidates gives 10/21
    assert results["itemknn"]["NDCG@10"] > results["pop"]["NDCG@10"]


def test_itemknn_within_domains_equals_one_model_per_domain(tmp_path):
    joint = run_config(load_config(None, ["model=itemknn", "model_params.cross_domain=false", *COMMON]), tmp_path / "joint")
    single = run_config(load_config(None, ["model=itemknn", "scope=single", *COMMON]), tmp_path / "single")
    crossing = run_config(load_config(None, ["model=itemknn", *COMMON]), tmp_path / "cross")
    for dom in ("D0", "D1", "overall"):
        for metric, value in single.metrics[dom].items():
            assert joint.metrics[dom][metric] == pytest.approx(value, abs=1e-12), (dom, metric)
    assert crossing.metrics["overall"] != joint.metrics["overall"]  # neighbours across domains do change scores


@pytest.mark.parametrize("model", ["pop", "itemknn"])
def test_cli_run_evaluate_recommend_and_serve(model, tmp_path):
    run = tmp_path / model
    sets = [a for s in COMMON for a in ("--set", s)]
    done = call_main("run", "--set", f"model={model}", *sets, "--out", str(run))
    assert done.code == 0 and done.exception is None, (done.stderr, done.exception)
    saved = json.loads((run / "results.json").read_text())
    assert saved["model"] == model and saved["history"][0]["fit"] == "one-pass"
    evaluated = call_main("evaluate", str(run))
    assert evaluated.code == 0, evaluated.stderr
    assert f"{saved['metrics']['overall']['HR@10']:.4f}" in evaluated.stdout
    predictor = cdrec.load(run, device="cpu")
    user = predictor.data.user_ids[0]
    recs = call_main("recommend", str(run), "--user", str(user), "--domain", "D1", "-k", "5", "--json")
    assert recs.code == 0, recs.stderr
    items = [row["item"] for row in json.loads(recs.stdout)["items"]]
    assert items == predictor.recommend(user, "D1", 5).items and len(items) == 5
    _serve(predictor, user, items)


def _serve(predictor, user, items) -> None:
    from cdrec.serve import create_app

    with warnings.catch_warnings():  # starlette's TestClient warns that it wants httpx2; httpx is what we ship
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient
    with TestClient(create_app(predictor)) as client:
        answer = client.get("/recommend", params={"user": str(user), "domain": "D1", "k": 5})
        assert answer.status_code == 200, answer.text
        assert [row["item"] for row in answer.json()["items"]] == items
        scored = client.post("/score", json={"rows": [{"user": user.item() if hasattr(user, "item") else user, "item": items[0]}]})
        assert scored.status_code == 200 and scored.json()["scores"][0]["score"] == pytest.approx(answer.json()["items"][0]["score"])


def test_recipes_list_the_baselines_first():
    from cdrec.experiments import uclr

    assert uclr.BASELINES[:2] == ["pop", "itemknn"] and uclr.PHASES[0][:2] == ["pop", "itemknn"]
    for model in uclr.BASELINES:
        cfg = uclr._config(model, "douban", 0, uclr.SCHEDULE, None, "cpu")
        assert cfg.model == model and cfg.scope == "single"


@pytest.mark.realdata
def test_ml100k_table_pop_below_itemknn_and_bprmf(tmp_path, capsys):
    """ML-100K with configs/bprmf-ml100k.yaml's protocol (leave-one-out, 1+99 candidates, seed 0): the
    popularity ranking is the floor that ItemKNN and BPR-MF must clear; `-s` prints the table."""
    from cdrec.results.tables import aggregate_seeds, markdown_table, mean_std, run_key
    from tests.conftest import REPO, shared_path

    root = shared_path("ml-100k").parent
    results = [run_config(load_config(REPO / "configs" / "bprmf-ml100k.yaml", [f"model={m}", f"data.data_dir={root}", "train.progress=false",
                                                                                "train.device=cpu"]), tmp_path / m) for m in ("pop", "itemknn", "bprmf")]
    agg = aggregate_seeds(results)
    metrics = ["HR@10", "NDCG@10", "MRR@10"]
    table = markdown_table(["model", *metrics], [[r.model, *(mean_std(agg[run_key(r)]["overall"][m]) for m in metrics)] for r in results])
    with capsys.disabled():
        print("\nML-100K, loo/1+99, seed 0 (test, all 943 users)\n" + table)
    pop, itemknn, bprmf = (r.metrics["overall"] for r in results)
    assert pop["n"] == itemknn["n"] == bprmf["n"] == 943
    for metric in ("HR@10", "NDCG@10"):
        assert pop[metric] < itemknn[metric] and pop[metric] < bprmf[metric], metric
