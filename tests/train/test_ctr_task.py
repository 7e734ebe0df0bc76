"""The ``ctr`` task end to end on small synthetic data: modes, metrics (against sklearn), learning,
saved-model evaluation and user errors."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from cdrec.config import load_config
from cdrec.data.ctr import build_ctr_view
from cdrec.errors import CdrecError
from cdrec.experiments.pipeline import evaluate_run, run_config
from cdrec.train.ctr import ctr_metrics, scopes_for

SMALL = ["data.synthetic={n_users: 600, items_per_domain: 150}", "train.progress=false", "train.device=cpu", "train.batch_size=512"]


def cfg(model: str, *extra: str):
    return load_config(None, [f"model={model}", *SMALL, *extra])


def test_metrics_per_head_agree_with_sklearn(tiny_synthetic):
    view = build_ctr_view(tiny_synthetic)
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(view))[:500]
    probs = rng.random((500, 2))
    probs[:, 0] = np.round(probs[:, 0], 1)  # ties are handled like sklearn
    out = ctr_metrics(view, rows, probs)
    heads = []
    for d, name in enumerate(view.domains):
        mask = view.domain[rows] == d
        for t, task in enumerate(view.tasks):
            y = view.labels[rows][mask, t]
            assert out[name][f"AUC[{task}]"] == pytest.approx(roc_auc_score(y, probs[mask, t]), abs=1e-12)
            assert out[name][f"LogLoss[{task}]"] == pytest.approx(sk_log_loss(y, probs[mask, t], labels=[0, 1]), abs=1e-12)
            heads.append(out[name][f"AUC[{task}]"])
    assert out["overall"]["AUC"] == pytest.approx(np.mean(heads))
    assert out["overall"]["AUC[click]"] == pytest.approx(np.mean(heads[0::2]))


def test_modes_make_the_scopes_of_table2(tiny_synthetic):
    view = build_ctr_view(tiny_synthetic)
    assert len(scopes_for("single", view)) == 6
    assert [s.domain for s in scopes_for("mtl", view)] == [0, 1, 2]
    assert [s.task for s in scopes_for("mdl", view)] == [0, 1]
    assert [(s.domain, s.task) for s in scopes_for("mdmt", view)] == [(None, None)]


@pytest.mark.parametrize(
    "model, mode",
    [("mlp", "single"), ("sharedbottom", "mtl"), ("mmoe", "mdmt"), ("ple", "mdl"), ("star", "mdl"), ("adatt", "mtl"), ("adatt-sp", "mtl"), ("m2m", "mdmt"), ("m3oe", "mdmt")],
)
def test_models_learn_on_synthetic(tmp_path, model, mode):
    res = run_config(cfg(model, f"model_params.mode={mode}", "train.epochs=4"), tmp_path / model)
    assert res.setting["mode"] == mode
    assert set(res.metrics) == {"D0", "D1", "D2", "overall"}
    assert {"AUC[click]", "AUC[like]", "LogLoss[click]", "LogLoss[like]"} <= set(res.metrics["D0"])
    assert res.metrics["overall"]["AUC"] > 0.6, res.metrics["overall"]
    assert (tmp_path / model / "model.pt").exists() and not list((tmp_path / model).glob("checkpoint*"))


@pytest.mark.parametrize("arch_every", [1, 0])  # 0: one upper-level step per epoch (section 2.6)
def test_m3oe_run_records_fusion_weights_and_reloads(tmp_path, arch_every):
    res = run_config(cfg("m3oe", "train.epochs=2", f"model_params.arch_every={arch_every}"), tmp_path / "run")
    weights = res.history[0]["fusion_weights"]
    assert set(weights) == {"beta_d", "beta_t", "alpha_d", "alpha_t"} and len(weights["beta_d"]) == 3
    moved = [abs(v - 0.5) for key in weights for v in weights[key]]
    assert max(moved) > 1e-4
    if arch_every == 0:  # 2 epochs = 2 Adam steps of lr 3e-2 on the logits: |sigmoid(e) - 0.5| <= 0.25 * 0.06
        assert max(moved) <= 0.02, weights
    again = evaluate_run(tmp_path / "run", part="test")
    assert again.metrics["overall"]["AUC"] == pytest.approx(res.metrics["overall"]["AUC"], abs=1e-6)


@pytest.mark.parametrize("model, mode", [("m2m", "mdmt"), ("adatt-sp", "mdmt")])
def test_m2m_and_adatt_sp_evaluate_from_their_saved_run(tmp_path, model, mode):
    """``cdrec evaluate`` (evaluate_run) reloads the saved model and gives the run's own test metrics."""
    res = run_config(cfg(model, f"model_params.mode={mode}", "train.epochs=1"), tmp_path / "run")
    assert res.config["model_params"]["n_shared" if model == "adatt-sp" else "n_experts"] == (0 if model == "adatt-sp" else 4)
    again = evaluate_run(tmp_path / "run", part="test")
    assert again.metrics["overall"]["AUC"] == pytest.approx(res.metrics["overall"]["AUC"], abs=1e-6)


def test_wrong_mode_or_protocol_is_a_user_error(tmp_path):
    with pytest.raises(CdrecError, match="mode"):
        run_config(cfg("m3oe", "model_params.mode=mtl"), tmp_path / "a")
    with pytest.raises(CdrecError, match="split.protocol"):
        run_config(cfg("mmoe", "split.protocol=loo"), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_tasks_come_from_the_data_label_columns(tmp_path):
    """A file with its own binary label columns trains one head per column, named after it (here a
    single task, ``purchase``); data without label columns keeps click / like from the ratings."""
    rng = np.random.default_rng(0)
    n = 3000
    users, items = rng.integers(0, 200, n), rng.integers(0, 90, n)
    purchase = (rng.random(n) < 0.2 + 0.6 * (items % 3 == 0)).astype(int)  # learnable from the item
    frame = pd.DataFrame({"user": users, "item": items, "domain": np.where(items < 45, "a", "b"), "timestamp": np.arange(n), "purchase": purchase})
    frame.drop_duplicates(["user", "item"]).to_csv(tmp_path / "own.csv", index=False)
    res = run_config(cfg("m3oe", "data.name=table", f"data.path={tmp_path / 'own.csv'}", "data.columns={labels: purchase}",
                         "train.epochs=3", "model_params.mode=mdmt"), tmp_path / "run")
    assert set(res.metrics) == {"a", "b", "overall"}
    assert {k for k in res.metrics["overall"] if "[" in k} == {"AUC[purchase]", "LogLoss[purchase]"}
    assert res.metrics["overall"]["AUC"] > 0.6, res.metrics["overall"]
    assert len(res.history[0]["fusion_weights"]["beta_t"]) == 1


@pytest.mark.parametrize("name, tasks", [("mdmt-ml-1m", ["click", "like"]), ("mdmt-douban", ["rating"]), ("mdmt-kuairand", ["is_click"])])
def test_shared_ctr_samples_train_their_own_label_columns(tmp_path, name, tasks):
    """The shared multi-task samples carry binary label columns; each is a task (before, Douban's 0/1
    label was thresholded at > 3 into all-zero labels, and KuaiRand had no click / like at all)."""
    from tests.conftest import shared_path

    data_dir = shared_path("mdmt-samples").parent
    res = run_config(load_config(None, ["model=mmoe", f"data.name={name}", f"data.data_dir={data_dir}", "train.epochs=1",
                                        "train.progress=false", "train.device=cpu"]), tmp_path / "run")
    assert sorted(k[4:-1] for k in res.metrics["overall"] if k.startswith("AUC[")) == sorted(tasks)
    assert all(np.isfinite(res.metrics["overall"][f"AUC[{t}]"]) for t in tasks)


def test_early_stopping_metric_is_auc_or_logloss_and_anything_else_is_refused(tmp_path):
    res = run_config(cfg("mmoe", "train.epochs=3", "train.metric=LogLoss"), tmp_path / "ll")
    (entry,) = res.history
    losses = [e["valid"]["LogLoss"] for e in entry["epochs"]]
    assert entry["best_epoch"] == int(np.argmin(losses)) + 1
    for bad in ("NOPE", "HR@10", "AUC[click]"):
        with pytest.raises(CdrecError, match=rf"^train\.metric: the ctr task early-stops .*got '{re.escape(bad)}'"):
            run_config(cfg("mmoe", f"train.metric={bad}"), tmp_path / bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ll"]


def test_constant_labels_give_null_auc_without_warnings_and_an_undefined_stop_metric_is_refused(tmp_path):
    import warnings

    rng = np.random.default_rng(0)
    n = 1500
    rating = rng.integers(1, 6, n)
    frame = pd.DataFrame({"user": rng.integers(0, 150, n), "item": rng.integers(0, 90, n), "timestamp": np.arange(n),
                          "domain": np.where(rng.random(n) < 0.5, "A", "B"), "rating": rating,
                          "click": (rating > 3).astype(int), "purchase": 0})
    frame.drop_duplicates(["user", "item"]).to_csv(tmp_path / "d.csv", index=False)
    own = ["model=mmoe", "data.name=table", f"data.path={tmp_path / 'd.csv'}", "train.epochs=2", "train.progress=false", "train.device=cpu"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no "Mean of empty slice" for the all-zero purchase heads
        res = run_config(load_config(None, [*own, "data.columns.labels=click,purchase"]), tmp_path / "one")
    assert np.isnan(res.metrics["overall"]["AUC[purchase]"]) and res.metrics["overall"]["AUC"] == pytest.approx(res.metrics["overall"]["AUC[click]"])
    with pytest.raises(CdrecError, match=r"^train\.metric: AUC is undefined on .* use train\.metric=LogLoss"):
        run_config(load_config(None, [*own, "data.columns.labels=purchase"]), tmp_path / "none")
    assert not (tmp_path / "none").exists()
    assert run_config(load_config(None, [*own, "data.columns.labels=purchase", "train.metric=LogLoss"]), tmp_path / "ll").history
