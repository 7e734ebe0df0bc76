"""The ``ctr`` task: multi-domain multi-task CTR prediction (M3oE and its baselines).

* data: any dataset through :func:`~cdrec.data.datasets.load_dataset`, turned into the CTR view
  (:mod:`cdrec.data.ctr`), split by rows 8:1:1 (``split.protocol: ratio``);
* modes (M3oE Table 2): ``single`` trains one model per (domain, task), ``mtl`` one multi-task model
  per domain, ``mdl`` one multi-domain model per task, ``mdmt`` one model for all; the predictions
  of the scopes are merged before evaluation, so every mode is scored on the same test rows;
* loss: BCE summed over the (domain, task) heads; early stopping on the mean validation AUC;
* models with a bi-level step (M3oE) get an endless stream of held-out (validation) batches;
* metrics per domain: ``AUC[task]``, ``LogLoss[task]`` and ``n``; ``overall`` holds the means over
  domains per task plus ``AUC`` / ``LogLoss``, the means over all (domain, task) heads.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from cdrec.config import RunConfig
from cdrec.data.ctr import CTRView, build_ctr_view, iterate_batches, n_batches
from cdrec.data.datasets import load_dataset
from cdrec.data.interactions import Interactions
from cdrec.data.splits import Split, ratio_split
from cdrec.errors import require
from cdrec.metrics import auc, log_loss
from cdrec.metrics.ranking import mean_over_ranked
from cdrec.models import registry
from cdrec.models.ctr.layers import CTRModel, CTRSchema
from cdrec.results.schema import RunResult, peak_rss_mb, require_model_file
from cdrec.train import distributed as dist_
from cdrec.train.tasks import Task, load_saved_models, protocol_name, register_task, require_task_options, save_trained
from cdrec.train.trainer import Trainer, resolve_device, seed_everything, to_device

TASKS = ("click", "like")
"""The tasks of data without label columns: click = rating > 3, like = rating > 4 (M3oE section 3.1)."""


STOP_METRICS = {"AUC": False, "LogLoss": True}
"""Early-stopping metrics of the ctr task (means over the heads) and whether lower is better."""


def tasks_of(data: Interactions) -> tuple[str, ...]:
    """One task per binary label column the data carries (``mdmt-*`` samples, a ``table`` file's
    ``labels`` role); :data:`TASKS` from the ratings otherwise."""
    return tuple(data.label_columns) or TASKS


@dataclass
class Scope:
    """One trained model: the rows' domain (None = all) and the task column (None = all)."""

    name: str
    domain: int | None
    task: int | None


@dataclass
class CTRPrepared:
    data: Interactions
    view: CTRView
    split: Split
    params: Any
    device: torch.device
    scopes: list[Scope] = field(default_factory=list)


def scopes_for(mode: str, view: CTRView) -> list[Scope]:
    D, T = range(view.n_domains), range(view.n_tasks)
    if mode == "single":
        return [Scope(f"{view.domains[d]}/{view.tasks[t]}", d, t) for d in D for t in T]
    if mode == "mtl":
        return [Scope(view.domains[d], d, None) for d in D]
    if mode == "mdl":
        return [Scope(view.tasks[t], None, t) for t in T]
    return [Scope("all", None, None)]


def ctr_metrics(view: CTRView, rows: np.ndarray, probs: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-(domain, task) AUC and log-loss of ``probs[len(rows), T]`` plus their means."""
    out: dict[str, dict[str, float]] = {}
    dom = view.domain[rows]
    labels = view.labels[rows]
    heads_auc, heads_ll = [], []
    for d, name in enumerate(view.domains):
        mask = dom == d
        if not mask.any():
            continue
        vals: dict[str, float] = {}
        for t, task in enumerate(view.tasks):
            vals[f"AUC[{task}]"] = auc(labels[mask, t], probs[mask, t])
            vals[f"LogLoss[{task}]"] = log_loss(labels[mask, t], probs[mask, t])
            heads_auc.append(vals[f"AUC[{task}]"])
            heads_ll.append(vals[f"LogLoss[{task}]"])
        vals["n"] = int(mask.sum())
        out[name] = vals
    overall: dict[str, float] = {}
    for task in view.tasks:
        overall[f"AUC[{task}]"] = mean_over_ranked(np.asarray([v[f"AUC[{task}]"] for v in out.values()], dtype=float))
        overall[f"LogLoss[{task}]"] = float(np.mean([v[f"LogLoss[{task}]"] for v in out.values()]))
    overall["AUC"] = mean_over_ranked(np.asarray(heads_auc, dtype=float))  # over the heads whose AUC is defined
    overall["LogLoss"] = float(np.mean(heads_ll))
    overall["n"] = int(len(rows))
    out["overall"] = overall
    return out


def _any_head_has_both_classes(view: CTRView, rows: np.ndarray) -> bool:
    """Whether some (domain, task) head has both a 0 and a 1 label among ``rows``."""
    dom, labels = view.domain[rows], view.labels[rows]
    positives = np.stack([np.bincount(dom, weights=labels[:, t], minlength=view.n_domains) for t in range(view.n_tasks)])
    totals = np.bincount(dom, minlength=view.n_domains)[None, :]
    return bool(((positives > 0) & (positives < totals)).any())


class HeldoutStream:
    """Endless seeded batches of held-out rows (the upper level of M3oE's bi-level step): pass ``e``
    over the rows is :func:`iterate_batches` at epoch ``e``. ``position`` (batches drawn so far) is its
    whole state, so a resumed run that restores it draws the batches an uninterrupted run would."""

    def __init__(self, data: dict[str, torch.Tensor], batch_size: int, seed: int, device: torch.device) -> None:
        self.data, self.batch_size, self.seed, self.device = data, batch_size, seed + 7919, device
        self.per_pass = n_batches(len(data["domain"]), batch_size)
        self.position = 0
        self._batches: Iterator[dict[str, torch.Tensor]] | None = None
        self._expected = -1  # the position the open pass continues at

    def __iter__(self) -> HeldoutStream:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        index, offset = divmod(self.position, self.per_pass)
        if self._batches is None or offset == 0 or self.position != self._expected:  # a new pass, or a restored position
            self._batches = itertools.islice(iterate_batches(self.data, self.batch_size, seed=self.seed, epoch=index), offset, None)
        self.position += 1
        self._expected = self.position
        return to_device(next(self._batches), self.device)


@register_task("ctr")
class CTRTask(Task):
    """Train CTR models in a Table-2 mode and evaluate AUC / log-loss per (domain, task)."""

    def prepare(self, cfg: RunConfig) -> CTRPrepared:
        params = registry.build_params(cfg.model, cfg.model_params)
        cls = registry.get(cfg.model).cls
        require(params.mode in cls.modes, f"model_params.mode: {cfg.model} runs in {list(cls.modes)}, got {params.mode!r}")
        require(cfg.split.protocol == "ratio", f"split.protocol: the ctr task splits rows by ratio (8:1:1), got {cfg.split.protocol!r}")
        require_task_options(cfg, "ctr", scope="model_params.mode picks what one model covers (single, mtl, mdl, mdmt)")
        require(not cfg.split.full_ranking, "split.full_ranking: the ctr task scores rows (AUC, LogLoss) and ranks no candidates; leave it false")
        require(cfg.train.metric in STOP_METRICS,
                f"train.metric: the ctr task early-stops on the mean validation AUC or LogLoss over the (domain, task) heads; expected one of {list(STOP_METRICS)}, got {cfg.train.metric!r}")
        data = load_dataset(cfg.data, seed=cfg.seed)
        require(data.item_offsets is None or data.n_domains >= 1, f"{data.name}: no domains")
        view = build_ctr_view(data, tasks_of(data))
        split = ratio_split(data, cfg.split.ratios, order=cfg.split.order, seed=cfg.seed)
        require(len(split.valid_rows) > 0, f"{data.name}: the ctr task needs validation rows for early stopping (split.ratios)")
        if cfg.train.metric == "AUC":
            require(_any_head_has_both_classes(view, split.valid_rows),
                    f"train.metric: AUC is undefined on {data.name}'s validation rows (no (domain, task) head has both labels); use train.metric=LogLoss")
        device = resolve_device(cfg.train.device)
        return CTRPrepared(data, view, split, params, device, scopes_for(params.mode, view))

    # ------------------------------------------------------------------ pieces
    @staticmethod
    def scope_rows(prepared: CTRPrepared, scope: Scope, part: str) -> np.ndarray:
        rows = prepared.split.rows(part)
        if scope.domain is not None:
            rows = rows[prepared.view.domain[rows] == scope.domain]
        return rows

    @staticmethod
    def scope_tensors(prepared: CTRPrepared, scope: Scope, rows: np.ndarray) -> dict[str, torch.Tensor]:
        return prepared.view.tensors(rows, domain_zero=scope.domain is not None, task=scope.task)

    def build_model(self, cfg: RunConfig, prepared: CTRPrepared, scope: Scope) -> CTRModel:
        view = prepared.view
        schema = CTRSchema(
            vocab_sizes=view.vocab_sizes,
            n_dense=view.dense.shape[1],
            n_domains=1 if scope.domain is not None else view.n_domains,
            n_tasks=1 if scope.task is not None else view.n_tasks,
        )
        return registry.get(cfg.model).cls.from_schema(schema, prepared.params)

    @staticmethod
    def predict(model: CTRModel, data: dict[str, torch.Tensor], device: torch.device, batch_size: int) -> np.ndarray:
        model.eval()
        out = []
        with torch.no_grad():
            for batch in iterate_batches(data, batch_size, seed=0, epoch=0, shuffle=False):
                out.append(model.predict(to_device(batch, device)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)

    def predict_part(self, models: dict[str, Any], prepared: CTRPrepared, part: str, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Merged probabilities ``[n_rows, T]`` of ``part`` from every scope's model."""
        rows = prepared.split.rows(part)
        return rows, self.predict_rows(models, prepared, rows, batch_size)

    def predict_rows(self, models: dict[str, Any], prepared: CTRPrepared, rows: np.ndarray, batch_size: int) -> np.ndarray:
        """Merged probabilities ``[len(rows), T]`` of ``prepared.view``'s ``rows`` (a split part, or
        the view of a serving request, :mod:`cdrec.predictors.ctr`) from every scope's model."""
        probs = np.full((len(rows), prepared.view.n_tasks), np.nan, dtype=np.float64)
        position = np.full(len(prepared.view), -1, dtype=np.int64)
        position[rows] = np.arange(len(rows))
        for scope in prepared.scopes:
            if scope.name not in models:
                continue
            srows = rows if scope.domain is None else rows[prepared.view.domain[rows] == scope.domain]
            pred = self.predict(models[scope.name], self.scope_tensors(prepared, scope, srows), prepared.device, batch_size)
            cols = slice(None) if scope.task is None else [scope.task]
            probs[position[srows][:, None], np.arange(prepared.view.n_tasks)[cols]] = pred
        require(not np.isnan(probs).any(), "ctr: some rows got no prediction (a scope failed to train)")
        return probs

    # ------------------------------------------------------------------ run
    def execute(self, prepared: CTRPrepared, cfg: RunConfig, run_dir: Path, *, resume: bool = False) -> RunResult:
        train_s = 0.0
        history, models, states = [], {}, {}
        bs = cfg.train.batch_size
        for scope in prepared.scopes:
            seed_everything(cfg.seed)
            model = self.build_model(cfg, prepared, scope)
            train_rows = self.scope_rows(prepared, scope, "train")
            valid_rows = self.scope_rows(prepared, scope, "valid")
            if len(train_rows) == 0:
                continue
            train = self.scope_tensors(prepared, scope, train_rows)
            valid = self.scope_tensors(prepared, scope, valid_rows)
            if hasattr(model, "heldout") and len(valid_rows) > 0:
                model.heldout = HeldoutStream(valid, bs, cfg.seed, prepared.device)
                model.steps_per_epoch = n_batches(len(train_rows), bs)
            sub_view = prepared.view if scope.task is None else _task_view(prepared.view, scope.task)
            sub_view = sub_view if scope.domain is None else _domain_view(sub_view, scope.domain)

            def validate(
                m: CTRModel = model, v: dict[str, torch.Tensor] = valid, rows: np.ndarray = valid_rows, sv: CTRView = sub_view
            ) -> dict[str, float]:
                probs = self.predict(m, v, prepared.device, max(bs, 8192))
                return ctr_metrics(sv, rows, probs)["overall"] if len(rows) else {}

            trainer = Trainer(
                model, cfg.train, seed=cfg.seed, device=prepared.device, metric=cfg.train.metric, minimize=STOP_METRICS[cfg.train.metric],
                checkpoint=run_dir / f"checkpoint-{_safe(scope.name)}.pt", desc=f"{cfg.model}:{scope.name}",
            )
            fit = trainer.fit(
                lambda epoch, data=train: iterate_batches(data, bs, seed=cfg.seed, epoch=epoch),
                validate, n_batches=n_batches(len(train_rows), bs), resume=resume,
            )
            if hasattr(model, "heldout"):
                model.heldout = None
            train_s += fit.train_s
            extra = {"fusion_weights": model.weights_report()} if hasattr(model, "weights_report") else {}
            history.append(fit.history_entry(scope.name, **extra))
            models[scope.name] = model
            states[scope.name] = model.state_dict()
        require(len(models) > 0, f"{prepared.data.name}: no scope has training rows")
        t0 = time.perf_counter()
        # under torchrun rank 0 evaluates and every rank receives the same metrics
        def part_metrics(part: str) -> dict[str, dict[str, float]]:
            return ctr_metrics(prepared.view, *self.predict_part(models, prepared, part, max(bs, 8192)))

        test = dist_.on_main(lambda: part_metrics("test")) if cfg.eval.test else {}
        valid = dist_.on_main(lambda: part_metrics("valid"))
        eval_s = time.perf_counter() - t0
        save_trained(run_dir, states, [_safe(scope.name) for scope in prepared.scopes])
        p = prepared.params
        setting = {"mode": p.mode, "ablation": getattr(p, "ablation", "none")}
        n_train = sum(len(self.scope_rows(prepared, s, "train")) for s in prepared.scopes)
        epochs = sum(len(h["epochs"]) for h in history)
        return RunResult(
            model=cfg.model,
            dataset=prepared.data.name,
            protocol=protocol_name(cfg, ranked=False),
            seed=cfg.seed,
            metrics=test,
            setting=setting,
            valid_metrics=valid,
            config=cfg.to_dict(),
            data_stats=prepared.data.stats(),
            timing={
                "train_s": round(train_s, 3), "eval_s": round(eval_s, 3), "peak_rss_mb": peak_rss_mb(),
                "train_samples_per_s": round(n_train * epochs / max(len(history), 1) / max(train_s, 1e-9), 1),
            },
            history=history,
        )

    def restore(self, cfg: RunConfig, run_dir: Path) -> tuple[CTRPrepared, dict[str, Any]]:
        prepared = self.prepare(cfg)
        builders = {sc.name: (lambda sc=sc: self.build_model(cfg, prepared, sc)) for sc in prepared.scopes}
        return prepared, load_saved_models(run_dir, prepared.device, builders, prepared.data)

    def predictor(self, cfg: RunConfig, run_dir: Path) -> Any:
        from cdrec.predictors.ctr import CTRPredictor

        require_model_file(run_dir)
        prepared, models = self.restore(cfg, run_dir)
        return CTRPredictor(model=cfg.model, task=self, prepared=prepared, models=models, batch_size=max(cfg.train.batch_size, 8192))

    def evaluate_saved(self, cfg: RunConfig, run_dir: Path, part: str) -> RunResult:
        prepared, models = self.restore(cfg, run_dir)
        rows, probs = self.predict_part(models, prepared, part, max(cfg.train.batch_size, 8192))
        p = prepared.params
        return RunResult(
            model=cfg.model, dataset=prepared.data.name, protocol=protocol_name(cfg, ranked=False), seed=cfg.seed,
            metrics=ctr_metrics(prepared.view, rows, probs),
            setting={"mode": p.mode, "ablation": getattr(p, "ablation", "none"), "part": part},
            config=cfg.to_dict(), data_stats=prepared.data.stats(),
        )


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _task_view(view: CTRView, task: int) -> CTRView:
    from dataclasses import replace

    return replace(view, labels=view.labels[:, [task]], tasks=[view.tasks[task]])


def _domain_view(view: CTRView, domain: int) -> CTRView:
    from dataclasses import replace

    return replace(view, domain=np.where(view.domain == domain, 0, -1), domains=[view.domains[domain]])
