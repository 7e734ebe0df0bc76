"""The ``mtal`` task: ``cdrec run`` for the assisted family (AAE + MTAL and its baselines).

The run's ``setting`` section says what to run (names as in ``results.json``):

* ``mode``: ``mtal`` (model ``aae``), ``joint``, ``alone`` or ``mtcdr`` (models ``assisted-base``,
  ``assisted-mf``, ``assisted-mlp``, ``assisted-ncf``, ``assisted-ae``);
* ``feedback``: ``explicit`` (RMSE) or ``implicit`` (rating >= 3.5 positive, NDCG@10 / MAP@10);
* ``alignment``: ``user`` or ``item``; ``partition``: label of the domain builder;
* ``side_info``, ``eta`` (number or ``optimize``), ``weights`` (``uniform`` / ``optimize``),
  ``privacy`` (``none`` / ``dp`` / ``ip``), ``privacy_alpha`` (DP: Laplace scale (b - a) / alpha),
  ``privacy_thresholds`` (IP: random thresholds per value, one bit each), ``align_ratio``, ``cold_start_ratio``,
  ``cold_start_org``, ``rounds``, ``assist_fit`` (``train``: w and an optimized eta fitted on training
  entries as in Eqs. 8-9; ``valid``: on the validation entries; ``valid-split``: on half of the validation
  users, the round selected on the other half), ``base`` (``mean``: the papers' F0 =
  per-item mean / popularity; ``zero``: F0 = 0, a diagnostic departure, see MTALConfig.base),
  ``backbone`` (the local model of every round: ``aae``, the papers'; ``mf`` / ``ncf`` / ``mlp``, the pair models of
  the Alone rows; ``auto``: each organization fits all four as its Alone rows (the autoencoder with the AAE's
  ``model_params``) on its own training entries and keeps the best on its own validation entries, see :func:`~cdrec.federated.baselines.choose_backbone`; the pair models
  use ``train.epochs`` (their Alone fits' cap), ``train.batch_size`` and ``train.lr``; ``results.json`` records each
  organization's choice under ``data_stats.backbones``), ``paper_eval_batch`` (implicit feedback: the batch of aligned ids the papers' code averages its
  MAP@10 / NDCG@10 over, 100 for ML-100K and 500 for ML-1M; it only sets the extra
  ``MAP@10[paper]`` / ``NDCG@10[paper]`` figures, never what is selected on), ``query_decoys`` (decoy keys per
  held-out key in each evaluation query, hiding from peers which keys are held out; metrics unchanged).

The split is the papers' random per-user ratio split (``split.ratios``, validation carved from the
90% training part); each organization selects its round on its validation entries.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cdrec.config import RunConfig, bounded, build_dataclass
from cdrec.data.datasets import load_dataset
from cdrec.data.interactions import Interactions
from cdrec.data.splits import ratio_split
from cdrec.errors import CdrecError, require
from cdrec.federated import shared_fits
from cdrec.federated.alignment import Entries, Federation, build_federation
from cdrec.federated.backbones import BACKBONE_SETTINGS
from cdrec.federated.baselines import BaselineConfig, federation_metrics, rating_clip, run_baseline
from cdrec.federated.mtal import run_mtal
from cdrec.federated.organization import MTALConfig, Organization, key_metrics
from cdrec.federated.privacy import MECHANISMS
from cdrec.results.schema import RunResult, peak_rss_mb
from cdrec.train.tasks import Task, register_task
from cdrec.train.trainer import resolve_device, seed_everything

SHORT = {"aae": "aae", "assisted-ae": "ae", "assisted-base": "base", "assisted-mf": "mf", "assisted-mlp": "mlp", "assisted-ncf": "ncf"}


PARTITIONS = ("uniform", "genre", "domain")
MTAL_ONLY = ("eta", "weights", "assist_fit", "privacy", "privacy_alpha", "privacy_thresholds", "rounds", "base", "align_ratio", "query_decoys",
             "backbone")
"""Settings of the assistance rounds (and partial alignment, which the pooled or separate baselines do not model)."""


@dataclass
class MTALSetting:
    mode: str = "mtal"
    feedback: str = "explicit"
    alignment: str = "user"
    partition: str | None = None  # None: read off data.domains
    side_info: bool = False
    eta: float | str = 0.3
    weights: str = "uniform"
    assist_fit: str = "train"
    privacy: str = "none"
    privacy_alpha: float = bounded(10.0, 0, lo_open=True)
    privacy_thresholds: int = bounded(10, 1)
    align_ratio: float = bounded(1.0, 0, 1)
    cold_start_ratio: float | None = bounded(None, 0, 1, lo_open=True, hi_open=True)
    cold_start_org: str | None = None
    rounds: int = bounded(10, 1)
    base: str = "mean"
    paper_eval_batch: int = bounded(100, 1)
    query_decoys: int = bounded(0, 0)
    backbone: str = "aae"


@dataclass
class MTALPrepared:
    data: Interactions
    fed: Federation
    setting: MTALSetting
    params: Any


def parse_setting(cfg: RunConfig) -> MTALSetting:
    s = build_dataclass(MTALSetting, dict(cfg.setting), where="setting")
    require(s.mode in ("mtal", "joint", "alone", "mtcdr"), f"setting.mode: expected mtal, joint, alone or mtcdr, got {s.mode!r}")
    require(s.weights in ("uniform", "optimize"), f"setting.weights: expected uniform or optimize, got {s.weights!r}")
    require(s.assist_fit in ("train", "valid", "valid-split"),
            f"setting.assist_fit: expected train, valid or valid-split, got {s.assist_fit!r}")
    require(s.privacy in MECHANISMS, f"setting.privacy: expected one of {MECHANISMS}, got {s.privacy!r}")
    require((isinstance(s.eta, float) and s.eta > 0) or s.eta == "optimize", f"setting.eta: expected a number > 0 or 'optimize', got {s.eta!r}")
    require(s.base in ("mean", "zero"), f"setting.base: expected mean or zero, got {s.base!r}")
    require(s.backbone in BACKBONE_SETTINGS, f"setting.backbone: expected one of {', '.join(BACKBONE_SETTINGS)}, got {s.backbone!r}")
    require(s.backbone == "aae" or not s.side_info, f"setting.backbone={s.backbone}: the pair-model local fits take no side "
            "information; leave setting.side_info false or use backbone aae")
    if s.partition is None:
        builder = (cfg.data.domains or "").partition(":")[0]
        s.partition = "uniform" if builder.startswith("uniform") else "genre" if builder.startswith("genre") else "domain"
    require(s.partition in PARTITIONS, f"setting.partition: expected one of {list(PARTITIONS)} (how data.domains made the organizations), got {s.partition!r}")
    defaults = MTALSetting()
    if s.mode != "mtal":  # settings of the assistance rounds that a baseline would silently ignore
        unused = [k for k in MTAL_ONLY if getattr(s, k) != getattr(defaults, k)]
        if unused:
            raise CdrecError(f"setting.{unused[0]}: only setting.mode=mtal uses it; the {s.mode} baseline would ignore it")
    require(s.privacy == "dp" or s.privacy_alpha == defaults.privacy_alpha, f"setting.privacy_alpha: the Laplace scale of setting.privacy=dp; got privacy {s.privacy!r}")
    require(s.privacy == "ip" or s.privacy_thresholds == defaults.privacy_thresholds,
            f"setting.privacy_thresholds: the thresholds per value of setting.privacy=ip; got privacy {s.privacy!r}")
    require(s.cold_start_org is None or s.cold_start_ratio is not None, "setting.cold_start_org: names the cold organization of setting.cold_start_ratio, which is not set")
    if s.mode == "mtal":
        require(cfg.model == "aae", f"setting.mode=mtal needs model aae, got {cfg.model!r}")
    else:
        require(cfg.model != "aae", f"setting.mode={s.mode}: model aae runs with setting.mode=mtal; use assisted-ae for the Joint/Alone autoencoder")
    return s


def mtal_config_of(s: MTALSetting, params: Any, cfg: RunConfig, device: str) -> MTALConfig:
    """The :class:`MTALConfig` of setting ``s`` (mode ``mtal``) with the AAE's ``params``; the pair backbones train by
    ``cfg.train``'s epochs, batch size and learning rate, as the Alone rows do."""
    return MTALConfig(rounds=s.rounds, eta=s.eta, optimize_w=s.weights == "optimize", assist_fit=s.assist_fit, privacy=s.privacy,
                      privacy_alpha=s.privacy_alpha, ip_thresholds=s.privacy_thresholds, feedback=s.feedback, model=dataclasses.replace(params, side_info=s.side_info),
                      base=s.base, query_decoys=s.query_decoys, backbone=s.backbone, pair_epochs=cfg.train.epochs,
                      pair_batch_size=cfg.train.batch_size, pair_lr=cfg.train.lr, seed=cfg.seed, device=device)


def check_split_and_metric(cfg: RunConfig) -> None:
    """The mtal task's split, scope and selection are its own: a per-user ratio split, and the validation
    metric of the feedback (``train.metric: auto``); any other value is refused, not ignored, as are
    ``eval.test=false`` and ``train.logger`` (it evaluates during its rounds, outside the Trainer)."""
    require(cfg.split.protocol == "ratio", f"split.protocol: the mtal task splits each user's entries by ratio (the papers' 90/10), got {cfg.split.protocol!r}")
    require(not cfg.split.full_ranking, "split.full_ranking: the mtal task ranks each user's held-out rated items; leave it false")
    require(cfg.scope == "joint", f"scope: the mtal task does not take scope={cfg.scope!r}; setting.mode (alone, joint, mtcdr, mtal) says what each model sees")
    require(cfg.train.metric == "auto", "train.metric: the mtal task selects on validation by feedback (rounds: RMSE or NDCG@10; "
            f"baseline epochs: the overarching loss); leave it at auto, got {cfg.train.metric!r}")
    require(cfg.eval.test, "eval.test: the mtal task scores the test entries during its rounds and keeps no model to score "
            "them later, so it cannot skip them (nor can `cdrec tune` select its settings); leave eval.test at true")
    require(cfg.train.logger == "none", "train.logger: the mtal task trains by assistance rounds outside the Trainer and logs no "
            f"epochs; leave it at none, got {cfg.train.logger!r}")


def federation_for(data: Interactions, cfg: RunConfig, s: MTALSetting) -> Federation:
    require(len(cfg.split.ratios) == 3, f"split.ratios: MTAL needs train/valid/test ratios, got {cfg.split.ratios}")
    split = ratio_split(data, cfg.split.ratios, by_user=True, seed=cfg.seed)
    return build_federation(
        data, split, alignment=s.alignment, feedback=s.feedback, side_info=s.side_info, align_ratio=s.align_ratio,
        cold_start_ratio=s.cold_start_ratio, cold_start_org=s.cold_start_org if s.cold_start_org is not None else 0, seed=cfg.seed,
    )


def overall_curve(
    orgs: list[Organization], feedback: str, clip: tuple[float, float] | None, paper_batch: int | None = None
) -> list[dict]:
    """Per-round test metrics pooled over organizations (the papers' Figures 4-5; ``paper_batch``: see
    :func:`~cdrec.federated.organization.key_metrics`)."""
    curve = []
    test = Entries.concat([o.h.test for o in orgs])
    for t in range(len(orgs[0].history)):
        ft = np.concatenate([o.history[t]["f_test"] for o in orgs])
        curve.append({"round": t, "test": key_metrics(feedback, test, ft, clip, paper_batch),
                      "valid_by_org": {o.name: o.history[t]["valid"] for o in orgs},
                      "eta": {o.name: o.history[t]["eta"] for o in orgs}, "w": {o.name: o.history[t]["w"] for o in orgs}})
    return curve


@register_task("mtal")
class MTALTask(Task):
    def prepare(self, cfg: RunConfig) -> MTALPrepared:
        s = parse_setting(cfg)
        check_split_and_metric(cfg)
        data = load_dataset(dataclasses.replace(cfg.data, min_rating=None), seed=cfg.seed)
        fed = federation_for(data, cfg, s)
        from cdrec.models import registry

        params = registry.build_params(cfg.model, cfg.model_params)
        return MTALPrepared(data, fed, s, params)

    def execute(self, prepared: MTALPrepared, cfg: RunConfig, run_dir: Path, *, resume: bool = False) -> RunResult:
        seed_everything(cfg.seed)
        s, fed = prepared.setting, prepared.fed
        device = str(resolve_device(cfg.train.device))
        t0 = time.perf_counter()
        history: list[dict] = []
        reused: dict[str, int] = {}
        if s.mode == "mtal":
            run = run_mtal(fed, mtal_config_of(s, prepared.params, cfg, device), progress=cfg.train.progress)
            best = [o.best_round() for o in run.orgs]
            test = federation_metrics(fed, "test", [o.test_scores() for o in run.orgs], s.paper_eval_batch)
            valid = {o.name: o.history[b]["valid"] for o, b in zip(run.orgs, best)}
            history = overall_curve(run.orgs, s.feedback, rating_clip(fed), s.paper_eval_batch)
            for o, b in zip(run.orgs, best):
                test[o.name]["best_round"] = b
            messages = {"messages": run.transport.n_sent, "values": run.transport.n_values, "payload_bytes": dict(run.transport.payload_bytes)}
            if shared_fits.active() is not None:  # inside `cdrec reproduce mtal`: local fits taken from an equal earlier fit
                reused = {"reused_fits": sum(o.reused_fits for o in run.orgs)}
            if s.backbone != "aae":  # each organization's local model and the validation scores it chose by
                messages["backbones"] = {o.name: o.backbone_choice.record() for o in run.orgs}
        else:
            bcfg = BaselineConfig(epochs=cfg.train.epochs, batch_size=cfg.train.batch_size, lr=cfg.train.lr,
                                  seed=cfg.seed, device=device,
                                  ae=dataclasses.replace(prepared.params, side_info=s.side_info) if cfg.model == "assisted-ae" else None)
            out = run_baseline(fed, s.mode, SHORT[cfg.model], bcfg, s.paper_eval_batch)
            test, valid = out["test"], out["valid"]
            messages = {}
        setting = {**dataclasses.asdict(s), **cfg.setting}
        setting["eta"] = s.eta
        setting["cold_start_org"] = fed.meta.get("cold_start_org")  # the organization made cold (the first by default)
        return RunResult(
            model=SHORT[cfg.model], dataset=prepared.data.name, protocol="ratio-by-user-" + "-".join(f"{r:g}" for r in cfg.split.ratios),
            seed=cfg.seed, metrics=test, setting=setting, valid_metrics=valid, config=cfg.to_dict(),
            data_stats={"organizations": {o.name: {"n_cols": o.n_cols, "train": len(o.train), "valid": len(o.valid), "test": len(o.test)} for o in fed.orgs}, **messages},
            timing={"train_s": round(time.perf_counter() - t0, 3), "peak_rss_mb": peak_rss_mb(), **reused}, history=history,
        )

    saves_model = False

    def restore(self, cfg: RunConfig, run_dir: Path) -> Any:
        raise CdrecError(f"{run_dir}: an MTAL run keeps no model.pt (each organization keeps its own model) and is evaluated "
                         "during the run: its metrics are in results.json; re-run with `cdrec run` to evaluate again")

    def evaluate_saved(self, cfg: RunConfig, run_dir: Path, part: str) -> RunResult:
        return self.restore(cfg, run_dir)

    def predictor(self, cfg: RunConfig, run_dir: Path) -> Any:
        return self.restore(cfg, run_dir)
