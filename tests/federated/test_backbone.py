"""Each organization's own MTAL backbone (``setting.backbone``): chosen privately on its own validation entries."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cdrec.config import load_config
from cdrec.data.splits import ratio_split
from cdrec.data.synthetic import SyntheticConfig, make_synthetic
from cdrec.errors import CdrecError
from cdrec.experiments.pipeline import run_config
from cdrec.federated import baselines
from cdrec.federated.alignment import build_federation
from cdrec.federated.backbones import LOCAL_BACKBONES
from cdrec.federated.mtal import replay, run_mtal
from cdrec.federated.organization import MTALConfig, Organization
from cdrec.federated.transport import InProcessTransport
from cdrec.models.assisted.aae import AAE, AAEParams
from cdrec.models.assisted.mf import MF
from cdrec.models.assisted.mlp import MLP
from cdrec.results.schema import RunResult


@pytest.fixture(scope="module")
def fed():
    data = make_synthetic(SyntheticConfig(n_users=160, n_domains=3, items_per_domain=40, min_activity=8, max_activity=30,
                                          max_activity_share=0.5, signal=1.0, seed=3))
    return build_federation(data, ratio_split(data, [0.8, 0.1, 0.1], by_user=True, seed=0))


def cfg_of(**kw) -> MTALConfig:
    base = dict(rounds=2, eta=0.5, model=AAEParams(epochs=3, batch_size=40, dropout=0.1), pair_epochs=3, pair_batch_size=256,
                backbone="auto", seed=0)
    return MTALConfig(**{**base, **kw})


def test_each_organization_chooses_by_its_own_validation_entries_and_fits_its_choice(fed, monkeypatch):
    """Planted validation scores: a candidate predicts an organization's validation ratings exactly where the plant
    says so, and is 0.5 off elsewhere. Each organization picks its planted candidate, its candidates see its own
    training and validation entries and no test entry, and its rounds fit the model it chose."""
    planted = dict(zip([h.name for h in fed.orgs], ["mf", "mlp", "aae"]))
    seen = []

    def fake_fit_block(block, backbone, feedback, cfg, n_groups, n_rows):
        owner = next(h for h in fed.orgs if np.array_equal(h.valid.items, block.valid.items))
        assert np.array_equal(block.train.items, owner.train.items) and len(block.test) == 0
        name = "aae" if backbone == "ae" else backbone
        seen.append((owner.name, name))
        offset = 0.0 if planted[owner.name] == name else 0.5
        return baselines.BlockFit(block.valid.y + offset, np.zeros(0), 2)

    monkeypatch.setattr(baselines, "fit_block", fake_fit_block)
    run = run_mtal(fed, cfg_of(rounds=1))
    assert sorted(seen) == sorted((h.name, b) for h in fed.orgs for b in LOCAL_BACKBONES)
    assert {o.name: o.backbone for o in run.orgs} == planted
    assert [type(o.model) for o in run.orgs] == [MF, MLP, AAE]
    for o in run.orgs:
        assert o.backbone_choice.valid[planted[o.name]] == 0.0 and o.backbone_choice.epochs == dict.fromkeys(LOCAL_BACKBONES, 2)


def test_ties_go_to_the_earlier_candidate(fed, monkeypatch):
    monkeypatch.setattr(baselines, "fit_block", lambda block, *a: baselines.BlockFit(block.valid.y + 0.3, np.zeros(0), 1))
    choice = baselines.choose_backbone(fed.orgs[0], "explicit", ("mlp", "aae", "ncf"), baselines.BaselineConfig(), None)
    assert choice.chosen == "ncf" and list(choice.valid) == ["ncf", "mlp", "aae"]


@pytest.fixture(scope="module")
def auto_runs(fed):
    return run_mtal(fed, cfg_of()), run_mtal(fed, cfg_of())


def test_real_choice_is_the_best_alone_fit_on_own_validation_and_a_rerun_is_identical(fed, auto_runs):
    first, again = auto_runs
    fits = baselines.BaselineConfig(epochs=3, batch_size=256, seed=0, ae=cfg_of().model)  # the AAE's 3 epochs too
    alone = {b: baselines.run_baseline(fed, "alone", "ae" if b == "aae" else b, fits)["valid"] for b in LOCAL_BACKBONES}
    for o in first.orgs:
        scores = o.backbone_choice.valid
        assert o.backbone == min(scores, key=scores.get)
        for b in LOCAL_BACKBONES:  # the candidates are the organization's Alone fits, scored on its validation entries
            assert scores[b] == pytest.approx(alone[b][o.name]["RMSE"], rel=1e-6)
        assert o.history[1]["valid"]["RMSE"] < o.history[0]["valid"]["RMSE"]  # the chosen model learns the residuals
    for a, b in zip(first.orgs, again.orgs):
        assert a.backbone_choice == b.backbone_choice
        for ha, hb in zip(a.history, b.history):
            np.testing.assert_array_equal(ha["f_test"], hb["f_test"])


def test_test_entries_play_no_part_in_the_choice(fed, auto_runs):
    """Another test set (ratings shuffled) leaves every organization's choice and validation scores unchanged."""
    rng = np.random.default_rng(0)
    shuffled = dataclasses.replace(fed, orgs=[dataclasses.replace(h, test=dataclasses.replace(h.test, y=rng.permutation(h.test.y)))
                                              for h in fed.orgs])
    orgs = [Organization(h, [g.name for g in fed.orgs], cfg_of()) for h in shuffled.orgs]
    for o, ref in zip(orgs, auto_runs[0].orgs):
        assert o._choose_backbone() == ref.backbone_choice


def test_a_fixed_pair_backbone_fits_every_organization_and_the_prediction_stage_replays_it(fed):
    transport = InProcessTransport()
    run = run_mtal(fed, cfg_of(backbone="mf", keep_models=True), transport=transport)
    assert all(isinstance(o.model, MF) and list(o.backbone_choice.valid) == ["mf"] for o in run.orgs)
    out = replay(run.orgs, transport, {o.name: (o.h.test.rows, o.h.test.cols) for o in run.orgs})
    for o in run.orgs:
        np.testing.assert_allclose(out[o.name], o.history[-1]["f_test"], rtol=1e-5, atol=1e-6)


SYNTH = {"n_users": 120, "n_domains": 3, "items_per_domain": 30, "min_activity": 6, "max_activity": 20}


def run_cfg(model: str = "aae", **setting):
    sets = [f"model={model}", "data.name=synthetic", "data.synthetic=" + json.dumps(SYNTH), "train.progress=false", "train.epochs=2",
            "train.device=cpu", *(["model_params.epochs=2"] if model == "aae" else [])]
    setting = {"mode": "mtal", "rounds": 1, **setting} if model == "aae" else setting
    return load_config(None, sets + [f"setting.{k}={json.dumps(v)}" for k, v in setting.items()])


@pytest.mark.parametrize("feedback", ["explicit", "implicit"])
def test_results_json_records_each_organizations_choice_and_scores(tmp_path, feedback):
    """Explicit feedback chooses the lowest validation RMSE, implicit the highest validation NDCG@10."""
    run_config(run_cfg(backbone="auto", feedback=feedback), tmp_path / "auto")
    saved = RunResult.read(tmp_path / "auto" / "results.json")
    assert saved.setting["backbone"] == "auto"
    choices = saved.data_stats["backbones"]
    assert set(choices) == {"D0", "D1", "D2"}
    best = min if feedback == "explicit" else max
    for rec in choices.values():
        assert rec["chosen"] in LOCAL_BACKBONES and list(rec["valid"]) == list(LOCAL_BACKBONES)
        assert rec["valid"][rec["chosen"]] == best(rec["valid"].values())
    run_config(run_cfg(feedback=feedback), tmp_path / "aae")  # the papers' AAE: no choice is made or recorded
    assert "backbones" not in RunResult.read(tmp_path / "aae" / "results.json").data_stats


@pytest.mark.parametrize("setting,message", [
    ({"backbone": "svd"}, "setting.backbone: expected one of aae, auto, mf, ncf, mlp, got 'svd'"),
    ({"backbone": "auto", "side_info": True}, "setting.backbone=auto: the pair-model local fits take no side information"),
    ({"backbone": "mf", "mode": "alone"}, "setting.backbone: only setting.mode=mtal uses it"),
])
def test_bad_backbone_settings_fail_in_one_line(tmp_path, setting, message):
    with pytest.raises(CdrecError) as err:
        run_config(run_cfg("assisted-mf" if setting.get("mode") == "alone" else "aae", **setting), tmp_path / "x")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert not (tmp_path / "x").exists()


def test_organization_refuses_an_unknown_backbone(fed):
    with pytest.raises(CdrecError, match="MTALConfig.backbone: expected one of"):
        Organization(fed.orgs[0], [h.name for h in fed.orgs], cfg_of(backbone="svd"))


def test_the_flower_deployment_refuses_another_backbone():
    from cdrec.federated.flower.orgdata import federation_from_config

    with pytest.raises(CdrecError, match=r"^setting.backbone=auto: the deployed federation \(Flower\) runs the AAE local model only"):
        federation_from_config(run_cfg(backbone="auto"))


def test_an_organization_that_chooses_the_aae_reuses_the_round_one_fit_of_an_aae_run(fed, monkeypatch):
    """Inside sharing_fits (``cdrec reproduce mtal``), the round-1 pseudo-targets do not depend on the backbones, so an
    organization whose choice is the AAE takes the round-1 parameters the ``mtal-aae`` run of its column trained."""
    from cdrec.federated.shared_fits import sharing_fits

    aae_org = fed.orgs[1].name
    monkeypatch.setattr(baselines, "fit_block", lambda block, backbone, *a: baselines.BlockFit(
        block.valid.y + (0.0 if (backbone == "ae") == np.array_equal(block.valid.items, fed.orgs[1].valid.items) else 0.5), np.zeros(0), 1))
    with sharing_fits() as store:
        run_mtal(fed, cfg_of(backbone="aae", rounds=1))
        auto = run_mtal(fed, cfg_of(rounds=1)).orgs
    assert {o.name: o.backbone for o in auto} == {h.name: "aae" if h.name == aae_org else "mf" for h in fed.orgs}
    assert store.hits == 1 and [o.reused_fits for o in auto] == [int(o.name == aae_org) for o in auto]
