"""Tasks turn a :class:`RunConfig` into a trained and evaluated run.

Every model names its task (``RankingModel.task == "ranking"``); a family whose training is not a
plain mini-batch loop (MTAL's assistance rounds, CTR's bi-level steps) registers its own task here.
A task is split in two so that user mistakes surface before anything is written:

* ``prepare(cfg)`` loads and checks data, split and model params (no output);
* ``execute(prepared, run_dir, resume)`` trains, evaluates and returns a :class:`RunResult`
  (the caller writes it);
* ``restore(cfg, run_dir)`` rebuilds the prepared state and the trained model(s) for
  ``cdrec evaluate`` and ``cdrec.load``.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from cdrec.config import RunConfig
from cdrec.data.candidates import add_sampled_candidates
from cdrec.data.datasets import load_dataset
from cdrec.data.interactions import Interactions
from cdrec.data.samplers import BPRSampler
from cdrec.data.splits import Split, leave_one_out, ratio_split
from cdrec.errors import CdrecError, require
from cdrec.evaluate import Evaluation, FullScorer, Scorer, evaluate_full, evaluate_sampled, report
from cdrec.models import registry
from cdrec.models.base import RankingModel
from cdrec.results.schema import RunResult, peak_rss_mb, require_model_file
from cdrec.train import distributed as dist_
from cdrec.train.trainer import Trainer, atomic_torch_save, resolve_device, seed_everything

CF_EVAL_BATCH = 4096  # users per evaluation batch when eval.batch_size is unset
TASKS: dict[str, "Task"] = {}
TASK_MODULES: dict[str, str] = {
    "ranking": "cdrec.train.tasks",
    "sequential": "cdrec.train.sequential",
    "ctr": "cdrec.train.ctr",
    "mtal": "cdrec.federated.task",
}
"""Task name -> module that registers it (imported on first use)."""


def register_task(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        TASKS[name] = cls()
        return cls

    return wrap


def task_for(model: str) -> "Task":
    entry = registry.get(model)
    name = getattr(entry.cls, "task", "ranking")
    if name not in TASKS and name in TASK_MODULES:
        importlib.import_module(TASK_MODULES[name])
    if name not in TASKS:
        raise CdrecError(f"model {model!r} needs task {name!r}, which is not available")
    return TASKS[name]


class Task:
    saves_model = True
    """Whether a finished run holds ``model.pt`` (MTAL's organizations keep their models)."""

    def prepare(self, cfg: RunConfig) -> Any:
        raise TypeError(f"{type(self).__name__} must implement prepare")

    def execute(self, prepared: Any, cfg: RunConfig, run_dir: Path, *, resume: bool = False) -> RunResult:
        raise TypeError(f"{type(self).__name__} must implement execute")

    def restore(self, cfg: RunConfig, run_dir: Path) -> Any:
        raise TypeError(f"{type(self).__name__} must implement restore")

    def evaluate_saved(self, cfg: RunConfig, run_dir: Path, part: str) -> RunResult:
        """Evaluate a finished run's saved model on ``part`` (for ``cdrec evaluate``)."""
        raise TypeError(f"{type(self).__name__} must implement evaluate_saved")

    def predictor(self, cfg: RunConfig, run_dir: Path) -> Any:
        """A :class:`cdrec.predict.Predictor` answering from the run's saved model(s) (``cdrec.load``)."""
        raise CdrecError(f"model {cfg.model!r}: its task {type(self).__name__} cannot load runs for predictions yet")


def save_trained(run_dir: Path, states: dict[str, dict], checkpoints: Sequence[str]) -> None:
    """Write ``model.pt`` (one state dict per scope) and drop the scopes' checkpoints and those of
    multi-stage models' finished stages (every ``checkpoint-*.pt``), on rank 0 only (under
    ``torchrun`` the other ranks wait). Shared by every task's ``execute``."""
    if dist_.is_main():
        atomic_torch_save(states, run_dir / "model.pt")
        for path in {*(run_dir / f"checkpoint-{scope}.pt" for scope in checkpoints), *run_dir.glob("checkpoint-*.pt")}:
            path.unlink(missing_ok=True)
    dist_.barrier()


def check_same_data(run_dir: Path, data: Interactions) -> None:
    """Refuse a run whose data has changed since training: the saved model would be scored on other
    rows (or not fit at all). Runs saved before fingerprints were recorded are not checked."""
    try:
        saved = json.loads((run_dir / "results.json").read_text()).get("data_stats", {}).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return
    require(
        saved is None or saved == data.fingerprint(),
        f"{run_dir}: the data {data.name!r} as loaded now differs from the data this run was trained on "
        f"(a changed file or data options); restore that data or train a new run",
    )


def load_saved_models(run_dir: Path, device: torch.device, builders: dict[str, Callable[[], torch.nn.Module]], data: Interactions) -> dict[str, torch.nn.Module]:
    """Load ``model.pt`` (one state dict per scope) into freshly built models, in eval mode, after
    checking that ``data`` is the data the run was trained on (:func:`check_same_data`).

    ``builders`` maps each scope name to a function building its (untrained) model; scopes absent
    from the file (no test rows at training time) are skipped. Shared by every task's ``restore``."""
    check_same_data(run_dir, data)
    path = run_dir / "model.pt"
    try:
        states = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # truncated or foreign file: torch raises several types
        raise CdrecError(f"{path}: cannot read the saved model ({type(exc).__name__}); rerun the training") from None
    require(isinstance(states, dict), f"{path}: not a cdrec model file")
    models = {}
    for scope, build in builders.items():
        if scope in states:
            model = build().to(device)
            try:
                model.load_state_dict(states[scope])
            except RuntimeError:  # shapes that do not match the data as loaded now
                raise CdrecError(f"{path}: the saved model does not fit the data as loaded now (its sizes differ); restore the data the run used or train a new run") from None
            model.eval()
            models[scope] = model
    return models


def make_split(data: Interactions, cfg: RunConfig) -> Split:
    """Split per ``cfg.split`` and, unless ``full_ranking``, fix the sampled candidates by the seed
    (every held-out row of either protocol ranks its positive among ``n_negatives`` sampled items)."""
    sc = cfg.split
    if sc.protocol == "ratio":
        split = ratio_split(data, sc.ratios, order=sc.order, seed=cfg.seed)
        require(len(split.test_rows) > 0, f"{data.name}: split.ratios {list(sc.ratios)} leave no test rows")
    else:
        split = leave_one_out(data, mixed=sc.protocol == "loo-mixed", seed=cfg.seed)
        require(len(split.test_rows) > 0, f"{data.name}: no user has 2 interactions in a domain, so leave-one-out gives no test rows")
    if not sc.full_ranking:
        add_sampled_candidates(split, sc.n_negatives, seed=cfg.seed)
    return split


def protocol_name(cfg: RunConfig, *, ranked: bool = True) -> str:
    """``loo/1+99``, ``loo-mixed/full``, ``ratio-0.8-0.1-0.1/1+99``; ``ranked=False`` (CTR, no
    candidates): the split alone."""
    sc = cfg.split
    candidates = "full" if sc.full_ranking else f"1+{sc.n_negatives}"
    if sc.protocol == "ratio":
        ratios = f"ratio-{'-'.join(f'{r:g}' for r in sc.ratios)}"
        return f"{ratios}/{candidates}" if ranked else ratios
    return f"{sc.protocol}/{candidates}"


def require_task_options(cfg: RunConfig, task: str, *, scope: str | None = None, metrics: Sequence[str] | None = None) -> None:
    """Refuse options this task would ignore: ``setting`` keys (MTAL's), ``scope: single`` where the task
    or model fixes the scope (``scope`` says what does), and a ``train.metric`` the task never computes."""
    require(not cfg.setting, f"setting: the {task} task takes no setting keys (they configure MTAL runs); got {sorted(cfg.setting)}")
    require(scope is None or cfg.scope == "joint", f"scope: the {task} task does not take scope={cfg.scope!r}; {scope}")
    if metrics is not None:
        require(cfg.train.metric in metrics, f"train.metric: {cfg.train.metric!r} is not among the metrics computed with eval.ks {list(cfg.eval.ks)}; expected one of {list(metrics)}")


def merged_or_none(split: Split, parts: list[Evaluation], bucket_edges: Sequence[int]) -> Evaluation | None:
    """:func:`merge_evaluations` of the scopes' evaluations of one part; None when the part was not
    evaluated (no validation rows, or the test split under ``eval.test=false``)."""
    return merge_evaluations(split, parts, bucket_edges) if parts else None


def ranking_metrics(cfg: RunConfig) -> list[str]:
    """The validation metrics a ranking evaluation computes with ``eval.ks``."""
    return [f"{m}@{k}" for k in cfg.eval.ks for m in ("HR", "NDCG", "MRR")] + ["MRR"]


def merge_evaluations(split: Split, parts: list[Evaluation], bucket_edges: Sequence[int]) -> Evaluation:
    """Combine per-domain evaluations (single-domain models) into one report."""
    if len(parts) == 1:
        return parts[0]
    rows = np.concatenate([p.rows for p in parts])
    per_row = {m: np.concatenate([p.per_row[m] for p in parts]) for m in parts[0].per_row}
    order = np.argsort(rows, kind="stable")
    return report(split, rows[order], {m: v[order] for m, v in per_row.items()}, bucket_edges)


def fit_in_one_pass(model: RankingModel, split: Split, scope: str, device: torch.device) -> tuple[float, dict]:
    """Fit a model with nothing to optimise (``optimised = False``: ``pop``, ``itemknn``) on ``split``'s
    training interactions: no epochs, no optimizer, no checkpoint. Returns the seconds it took and the
    scope's ``history`` entry, ``{"scope", "fit": "one-pass", "best_epoch": 0, "epochs": []}``."""
    t0 = time.perf_counter()
    model.to(device).fit_interactions(split)
    model.eval()
    return round(time.perf_counter() - t0, 3), {"scope": scope, "fit": "one-pass", "best_epoch": 0, "epochs": []}


@dataclass
class RankingPrepared:
    data: Interactions
    split: Split
    params: Any
    device: torch.device
    scopes: list[tuple[str, Split]] = field(default_factory=list)
    evaluated: dict[str, Any] = field(default_factory=dict)
    """What a two-domain model's ``setting`` records (``source``, ``target``, the ``evaluated`` domains)."""


def ranking_scopes(cfg: RunConfig, split: Split, params: Any) -> tuple[list[tuple[str, Split]], dict[str, Any]]:
    """The scopes a ranking run trains and evaluates (one per domain for ``scope=single``, else the
    model class's :meth:`~cdrec.models.base.RankingModel.evaluation_split` of the joint split: a
    single-target model's target alone) and what its ``setting`` records about them."""
    if cfg.scope == "single":
        return [(name, split.restrict(d)) for d, name in enumerate(split.data.domains)], {}
    joint, evaluated = registry.get(cfg.model).cls.evaluation_split(split, params)
    return [("joint", joint)], evaluated


def training_sampler(model: RankingModel, split: Split, cfg: RunConfig) -> BPRSampler:
    """The BPR sampler of ``split``'s training rows, drawing the model's :attr:`~RankingModel.train_negatives`
    negatives per positive."""
    return BPRSampler(split.train, cfg.train.batch_size, seed=cfg.seed, n_negatives=model.train_negatives)


@register_task("ranking")
class RankingTask(Task):
    """Leave-one-out ranking for collaborative-filtering models (joint or per-domain)."""

    def prepare(self, cfg: RunConfig) -> RankingPrepared:
        require_task_options(cfg, "ranking", metrics=ranking_metrics(cfg))
        params = registry.build_params(cfg.model, cfg.model_params)
        model_cls = registry.get(cfg.model).cls
        require(model_cls.optimised or cfg.train.logger == "none",
                f"train.logger: {cfg.model} is fitted in one pass with no epochs to log; use train.logger=none")
        selected = model_cls.select_data(cfg.data, params)
        try:
            data = load_dataset(selected, seed=cfg.seed)
        except CdrecError as exc:  # a domain the model's own options named (a two-domain pair) is theirs to fix
            if selected.keep_domains == cfg.data.keep_domains:
                raise
            raise CdrecError(f"model_params.source / model_params.target (applied as {exc})") from None
        data.require_items_owned("ranking models")
        split = make_split(data, cfg)
        device = resolve_device(cfg.train.device)
        scopes, evaluated = ranking_scopes(cfg, split, params)
        return RankingPrepared(data, split, params, device, scopes, evaluated)

    @staticmethod
    def scorers(model: RankingModel, data: Interactions, device: torch.device) -> tuple[Scorer, FullScorer]:
        """Wrap a torch model as the evaluator's numpy scorers (sampled and full ranking)."""
        def scorer(users: np.ndarray, items: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                u = torch.as_tensor(users, device=device)
                i = torch.as_tensor(items, device=device)
                return model.score(u, i).float().cpu().numpy()

        def full(users: np.ndarray, domain: int) -> np.ndarray:
            start, stop = data.domain_item_range(domain)
            with torch.no_grad():
                return model.score_all(torch.as_tensor(users, device=device), start, stop).float().cpu().numpy()

        return scorer, full

    def evaluate(self, model: RankingModel, split: Split, part: str, cfg: RunConfig, device: torch.device) -> Evaluation:
        scorer, full = self.scorers(model, split.data, device)
        kw = dict(ks=cfg.eval.ks, bucket_edges=cfg.eval.buckets)
        if cfg.split.full_ranking:
            return evaluate_full(full, split, part, **kw)
        return evaluate_sampled(scorer, split, part, batch_size=cfg.eval.batch_size or CF_EVAL_BATCH, scorer_device=device, **kw)

    def build_model(self, cfg: RunConfig, split: Split, params: Any) -> RankingModel:
        return registry.get(cfg.model).cls.from_split(split, params)

    def train(self, model: RankingModel, split: Split, scope: str, cfg: RunConfig, device: torch.device, run_dir: Path, *, resume: bool = False) -> tuple[float, dict]:
        """Train ``model`` with the Trainer (early stopping on validation); returns the training
        seconds and the scope's ``history`` entry."""
        sampler = training_sampler(model, split, cfg)
        trainer = Trainer(
            model, cfg.train, seed=cfg.seed, device=device,
            checkpoint=run_dir / f"checkpoint-{scope}.pt", desc=f"{cfg.model}:{scope}",
        )

        def validate_on(s: Split, m: RankingModel = model) -> dict[str, float]:
            return self.evaluate(m, s, "valid", cfg, device).metrics["overall"]

        validate = (lambda s=split: validate_on(s)) if len(split.valid_rows) > 0 else (lambda: {})
        if hasattr(model, "fit"):  # a staged model validates sub-splits (UCLR's per-domain finetune) the same way
            fit = model.fit(trainer, sampler, validate, resume=resume, validate_split=validate_on)
        else:
            fit = trainer.fit(sampler.epoch, validate, n_batches=len(sampler), resume=resume)
        return fit.train_s, fit.history_entry(scope)

    def execute(self, prepared: RankingPrepared, cfg: RunConfig, run_dir: Path, *, resume: bool = False) -> RunResult:
        seed_everything(cfg.seed)
        train_s = eval_s = 0.0
        tests, valids, history, states = [], [], [], {}
        for scope, split in prepared.scopes:
            if len(split.test_rows) == 0:
                continue
            seed_everything(cfg.seed)
            model = self.build_model(cfg, split, prepared.params)
            has_valid = len(split.valid_rows) > 0
            if model.optimised:
                fit_s, entry = self.train(model, split, scope, cfg, prepared.device, run_dir, resume=resume)
            else:
                fit_s, entry = fit_in_one_pass(model, split, scope, prepared.device)
            train_s += fit_s
            t0 = time.perf_counter()
            # under torchrun rank 0 evaluates and every rank receives the same metrics
            if cfg.eval.test:
                tests.append(dist_.on_main(lambda m=model, s=split: self.evaluate(m, s, "test", cfg, prepared.device)))
            if has_valid:
                valids.append(dist_.on_main(lambda m=model, s=split: self.evaluate(m, s, "valid", cfg, prepared.device)))
            eval_s += time.perf_counter() - t0
            history.append(entry)
            states[scope] = model.state_dict()
        require(len(states) > 0, f"{prepared.data.name}: no domain has test rows")
        save_trained(run_dir, states, [scope for scope, _ in prepared.scopes])
        test = merged_or_none(prepared.split, tests, cfg.eval.buckets)
        valid = merged_or_none(prepared.split, valids, cfg.eval.buckets)
        setting = {"scope": cfg.scope, **prepared.evaluated}
        return RunResult(
            model=cfg.model,
            dataset=prepared.data.name,
            protocol=protocol_name(cfg),
            seed=cfg.seed,
            metrics=test.metrics if test else {},
            buckets=test.buckets if test else {},
            setting=setting,
            valid_metrics=valid.metrics if valid else {},
            config=cfg.to_dict(),
            data_stats=prepared.data.stats(),
            timing={"train_s": round(train_s, 3), "eval_s": round(eval_s, 3), "peak_rss_mb": peak_rss_mb()},
            history=history,
        )

    def restore(self, cfg: RunConfig, run_dir: Path) -> tuple[RankingPrepared, dict[str, Any]]:
        prepared = self.prepare(cfg)
        builders = {scope: (lambda s=split: self.build_model(cfg, s, prepared.params)) for scope, split in prepared.scopes}
        return prepared, load_saved_models(run_dir, prepared.device, builders, prepared.data)

    def predictor(self, cfg: RunConfig, run_dir: Path) -> Any:
        from cdrec.predict import RankingPredictor

        require_model_file(run_dir)
        prepared, models = self.restore(cfg, run_dir)
        return RankingPredictor(model=cfg.model, scope=cfg.scope, split=prepared.split, models=models, device=prepared.device)

    def evaluate_saved(self, cfg: RunConfig, run_dir: Path, part: str) -> RunResult:
        prepared, models = self.restore(cfg, run_dir)
        parts = [self.evaluate(models[scope], split, part, cfg, prepared.device) for scope, split in prepared.scopes if scope in models]
        ev = merge_evaluations(prepared.split, parts, cfg.eval.buckets)
        return RunResult(
            model=cfg.model, dataset=prepared.data.name, protocol=protocol_name(cfg), seed=cfg.seed,
            metrics=ev.metrics, buckets=ev.buckets, setting={"scope": cfg.scope, **prepared.evaluated, "part": part},
            config=cfg.to_dict(), data_stats=prepared.data.stats(),
        )
