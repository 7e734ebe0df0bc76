"""``cdrec tune``: hyperparameter search on Optuna, selected on validation only.

A search space is a YAML mapping from config keys to ranges::

    train.lr: {type: float, low: 1e-4, high: 1e-1, log: true}
    model_params.dim: {type: int, low: 16, high: 128, step: 16}
    train.optimizer: {type: categorical, choices: [adam, adamw]}

Each trial is a normal run folder (``DIR/trials/trial-000/``) trained with ``eval.test=false``, so a
trial computes validation metrics only; trials are ranked by the config's ``train.metric`` in the
validation metrics of their ``results.json`` (lower is better for RMSE and LogLoss). The study lives
in ``DIR/study.db`` (SQLite): rerunning the command continues it up to ``--trials`` completed trials
(a trial a kill interrupted is run again). Trial ``k`` draws its values with a TPE sampler seeded by
(the config's seed, ``k``), the first :data:`STARTUP_TRIALS` at random, so the same command gives the
same trials, and 3 trials then a rerun to 4 give the 4 trials of one uninterrupted search.

After the search only the best trial's model is scored on the test split, once (its
``results.json`` then holds the test metrics; the other trials keep none and lose their
``model.pt``); ``best.yaml`` is the full config of the best trial and ``trials.md`` the table of all.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cdrec.config import RunConfig, build_dataclass, dump_config, read_yaml, validate
from cdrec.errors import CdrecError, require
from cdrec.results.schema import RunResult, atomic_write_text, strict_json, write_result
from cdrec.results.tables import markdown_table, result_markdown

STARTUP_TRIALS = 5
"""Trials drawn at random before TPE models the completed ones."""
STUDY_NAME = "cdrec-tune"
LOWER_IS_BETTER = ("RMSE", "LogLoss")
"""Metric names (before any ``[task]``) that a search minimises."""
FIXED_KEYS = {
    "model": "tune one model at a time and compare the tuned models with `cdrec compare`",
    "seed": "picking the luckiest seed fits noise; run the best config over seeds with `cdrec run --seeds`",
    "data": "every trial must be selected on the same validation rows",
    "split": "every trial must be selected on the same validation rows",
    "eval": "every trial must be selected on the same validation metrics",
    "train.metric": "it is the metric trials are selected on",
    "train.device": "it does not change what a model learns",
    "train.progress": "it does not change what a model learns",
    "train.logger": "it does not change what a model learns",
    "setting": "MTAL runs cannot be tuned (they score the test split while they train)",
}
"""Config keys (and sections) a search space may not vary, with the reason."""


@dataclass
class Dimension:
    """One searched config key: ``float`` / ``int`` in ``[low, high]`` (``log`` scale or a ``step``), or ``categorical`` ``choices``."""

    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    def check(self, where: str) -> None:
        """Raise naming ``where`` (``space.yaml: train.lr``) when the range is not one Optuna can sample."""
        require(self.type in ("float", "int", "categorical"), f"{where}.type: expected float, int or categorical, got {self.type!r}")
        if self.type == "categorical":
            require(isinstance(self.choices, list) and len(self.choices) > 0, f"{where}.choices: expected a non-empty list")
            require(all(c is None or isinstance(c, (bool, int, float, str)) for c in self.choices),
                    f"{where}.choices: expected numbers, strings, booleans or null, got {self.choices!r}")
            require(self.low is None and self.high is None and not self.log and self.step is None,
                    f"{where}: a categorical key takes choices only (no low, high, log or step)")
            return
        require(self.choices is None, f"{where}.choices: only a categorical key takes choices")
        require(self.low is not None and self.high is not None, f"{where}: a {self.type} key needs low and high")
        require(self.low < self.high, f"{where}: expected low < high, got low {self.low:g} and high {self.high:g}")
        require(not self.log or self.low > 0, f"{where}.low: a log scale needs low > 0, got {self.low:g}")
        require(not (self.log and self.step is not None), f"{where}: give log or step, not both")
        require(self.step is None or self.step > 0, f"{where}.step: expected > 0, got {self.step}")
        if self.type == "int":
            for name in ("low", "high", "step"):
                value = getattr(self, name)
                require(value is None or float(value).is_integer(), f"{where}.{name}: an int key needs a whole number, got {value}")

    def distribution(self, optuna: Any) -> Any:
        if self.type == "categorical":
            return optuna.distributions.CategoricalDistribution(self.choices)
        if self.type == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def extremes(self) -> list[Any]:
        """The values whose configs are checked before the search: the bounds or every choice."""
        if self.type == "categorical":
            return list(self.choices or [])
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]


def import_optuna() -> Any:
    """Optuna, or one line naming the extra that installs it."""
    try:
        import optuna
    except ImportError:
        raise CdrecError("cdrec tune needs the 'tune' extra (optuna is missing): pip install 'cdrec[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def with_values(base: dict[str, Any], values: dict[str, Any]) -> RunConfig:
    """The config ``base`` (a ``RunConfig.to_dict()``) with dotted ``values`` set, checked like a config file."""
    tree = copy.deepcopy(base)
    for key, value in values.items():
        *sections, last = key.split(".")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
            require(isinstance(node, dict), f"{key}: {section!r} is not a config section")
        node[last] = value
    cfg = build_dataclass(RunConfig, tree)
    validate(cfg)
    return cfg


def read_space(path: str | Path, base: dict[str, Any]) -> dict[str, Dimension]:
    """The search space file: every key a config key that may vary, every range valid, and the config
    built with each bound (or choice) valid; errors name the file and the key."""
    raw = read_yaml(path)
    require(len(raw) > 0, f"{path}: empty search space; expected config keys such as train.lr: {{type: float, low: 1e-4, high: 1e-1, log: true}}")
    space = {}
    for key, spec in raw.items():
        where = f"{path}: {key}"
        fixed = next((k for k in FIXED_KEYS if key == k or key.startswith(k + ".")), None)
        require(fixed is None, f"{where}: cannot be searched: {FIXED_KEYS.get(fixed or '', '')}")
        require(isinstance(spec, dict), f"{where}: expected a mapping such as {{type: float, low: 1e-4, high: 1e-1, log: true}}, got {spec!r}")
        dim = build_dataclass(Dimension, spec, where=where)
        dim.check(where)
        for value in dim.extremes():
            try:
                with_values(base, {key: value})
            except CdrecError as exc:
                raise CdrecError(f"{path}: {exc}") from None
        space[key] = dim
    return space


def lower_is_better(metric: str) -> bool:
    return metric.split("[")[0] in LOWER_IS_BETTER


def validation_score(result: RunResult, metric: str, run_dir: Path) -> float:
    """The trial's ``metric`` in ``results.json``'s overall validation metrics (never a test metric);
    a metric that could not be computed counts as the worst value."""
    overall = result.valid_metrics.get("overall", {})
    require(metric in overall, f"train.metric: {metric!r} is not among the validation metrics of {run_dir} "
            f"({sorted(k for k in overall if k != 'n')}); tune selects on train.metric")
    value = overall[metric]
    if value is None or not math.isfinite(value):
        return math.inf if lower_is_better(metric) else -math.inf
    return float(value)


def trial_sampler(optuna: Any, seed: int, index: int) -> Any:
    """TPE seeded by (config seed, trial index): trial ``index`` draws the same values however the search was split into reruns."""
    trial_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
    return optuna.samplers.TPESampler(seed=trial_seed, n_startup_trials=STARTUP_TRIALS, constant_liar=False)


@dataclass
class TuneOutcome:
    """What a search left in its folder."""

    best_run: Path
    best_config: Path
    table: Path
    best_value: float
    n_trials: int
    tested_now: bool
    """Whether this call scored the best trial on the test split (False: it already had been)."""


def tune(cfg: RunConfig, space_path: str | Path, n_trials: int, out_dir: str | Path, *, echo: Callable[[str], Any] = print) -> TuneOutcome:
    """Search ``space_path`` around ``cfg`` until ``out_dir``'s study holds ``n_trials`` completed trials,
    then score the best trial on the test split (once) and write ``best.yaml`` and ``trials.md``."""
    from cdrec.config import differing_keys, resume_view
    from cdrec.experiments.pipeline import resolved
    from cdrec.train.tasks import task_for

    optuna = import_optuna()
    out_dir = Path(out_dir)
    require(n_trials >= 1, f"--trials: expected >= 1, got {n_trials}")
    require(not out_dir.is_file(), f"--out {out_dir}: is a file, expected a directory")
    require(not out_dir.exists() or (out_dir / "study.db").exists() or not any(out_dir.iterdir()),
            f"--out {out_dir}: holds files but no study.db; choose an empty or new folder")
    base = resolved(cfg).to_dict()
    space = read_space(space_path, base)
    metric = cfg.train.metric
    task_for(cfg.model).prepare(trial_config(base, {}))  # data and options checked before anything is written
    signature = {"config": resume_view(base), "space": {k: dataclasses.asdict(d) for k, d in space.items()}}

    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        study = optuna.create_study(
            study_name=STUDY_NAME, storage=f"sqlite:///{(out_dir / 'study.db').resolve()}", load_if_exists=True,
            direction="minimize" if lower_is_better(metric) else "maximize",
        )
        saved = study.user_attrs.get("signature")
        if saved is None:
            study.set_user_attr("signature", signature)
        else:
            changed = differing_keys(saved, signature)
            require(not changed, f"--out {out_dir}: holds a study of another config or space (differs in {', '.join(changed)}); "
                    "rerun with the same config and space, or choose another --out")
        _fail_interrupted(study, optuna)
        done = _completed(study, optuna)
        if len(done) >= n_trials:
            echo(f"{out_dir}: the study already holds {len(done)} completed trials (--trials {n_trials})")
        while len(done) < n_trials:
            done.append(_run_trial(study, optuna, base, space, metric, len(done), n_trials, out_dir, echo))
            _keep_best_model(out_dir, done, study.best_trial)
    except BaseException:
        if created and not _completed_quietly(out_dir, optuna):
            shutil.rmtree(out_dir, ignore_errors=True)  # a mistake found by the first trial leaves nothing behind
        raise
    return _finish(study, base, space, metric, out_dir, done, space_path)


def trial_config(base: dict[str, Any], params: dict[str, Any]) -> RunConfig:
    """A trial's run config: ``base`` with the sampled ``params``, validation only (``eval.test=false``), no progress bars."""
    return with_values(base, {**params, "eval.test": False, "train.progress": False})


def _completed(study: Any, optuna: Any) -> list[Any]:
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return sorted(trials, key=lambda t: t.user_attrs["index"])


def _completed_quietly(out_dir: Path, optuna: Any) -> bool:
    """Whether ``out_dir``'s study holds a completed trial (False when it cannot be read)."""
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{(out_dir / 'study.db').resolve()}")
    except Exception:  # noqa: BLE001  (no study yet, or a half-made file: nothing worth keeping)
        return False
    return bool(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def _fail_interrupted(study: Any, optuna: Any) -> None:
    """Trials a killed search left running are marked failed (they are run again under their index)."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _run_trial(study: Any, optuna: Any, base: dict[str, Any], space: dict[str, Dimension], metric: str, index: int,
               n_trials: int, out_dir: Path, echo: Callable[[str], Any]) -> Any:
    """Sample, train and validate trial ``index``; one progress line."""
    from cdrec.experiments.pipeline import run_config

    study.sampler = trial_sampler(optuna, base["seed"], index)
    trial = study.ask({key: dim.distribution(optuna) for key, dim in space.items()})
    run_dir = out_dir / "trials" / f"trial-{index:03d}"
    trial.set_user_attr("index", index)
    trial.set_user_attr("run", run_dir.relative_to(out_dir).as_posix())
    shutil.rmtree(run_dir, ignore_errors=True)  # what an interrupted attempt at this index left
    t0 = time.perf_counter()
    try:
        result = run_config(trial_config(base, trial.params), run_dir)
        value = validation_score(result, metric, run_dir)
    except BaseException:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    trial.set_user_attr("train_s", result.timing.get("train_s"))
    trial.set_user_attr("best_epoch", [h.get("best_epoch") for h in result.history])
    frozen = study.tell(trial, value)
    best = study.best_trial
    echo(f"trial {index + 1}/{n_trials} ({run_dir.name}): {_params_text(trial.params)} -> valid {metric} {value:.4f} "
         f"(best {best.value:.4f}, {Path(best.user_attrs['run']).name}) [{time.perf_counter() - t0:.1f} s]")
    return frozen


def _params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_value_text(v)}" for k, v in params.items())


def _value_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _keep_best_model(out_dir: Path, done: list[Any], best: Any) -> None:
    """Only the best trial keeps ``model.pt`` (the one the test split will score)."""
    for trial in done:
        if trial.number != best.number:
            (out_dir / trial.user_attrs["run"] / "model.pt").unlink(missing_ok=True)


def _finish(study: Any, base: dict[str, Any], space: dict[str, Dimension], metric: str, out_dir: Path, done: list[Any],
            space_path: str | Path) -> TuneOutcome:
    """Score the best trial on the test split (unless it already was), strip test metrics from any other
    trial (a best that a continued search replaced), and write ``best.yaml`` and ``trials.md``."""
    from cdrec.experiments.pipeline import evaluate_run, resolved

    best = study.best_trial
    best_dir = out_dir / best.user_attrs["run"]
    for trial in done:
        run_dir = out_dir / trial.user_attrs["run"]
        result = RunResult.read(run_dir / "results.json")
        if trial.number != best.number and result.metrics:
            write_result(run_dir, dataclasses.replace(result, metrics={}, buckets={}))
    result = RunResult.read(best_dir / "results.json")
    tested_now = not result.metrics
    if tested_now:
        require((best_dir / "model.pt").exists(), f"{best_dir}: the best trial's model.pt is missing; delete {out_dir} and search again")
        t0 = time.perf_counter()
        test = evaluate_run(best_dir, part="test")
        timing = {**result.timing, "test_eval_s": round(time.perf_counter() - t0, 3)}
        result = dataclasses.replace(result, metrics=test.metrics, buckets=test.buckets, timing=timing)
        write_result(best_dir, result)
    best_config = out_dir / "best.yaml"
    atomic_write_text(best_config, dump_config(resolved(with_values(base, best.params))))
    table = out_dir / "trials.md"
    atomic_write_text(table, trials_markdown(done, best, result, metric, space, space_path, base["seed"]))
    atomic_write_text(out_dir / "best.json", strict_json({"run": best.user_attrs["run"], "params": best.params, "valid": {metric: best.value},
                                                          "metrics": result.metrics}) + "\n")
    return TuneOutcome(best_dir, best_config, table, float(best.value), len(done), tested_now)


def trials_markdown(done: list[Any], best: Any, best_result: RunResult, metric: str, space: dict[str, Dimension],
                    space_path: str | Path, seed: int) -> str:
    """``trials.md``: every completed trial's values and validation score, then the best trial's test metrics."""
    keys = list(space)
    rows = []
    for trial in done:
        name = Path(trial.user_attrs["run"]).name
        label = f"**{name}** (best)" if trial.number == best.number else name
        epochs = ",".join(str(e) for e in trial.user_attrs.get("best_epoch", []))
        rows.append([label, *(_value_text(trial.params[k]) for k in keys), f"{trial.value:.4f}", epochs, trial.user_attrs.get("train_s", "")])
    order = "lower" if lower_is_better(metric) else "higher"
    head = (f"# cdrec tune: {best_result.model} on {best_result.dataset} ({best_result.protocol})\n\n"
            f"{len(done)} trials over `{space_path}`, selected on validation {metric} ({order} is better); TPE seeded by "
            f"(seed {seed}, trial index), the first {STARTUP_TRIALS} at random. Trials compute validation metrics only; "
            f"the test split was scored for the best trial alone (`best.yaml` is its config).\n\n")
    table = markdown_table(["trial", *keys, f"valid {metric}", "best epoch", "train s"], rows)
    run = best.user_attrs["run"]
    tested = result_markdown(dataclasses.replace(best_result, buckets={}, timing={}))  # by activity bucket: the run's results.md
    return head + table + f"\n## Test metrics of the best trial ({run}/results.md has them by activity)\n\n" + tested
