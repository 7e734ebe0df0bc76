"""SequencePredictor: a history scores every candidate exactly as the evaluator does (per-row ranks
and the run's stored MRR), users' recommendations, exclusions, cold start, export and errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cdrec.data.sequences import time_order
from cdrec.errors import CdrecError
from cdrec.evaluate import rank_metrics
from cdrec.experiments.pipeline import load_run_config
from cdrec.metrics.ranking import positive_rank
from cdrec.predict import UnknownIdError, UnsupportedError, export_recommendations
from cdrec.predictors.sequence import SequencePredictor
from cdrec.train.sequential import eval_batches
from cdrec.train.tasks import task_for

from .conftest import SEQ_MODELS


def restored(run):
    cfg = load_run_config(run)
    task = task_for(cfg.model)
    return task.restore(cfg, run)


@pytest.mark.parametrize("name", SEQ_MODELS)
def test_history_scores_reproduce_the_evaluation(runs, predictors, name):
    p = predictors[name]
    assert isinstance(p, SequencePredictor) and p.info()["supports"] == ["recommend", "sequence"]
    prepared, models = restored(runs[name])
    data = prepared.data
    stored = json.loads((runs[name] / "results.json").read_text())["metrics"]
    checked = 0
    for scope in prepared.scopes:
        view = scope.parts["test"]
        with torch.no_grad():  # the evaluator's own scores of the stored candidates
            ref = np.concatenate([models[scope.name].score(b).numpy() for _, b in eval_batches(view, 64, torch.device("cpu"))])
        ours = np.full(len(view.rows), -1, dtype=np.int64)
        for r in range(len(view.rows)):
            hist = view.history.items[r]
            hist = hist[hist > 0] - 1
            if len(hist) == 0:  # no input for this single-target model
                continue
            d = int(view.target_domain[r])
            rec = p.recommend_sequence(data.item_ids[hist].tolist(), k=data.n_items, domain=p.domains[d])[p.domains[d]]
            assert rec.user is None and set(rec.items).isdisjoint(data.item_ids[hist].tolist())
            got = dict(zip(rec.items, rec.scores))
            scores = np.array([got[x] for x in data.item_ids[view.candidates[r] - 1].tolist()])
            np.testing.assert_allclose(scores, ref[r], rtol=1e-5, atol=1e-6)
            ours[r] = positive_rank(scores[None])[0]
            checked += 1
        has = ours >= 0
        np.testing.assert_array_equal(ours[has], positive_rank(ref)[has])
        assert has.all() or p.single_target
        if has.all():  # every test row answered: the run's stored per-domain MRR follows
            mrr = rank_metrics(ours, [5])["MRR"]
            for d in np.unique(view.target_domain):
                assert mrr[view.target_domain == d].mean() == pytest.approx(stored[p.domains[d]]["MRR"], abs=1e-9)
    assert checked > 50


@pytest.mark.parametrize("name", SEQ_MODELS)
def test_recommend_for_a_user_reads_all_their_events(predictors, name):
    p = predictors[name]
    data = p.data
    for u in range(0, 40, 7):
        rows = time_order(data, np.flatnonzero(data.users == u))
        history = data.item_ids[data.items[rows]].tolist()
        for d, dom in enumerate(p.domains):
            if not p.known[u, d]:
                continue
            rec = p.recommend(data.user_ids[u], dom, 5)
            ref = p.recommend_sequence(history, 5, domain=dom)[dom]
            assert rec.items == ref.items and rec.user == data.user_ids[u] and rec.source == "model"
            np.testing.assert_allclose(rec.scores, ref.scores, rtol=1e-5, atol=1e-6)
            lo, hi = p.offsets[d], p.offsets[d + 1]
            assert set(rec.items) <= set(data.item_ids[lo:hi].tolist())
            assert set(rec.items).isdisjoint(history)
            assert len(rec.items) == 5 and rec.scores == sorted(rec.scores, reverse=True)
            kept = p.recommend(data.user_ids[u], dom, hi - lo, exclude_seen=False)
            assert len(kept.items) == hi - lo  # nothing left out


def test_single_target_uses_only_the_domains_events(predictors):
    p = predictors["bert4rec-st"]
    data = p.data
    d0 = data.item_ids[p.offsets[0] : p.offsets[0] + 3].tolist()
    d1 = data.item_ids[p.offsets[1] : p.offsets[1] + 2].tolist()
    mixed = p.recommend_sequence([d0[0], d1[0], d0[1], d1[1], d0[2]], 4)
    only = {dom: p.recommend_sequence(h, 4, domain=dom)[dom] for dom, h in (("D0", d0), ("D1", d1))}
    for dom in ("D0", "D1"):
        assert mixed[dom].items == only[dom].items
    assert list(p.recommend_sequence(d0, 4)) == ["D0"]  # no D1 event: no D1 answer
    with pytest.raises(CdrecError, match="no item of domain 'D1'"):
        p.recommend_sequence(d0, 4, domain="D1")


@pytest.mark.parametrize("name", ["merit", "cd-sasrec", "cd-asr", "mgcl"])  # cd-*, mgcl: one model per domain, reading both
def test_mixed_models_use_the_other_domain_too(predictors, name):
    p = predictors[name]
    data = p.data
    d0 = data.item_ids[p.offsets[0] : p.offsets[0] + 2].tolist()
    d1 = data.item_ids[p.offsets[1] : p.offsets[1] + 2].tolist()
    a = p.recommend_sequence(d0, 5, domain="D0")["D0"]
    b = p.recommend_sequence([d1[0], d0[0], d1[1], d0[1]], 5, domain="D0")["D0"]
    assert not np.allclose(a.scores, b.scores)
    assert set(p.recommend_sequence(d0, 5)) == {"D0", "D1"}


def test_errors_and_cold_start(predictors):
    p = predictors["sasrec-dt"]
    item = p.data.item_ids[0]
    with pytest.raises(UnknownIdError, match="history\\[1\\]: unknown item 'nope'"):
        p.recommend_sequence([item, "nope"], 3)
    with pytest.raises(UnknownIdError, match="unknown domain 'D7'"):
        p.recommend_sequence([item], 3, domain="D7")
    with pytest.raises(CdrecError, match="non-empty list"):
        p.recommend_sequence([], 3)
    with pytest.raises(CdrecError, match="k: expected an integer >= 1"):
        p.recommend_sequence([item], 0)
    with pytest.raises(UnknownIdError, match="unknown user 'ghost'"):
        p.recommend("ghost", "D0", 3)
    pop = p.recommend("ghost", "D1", 3, fallback="popularity")
    assert pop.source == "popularity" and pop.items == p.items.to_raw(p.popular[1][:3])
    with pytest.raises(UnsupportedError, match="does not support scoring rows"):
        p.score_rows([{"user": 0, "item": 0}])


def test_export_equals_recommend(predictors, tmp_path):
    p = predictors["merit"]
    n = export_recommendations(p, tmp_path / "recs.csv", k=3, domains=["D1"], batch_size=16)
    frame = pd.read_csv(tmp_path / "recs.csv")
    assert n == len(frame) == 3 * int(p.known[:, 1].sum())
    for user in frame["user"].unique()[:5]:
        rec = p.recommend(user, "D1", 3)
        got = frame[frame["user"] == user].sort_values("rank")
        assert got["item"].tolist() == rec.items
        np.testing.assert_allclose(got["score"], rec.scores, rtol=1e-5, atol=1e-6)
