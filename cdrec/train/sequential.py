"""The ``sequential`` task: next-item models on time-ordered sequences (SASRec, BERT4Rec, MERIT).

Protocol (MERIT 4.2 and 5.3): leave-one-out on the *mixed* sequence (``split.protocol: loo-mixed``;
the last and penultimate events are the test and validation targets whatever their domain), each
target ranked against ``split.n_negatives`` (999) negatives of its domain that the user never
touched, fixed by the seed and stored with the split. HR@k, NDCG@k and MRR per domain. Model
selection (early stopping, learning-rate plateau) on ``MRR_sum``, the sum over domains of the
validation MRR. Single-target models (``*-st``) train one model per domain on that domain's own
sequence and are selected on their domain's MRR; the ST-CDSR ones (``mixed_input``: CD-SASRec) read
the mixed sequence instead and learn their domain's targets only (MERIT 5.2).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

from cdrec.config import RunConfig
from cdrec.data.datasets import load_dataset
from cdrec.data.interactions import Interactions
from cdrec.data.samplers import epoch_rng
from cdrec.data.sequences import SequenceBatch, histories, training_sequences
from cdrec.data.splits import Split
from cdrec.errors import require
from cdrec.evaluate import Evaluation, rank_metrics, report
from cdrec.metrics.ranking import positive_rank
from cdrec.models import registry
from cdrec.results.schema import RunResult, atomic_write_text, peak_rss_mb, require_model_file
from cdrec.train import distributed as dist_
from cdrec.train.tasks import (
    Task, load_saved_models, make_split, merge_evaluations, merged_or_none, protocol_name, ranking_metrics, register_task, require_task_options, save_trained,
)
from cdrec.train.trainer import Trainer, resolve_device, seed_everything

if TYPE_CHECKING:
    from cdrec.models.sequential.base import SequentialModel
    from cdrec.models.sequential.merit import MERIT


@dataclass
class EvalView:
    """Rows of one split part (of one domain for single-target scopes) with their inputs."""

    rows: np.ndarray
    history: SequenceBatch
    candidates: np.ndarray  # [n, 1 + N], +1 shifted item ids
    target_domain: np.ndarray


@dataclass
class Scope:
    name: str
    domain: int | None
    train: SequenceBatch
    parts: dict[str, EvalView] = field(default_factory=dict)


@dataclass
class SequentialPrepared:
    data: Interactions
    split: Split
    params: Any
    device: torch.device
    scopes: list[Scope]


def eval_view(split: Split, part: str, max_len: int, domain: int | None, *, mixed_history: bool = False) -> EvalView:
    """The rows of ``domain`` (all when None) with their histories: of that domain only, or the mixed
    sequence when ``mixed_history`` (ST-CDSR models)."""
    data = split.data
    rows = split.rows(part)
    cands = split.candidates[part]
    if domain is not None:
        keep = data.domain[rows] == domain
        rows, cands = rows[keep], cands[keep]
    history = histories(data, rows, max_len, domain=None if mixed_history else domain)
    return EvalView(rows, history, cands.astype(np.int64) + 1, data.domain[rows].astype(np.int64))


def targets_of_domain(view: SequenceBatch, data: Interactions, domain: int) -> SequenceBatch:
    """Mixed training windows with the targets outside ``domain`` cleared (ST-CDSR: the model of one
    target domain learns its domain's next items only); windows left without a target are dropped."""
    owner = np.r_[-1, data.item_domain()]  # +1 shifted ids, 0 = no target
    targets = np.where(owner[view.targets] == domain, view.targets, 0)
    keep = (targets > 0).any(axis=1)
    return SequenceBatch(view.users[keep], view.items[keep], view.domains[keep], targets[keep], view.domain_targets[keep])


def scope_training(split: Split, max_len: int, domain: int | None, cls: type[SequentialModel]) -> SequenceBatch:
    """Training windows of one scope: the mixed sequence (``domain`` None), the domain's own sequence
    (``-st``), or the mixed sequence with that domain's targets only (``mixed_input``: ST-CDSR)."""
    if domain is not None and cls.mixed_input:
        return targets_of_domain(training_sequences(split, max_len, cloze=cls.cloze), split.data, domain)
    return training_sequences(split, max_len, domain=domain, cloze=cls.cloze)


def train_batches(view: SequenceBatch, batch_size: int, seed: int) -> tuple[Any, int]:
    """``batches(epoch)`` over the training windows, shuffled by ``epoch_rng`` (vectorized slices)."""
    n = len(view)

    def batches(epoch: int) -> Iterator[dict[str, np.ndarray]]:
        perm = epoch_rng(seed, epoch).permutation(n)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            yield {"items": view.items[idx], "domains": view.domains[idx], "targets": view.targets[idx], "domain_targets": view.domain_targets[idx]}

    return batches, (n + batch_size - 1) // batch_size


def eval_batches(view: EvalView, batch_size: int, device: torch.device) -> Iterator[tuple[slice, dict[str, torch.Tensor]]]:
    for start in range(0, len(view.rows), batch_size):
        sl = slice(start, start + batch_size)
        yield sl, {
            "items": torch.as_tensor(view.history.items[sl], device=device),
            "domains": torch.as_tensor(view.history.domains[sl], device=device),
            "candidates": torch.as_tensor(view.candidates[sl], device=device),
            "target_domain": torch.as_tensor(view.target_domain[sl], device=device),
        }


def eval_rows(cfg: RunConfig) -> int:
    """Sequences per evaluation batch: ``eval.batch_size``, or the training batch when unset (a forward
    pass without gradients at the training batch fits wherever training fits)."""
    return cfg.eval.batch_size or cfg.train.batch_size


def evaluate_view(model: SequentialModel, split: Split, view: EvalView, cfg: RunConfig, device: torch.device) -> Evaluation:
    """Rank each row's stored candidates with ``model.score`` and report per domain."""
    ranks = np.empty(len(view.rows), dtype=np.int64)
    model.eval()
    with torch.no_grad():
        for sl, batch in eval_batches(view, eval_rows(cfg), device):
            ranks[sl] = positive_rank(model.score(batch).float().cpu().numpy())
    return report(split, view.rows, rank_metrics(ranks, cfg.eval.ks), cfg.eval.buckets)


def with_mrr_sum(ev: Evaluation, domains: list[str]) -> dict[str, float]:
    """Overall validation metrics plus ``MRR_sum`` (sum of the domains' MRR: model selection)."""
    out = dict(ev.metrics.get("overall", {}))
    out["MRR_sum"] = float(sum(ev.metrics[d]["MRR"] for d in domains if d in ev.metrics))
    return out


def gate_summary(model: MERIT, view: EvalView, batch_size: int, device: torch.device) -> dict[str, dict[str, list[float]]]:
    """Mean and std of the (shared, specific) expert weights of every moFFN output on ``view``,
    separated by target domain (MERIT Fig. 7)."""
    weights: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for _, batch in eval_batches(view, batch_size, device):
            for name, g in model.gate_weights(batch).items():
                weights.setdefault(name, []).append(g.float().cpu().numpy())
    out: dict[str, dict[str, list[float]]] = {}
    for d in np.unique(view.target_domain):
        sel = view.target_domain == d
        out[str(int(d))] = {}
        for name, parts in weights.items():
            g = np.concatenate(parts)[sel]
            g = g[~np.isnan(g).any(axis=1)]
            if len(g):
                out[str(int(d))][name] = [*map(float, g.mean(0)), *map(float, g.std(0))]
    return out


_SPLITS: dict[str, tuple[Interactions, Split]] = {}


def cached_split(cfg: RunConfig) -> tuple[Interactions, Split]:
    """Data and split (with its fixed candidates) for ``cfg.data``/``cfg.split``/``cfg.seed``, kept
    for the next run of the same process (a recipe trains several models on the same split; the
    split is deterministic in these keys, so reusing it changes nothing but the time)."""
    key = json.dumps([asdict(cfg.data), asdict(cfg.split), cfg.seed], sort_keys=True, default=str)
    if key not in _SPLITS:
        data = load_dataset(cfg.data, seed=cfg.seed)
        data.require_items_owned("sequential models")
        split = make_split(data, cfg)
        _SPLITS.clear()  # keep one: a split of the large sets holds ~100 MB of candidates
        _SPLITS[key] = (data, split)
    return _SPLITS[key]


@register_task("sequential")
class SequentialTask(Task):
    """Leave-one-out on the mixed sequence with fixed sampled candidates (see module docstring)."""

    def prepare(self, cfg: RunConfig) -> SequentialPrepared:
        entry = registry.get(cfg.model)
        params = registry.build_params(cfg.model, cfg.model_params)
        require(cfg.split.protocol in ("loo-mixed", "loo"), f"split.protocol: sequential models need leave-one-out ('loo-mixed' as in MERIT), got {cfg.split.protocol!r}")
        require(not cfg.split.full_ranking, "split.full_ranking: the sequential task ranks sampled candidates; set split.full_ranking=false")
        require_task_options(cfg, "sequential", scope="the model fixes it (-st models train one per domain, -dt and merit one joint model)",
                             metrics=[*ranking_metrics(cfg), "MRR_sum"])
        data, split = cached_split(cfg)
        device = resolve_device(cfg.train.device)
        cls = entry.cls
        max_len = params.max_len
        domains: list[int | None] = list(range(data.n_domains)) if cls.single_target else [None]
        scopes = []
        for dom in domains:
            name = "joint" if dom is None else data.domains[dom]
            train = scope_training(split, max_len, dom, cls)
            if len(train) == 0:
                continue
            scope = Scope(name, dom, train)
            for part in ("valid", "test"):
                scope.parts[part] = eval_view(split, part, max_len, dom, mixed_history=cls.mixed_input)
            scopes.append(scope)
        require(len(scopes) > 0, f"{data.name}: no user has two training events, nothing to train on")
        return SequentialPrepared(data, split, params, device, scopes)

    def build_model(self, cfg: RunConfig, split: Split, params: Any) -> SequentialModel:
        data = split.data
        model = registry.get(cfg.model).cls(data.n_items, data.item_offsets, params)
        model.attach_training(split)
        return model

    def execute(self, prepared: SequentialPrepared, cfg: RunConfig, run_dir: Path, *, resume: bool = False) -> RunResult:
        data, split = prepared.data, prepared.split
        train_s = eval_s = 0.0
        tests, valids, history, states, gates = [], [], [], {}, {}
        for scope in prepared.scopes:
            if len(scope.parts["test"].rows) == 0:
                continue
            seed_everything(cfg.seed)
            model = self.build_model(cfg, split, prepared.params)
            batches, n_batches = train_batches(scope.train, cfg.train.batch_size, cfg.seed)
            trainer = Trainer(
                model, cfg.train, seed=cfg.seed, device=prepared.device,
                checkpoint=run_dir / f"checkpoint-{scope.name}.pt", desc=f"{cfg.model}:{scope.name}",
            )
            domains = data.domains if scope.domain is None else [data.domains[scope.domain]]
            valid_view = scope.parts["valid"]
            has_valid = len(valid_view.rows) > 0

            def validate(m: SequentialModel = model, v: EvalView = valid_view, doms: list[str] = domains) -> dict[str, float]:
                return with_mrr_sum(evaluate_view(m, split, v, cfg, prepared.device), doms) if has_valid else {}

            fit = trainer.fit(batches, validate, n_batches=n_batches, resume=resume)
            train_s += fit.train_s
            t0 = time.perf_counter()
            # under torchrun rank 0 evaluates and every rank receives the same metrics
            if cfg.eval.test:
                tests.append(dist_.on_main(lambda m=model, v=scope.parts["test"]: evaluate_view(m, split, v, cfg, prepared.device)))
            if has_valid:
                valids.append(dist_.on_main(lambda m=model, v=valid_view: evaluate_view(m, split, v, cfg, prepared.device)))
            eval_s += time.perf_counter() - t0
            if hasattr(model, "gate_weights") and cfg.eval.test:
                gates = gate_summary(model, scope.parts["test"], eval_rows(cfg), prepared.device)
            history.append(fit.history_entry(scope.name))
            states[scope.name] = model.state_dict()
        require(len(states) > 0, f"{data.name}: no domain has test rows")
        save_trained(run_dir, states, [scope.name for scope in prepared.scopes])
        if gates and dist_.is_main():
            named = {data.domains[int(d)]: v for d, v in gates.items()}
            atomic_write_text(run_dir / "gates.json", json.dumps(named, indent=2) + "\n")
        test = merged_or_none(split, tests, cfg.eval.buckets)
        valid = merged_or_none(split, valids, cfg.eval.buckets)
        return RunResult(
            model=cfg.model,
            dataset=data.name,
            protocol=protocol_name(cfg),
            seed=cfg.seed,
            metrics=test.metrics if test else {},
            buckets=test.buckets if test else {},
            setting=self.setting(cfg, prepared.params),
            valid_metrics={**valid.metrics, "overall": with_mrr_sum(valid, data.domains)} if valid else {},  # MRR_sum: what selection used
            config=cfg.to_dict(),
            data_stats=data.stats(),
            timing={"train_s": round(train_s, 3), "eval_s": round(eval_s, 3), "peak_rss_mb": peak_rss_mb()},
            history=history,
        )

    @staticmethod
    def setting(cfg: RunConfig, params: Any) -> dict[str, Any]:
        setting: dict[str, Any] = {}
        ablation = getattr(params, "ablation", "none")
        if ablation != "none":
            setting["ablation"] = ablation
        switches = getattr(params, "authors_code", [])
        if switches:
            setting["authors_code"] = "+".join(switches)
        return setting

    def restore(self, cfg: RunConfig, run_dir: Path) -> tuple[SequentialPrepared, dict[str, Any]]:
        prepared = self.prepare(cfg)
        builders = {sc.name: (lambda sc=sc: self.build_model(cfg, prepared.split, prepared.params)) for sc in prepared.scopes}
        return prepared, load_saved_models(run_dir, prepared.device, builders, prepared.data)

    def predictor(self, cfg: RunConfig, run_dir: Path) -> Any:
        from cdrec.predictors.sequence import SequencePredictor

        require_model_file(run_dir)
        prepared, models = self.restore(cfg, run_dir)
        cls = registry.get(cfg.model).cls
        return SequencePredictor(model=cfg.model, prepared=prepared, models=models, single_target=cls.single_target and not cls.mixed_input)

    def evaluate_saved(self, cfg: RunConfig, run_dir: Path, part: str) -> RunResult:
        prepared, models = self.restore(cfg, run_dir)
        parts = [evaluate_view(models[s.name], prepared.split, s.parts[part], cfg, prepared.device) for s in prepared.scopes if s.name in models]
        ev = merge_evaluations(prepared.split, parts, cfg.eval.buckets) if len(parts) > 1 else parts[0]
        return RunResult(
            model=cfg.model, dataset=prepared.data.name, protocol=protocol_name(cfg), seed=cfg.seed,
            metrics=ev.metrics, buckets=ev.buckets, setting={**self.setting(cfg, prepared.params), "part": part},
            config=cfg.to_dict(), data_stats=prepared.data.stats(),
        )
