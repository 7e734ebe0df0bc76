"""``cdrec reproduce uclr``: UCLR (Yang et al., WWW 2024) Tables 2-5 and the temperature analysis.

The recipe is data: four multi-domain datasets, five single-domain baselines, the five rungs of
the ablation ladder, a CPU schedule and the seeds. Every run goes through
:func:`cdrec.experiments.pipeline.run_config` (the ``cdrec run`` path) and writes
``runs/<dataset>/<model>/seed<k>/results.json``; the data and split of one dataset and seed are
prepared once and shared by its models, and the ladder shares one PGE pretraining per dataset and
seed (``cache/pge-<dataset>-seed<k>.pt``, which each run's ``config.yaml`` names relative to its run
folder, :data:`PGE_CACHE`, so a committed config names no machine's folder). Finished runs are read
back instead of rerun, so an interrupted reproduction continues where it stopped. The report opens
with the runs of the plan still missing (:func:`report`) and names every dataset and table without a
finished run; what it says beside the numbers is this module's text (:data:`PAPER_DATA_NOTE`, the
schedule of the runs, the settings their ``config.yaml`` records), never typed into ``report.md``.

Protocol (paper section 4.2): leave-one-out per user per domain (last = test, penultimate =
validation), 1 positive + 99 negatives from the domain fixed by the seed, MRR/HR/NDCG@10 per
domain, early stopping on validation MRR@10, test reported.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cdrec.config import load_config
from cdrec.data.datasets import load_dataset
from cdrec.errors import require
from cdrec.experiments.headline import HeadlineRow
from cdrec.experiments.runner import OPTIONS_FILE, Invocation, PlannedRun, coverage_section, failed_section, run_plan
from cdrec.models import registry
from cdrec.models.cf.uclr import DEFAULT_ENCODER_DROPOUT, LADDER, LIGHTGCN_BACKBONE, MASK_MODES, SCORE_WITH, UCLRParams
from cdrec.results.schema import RunResult, atomic_write_text
from cdrec.results.tables import markdown_table, paired_ttest
from cdrec.train.tasks import ranking_scopes, task_for
from cdrec.results.plots import save_figure

DATASETS: dict[str, dict[str, Any]] = {
    "douban": {"name": "douban", "overlap_only": True},
    "afk": {"name": "afk"},
    "abe": {"name": "abe"},
    "ml-1m-genre": {"name": "ml-1m", "domains": "genre", "keep_domains": ["Drama", "Comedy", "Action"], "min_rating": 4},
}
"""Douban book + music (the 1,566 users in both), Amazon Food-Kitchen and Beauty-Electronics as
two-domain implicit data (order ignored), ML-1M split by first listed genre (ratings >= 4)."""

BASELINES = ["pop", "itemknn", "bprmf", "neumf", "lightgcn"]
"""Single-domain baselines of Table 2 (``scope=single``: one model per domain); ``pop`` and ``itemknn``
(not in the paper) are fitted in one pass and ignore the training schedule."""

CROSS_DOMAIN = ["herograph", "ga-mtcdr", "cat-art"]
"""Multi-target cross-domain baselines of Table 2 (``scope=joint``: one model over every domain)."""

MODELS = [*BASELINES, *CROSS_DOMAIN, *LADDER]

SCHEDULE: dict[str, Any] = {
    "train": {"lr": 1e-3, "epochs": 200, "patience": 20, "batch_size": 2048},
    "ladder": {"ae_epochs": 20, "ae_passes": 10, "ft_epochs": 10},
    "seeds": 3,
}
"""The paper's schedule (section 4.2: Adam lr 1e-3, batch 2048, embedding size 128, reg 1e-5) for every
model of Table 2 alike; the paper gives no epoch cap or patience. Early stopping on validation MRR@10
after 20 epochs without a better one (at lr 1e-3 BPR-MF's validation MRR is flat for its first 6-10
epochs on Douban, so the earlier patience of 2 stopped it before it started), at most 200 epochs (the
report gives each run's best epoch beside this cap); autoencoder at most 20 epochs x 10 passes over the
users, LoRA finetune at most 10 epochs per domain (the model's defaults). Until 2026-12-07 the recipe
ran Adam lr 1e-2 for at most 8 epochs with patience 2, which left BPR-MF near the popularity ranker
on Douban (issue #32: book MRR@10 17.75 at lr 1e-2 against 20.21 at lr 1e-3, seed 0)."""

PHASES = [["pop", "itemknn", "bprmf", *LADDER], ["neumf", "lightgcn", *LIGHTGCN_BACKBONE, *CROSS_DOMAIN]]
"""Run order: every dataset and seed of the first phase (the done-when comparison: the one-pass
Pop and ItemKNN, BPR-MF, the ladder, UCLR) before the costlier NeuMF, LightGCN, UCLR on a LightGCN
backbone (``pge-lightgcn``, ``uclr-lightgcn``: PGE by a joint LightGCN, with their own cached
pretraining; Table 2 lists them beside ``lightgcn``) and the multi-target cross-domain baselines."""

CLASSICS = ["cmf", "clfm", "dtcdr", "conet", "deepapf", "bitgcf", "disencdr", "emcdr", "sscdr", "dcdcsr", "natr"]
"""The two-domain classics of ``--section classics`` (:mod:`cdrec.models.cf.two_domain`): dual-target
ones on every unordered pair of a dataset's domains, single-target ones (``target_only``) on every
ordered (source, target) pair, evaluated on the target alone."""

SECTIONS = {
    "main": "Tables 2-5 and the temperature analysis (the default plan)",
    "classics": "the two-domain classics on every pair of each dataset's domains, beside UCLR (90 runs per seed; over 10 h on CPU)",
    "choices": "issue #32's two open UCLR choices (contrastive view, scoring embedding) on validation only (5 uclr runs per dataset, seed 0; about 1.6 h on CPU)",
}
"""What ``cdrec reproduce uclr --section NAME`` runs; the report shows every section whose runs exist."""
DEFAULT_SECTIONS = ("main",)

CHOICES: dict[str, tuple[str, ...]] = {"mask_mode": MASK_MODES, "score_with": SCORE_WITH}
"""The open choices of ``--section choices`` (issue #32): the contrastive view ``E'`` (section 3.4,
appendix B.2) and the user embedding that scores items. Every value of one is tried with the other at
the model's current default (:class:`~cdrec.models.cf.uclr.UCLRParams`), so the run of both defaults
serves both choices; each is decided by the mean validation MRR@10 over the datasets."""

CHOICE_ENCODER_DROPOUT = DEFAULT_ENCODER_DROPOUT
"""``encoder_dropout`` of the ``element+dropout`` view: the model's default, 0.1, the rate SimCSE (Gao et
al., EMNLP 2021) uses when dropout alone makes the contrastive pair; here it comes on top of the 30%
element mask, so a mild rate that perturbs the two streams without drowning the 32-wide code. Set
explicitly, so each run's ``config.yaml`` records it."""

CHOICE_SEEDS = 1
"""Seeds of ``--section choices``: seed 0 alone (the first of the main plan's, so its PGE pretraining is
the cached one). A choice is made once, before the final runs; three seeds would triple the section's
CPU cost (its estimate is in the README), and the report says that its differences are of one seed."""

QUICK: dict[str, Any] = {
    "train": {"lr": 0.01, "epochs": 2, "patience": 1, "batch_size": 2048},
    "ladder": {"ae_epochs": 2, "ae_passes": 5, "ft_epochs": 1},
    "seeds": 1,
    "datasets": ["douban"],
}

# Paper numbers (%, mean over 5 seeds) transcribed from Tables 2-5 for orientation. The paper's
# Douban has Books/Movies/Music (we have no Movies) and its Amazon is Books/Movies/Electronics
# (ours are Food-Kitchen and Beauty-Electronics), so only the matching domains are shown.
PAPER_TABLE2: dict[tuple[str, str], dict[str, tuple[float, float, float]]] = {
    ("douban", "book"): {
        "bprmf": (22.19, 37.58, 25.84), "neumf": (26.67, 46.66, 31.41), "lightgcn": (21.19, 41.40, 25.94), "uclr": (29.75, 48.85, 34.29),
        "herograph": (19.63, 39.72, 24.34), "ga-mtcdr": (24.10, 43.81, 28.76), "cat-art": (27.88, 46.86, 32.40),
    },
    ("douban", "music"): {
        "bprmf": (17.82, 33.56, 21.54), "neumf": (24.41, 46.67, 29.68), "lightgcn": (15.12, 36.43, 20.11), "uclr": (27.10, 48.08, 31.95),
        "herograph": (17.45, 39.22, 22.54), "ga-mtcdr": (23.12, 44.09, 28.06), "cat-art": (23.15, 41.91, 27.59),
    },
    ("abe", "Electronics"): {
        "bprmf": (15.13, 32.26, 19.14), "neumf": (22.68, 44.92, 27.91), "lightgcn": (18.42, 38.57, 23.16), "uclr": (23.68, 46.36, 29.03),
        "herograph": (23.26, 43.21, 27.97), "ga-mtcdr": (22.48, 42.79, 27.26), "cat-art": (22.91, 43.51, 27.77),
    },
}
PAPER_ABLATION: dict[tuple[str, str], dict[str, tuple[float, float, float]]] = {
    ("douban", "book"): {
        "pge": (25.75, 43.79, 28.73), "pge+ae": (26.47, 44.54, 30.09), "pge+cl-ae": (26.91, 44.76, 31.16),
        "pge+ucl-ae": (28.97, 47.80, 33.46), "uclr": (29.75, 48.85, 34.29),
    },
    ("douban", "music"): {
        "pge": (22.11, 43.39, 27.15), "pge+ae": (22.52, 43.27, 27.43), "pge+cl-ae": (23.86, 43.41, 28.49),
        "pge+ucl-ae": (26.75, 47.88, 31.74), "uclr": (27.10, 48.08, 31.95),
    },
    ("abe", "Electronics"): {
        "pge": (18.98, 38.22, 23.50), "pge+ae": (22.18, 43.99, 27.30), "pge+cl-ae": (22.99, 45.17, 28.22),
        "pge+ucl-ae": (23.63, 45.20, 29.03), "uclr": (23.68, 46.36, 29.03),
    },
}
PAPER_TABLE3_ELEC_UCLR = (21.88, 43.27, 26.92)
"""Table 3 (Amazon Electronics, users with 1-2 interactions): UCLR MRR/HR/NDCG@10."""

METRICS = ["MRR@10", "HR@10", "NDCG@10"]
LOW_BUCKET = "1-2"


# ------------------------------------------------------------------------------ running
PGE_CACHE = "../../../../cache/pge-{backbone}{dataset}-seed{seed}.pt"
"""``model_params.pge_cache`` of the ladder's runs, relative to the run folder ``runs/<dataset>/<model>/seed<k>``
(UCLR resolves a relative cache against it): ``OUT/cache/``, one file per backbone, dataset and seed. A run
of ``--section choices`` sits one folder deeper (``runs/<dataset>/choices/<variant>/seed<k>``) and names
the same file with one more ``../``."""


def _config(model: str, dataset: str, seed: int, schedule: dict[str, Any], data_dir: Path | None, device: str,
            pair: tuple[str, str] | None = None, choice: dict[str, Any] | None = None) -> Any:
    """The run config of ``model`` on ``dataset``; a two-domain classic trains on ``pair`` = (source, target) alone;
    a run of ``--section choices`` sets the UCLR options ``choice`` and scores validation only (``eval.test=false``).
    ``data.data_dir`` only when ``--data-dir`` was given, and the PGE cache relative to the run folder
    (:data:`PGE_CACHE`), so a committed ``config.yaml`` finds the data and writes its cache on any machine."""
    data = dict(DATASETS[dataset])
    if pair is not None:
        data["keep_domains"] = sorted(pair)  # one data set for both directions
    if data_dir is not None:
        data["data_dir"] = str(data_dir)
    base: dict[str, Any] = {
        "model": model,
        "scope": "single" if model in BASELINES else "joint",
        "seed": seed,
        "data": data,
        "train": {**schedule["train"], "device": device, "progress": False},
        "eval": {"ks": [10], "buckets": [2, 5, 20]},
    }
    if model in LADDER or model in LIGHTGCN_BACKBONE:
        backbone = "lightgcn-" if model in LIGHTGCN_BACKBONE else ""  # one cached pretraining per backbone
        cache = ("../" if choice is not None else "") + PGE_CACHE.format(backbone=backbone, dataset=dataset, seed=seed)
        base["model_params"] = {**schedule["ladder"], **(choice or {}), "pge_cache": cache}
    if choice is not None:  # a choice is made on validation: the test split is never scored
        base["eval"]["test"] = False
    if model == "cat-art":  # CAT on the autoencoder's schedule, ART on the finetune's
        ladder = schedule["ladder"]
        base["model_params"] = {"cat_epochs": ladder["ae_epochs"], "cat_passes": ladder["ae_passes"], "art_epochs": ladder["ft_epochs"]}
    if pair is not None:  # the baselines' embedding size (BPR-MF's 128), not the classics' 64
        base["model_params"] = {"source": pair[0], "target": pair[1], "dim": 128}
    return load_config(None, base=base)


class SharedPrepare:
    """``task.prepare`` for a run of the plan, sharing one loaded data set and split between the runs of
    one dataset (as the model selects it: a classic's pair) and seed; each run gets its own model
    parameters and scopes, through the model class's hooks as ``cdrec run`` (a single-target model's
    target alone). Only the last is kept."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.prepared: Any = None

    def __call__(self, cfg: Any) -> Any:
        params = registry.build_params(cfg.model, cfg.model_params)
        selected = registry.get(cfg.model).cls.select_data(cfg.data, params)
        key = (dataclasses.asdict(selected), dataclasses.asdict(cfg.split), cfg.seed)
        if self.key != key:
            self.key, self.prepared = None, None  # free the previous data set before loading the next
            self.prepared, self.key = task_for(cfg.model).prepare(cfg), key
        scopes, evaluated = ranking_scopes(cfg, self.prepared.split, params)
        return dataclasses.replace(self.prepared, params=params, scopes=scopes, evaluated=evaluated)


def plan_runs(out: Path, datasets: list[str], seeds: list[int], schedule: dict[str, Any], data_dir: Path | None, device: str) -> list[PlannedRun]:
    """Every model x dataset x seed, phase by phase (:data:`PHASES`)."""
    shared = SharedPrepare()
    return [PlannedRun(f"{ds}/{model}/seed{seed}", out / "runs" / ds / model / f"seed{seed}",
                       functools.partial(_config, model, ds, seed, schedule, data_dir, device), shared)
            for phase in PHASES for ds in datasets for seed in seeds for model in phase]


def classic_pairs(model: str, domains: Sequence[str]) -> list[tuple[str, str]]:
    """``(source, target)`` pairs of ``model``: every ordered pair for a single-target model, every
    unordered pair (in the data's domain order) for a dual-target one."""
    pairs = itertools.permutations if registry.get(model).cls.target_only else itertools.combinations
    return list(pairs(domains, 2))


def plan_classics(out: Path, domains: dict[str, list[str]], seeds: list[int], schedule: dict[str, Any], data_dir: Path | None,
                  device: str) -> list[PlannedRun]:
    """The ``classics`` section: every :data:`CLASSICS` model on each of its :func:`classic_pairs` of
    ``domains[dataset]``, at ``schedule``, in ``runs/<dataset>/classics/<model>/<source>-<target>/seed<k>``
    (one data set per pair and seed, shared by the models)."""
    shared = SharedPrepare()
    every_pair = {ds: list(itertools.permutations(doms, 2)) for ds, doms in domains.items()}
    return [PlannedRun(f"{ds}/{model}[{pair[0]}->{pair[1]}]/seed{seed}", out / "runs" / ds / "classics" / model / f"{pair[0]}-{pair[1]}" / f"seed{seed}",
                       functools.partial(_config, model, ds, seed, schedule, data_dir, device, pair), shared)
            for ds, pairs in every_pair.items() for seed in seeds for pair in pairs for model in CLASSICS if pair in classic_pairs(model, domains[ds])]


def _variant_name(setting: dict[str, Any]) -> str:
    """The run folder of a ``--section choices`` setting: its :data:`CHOICES` values joined by ``-``."""
    return "-".join(str(setting[name]) for name in CHOICES)


def choice_defaults() -> dict[str, Any]:
    """The model's current default (:class:`UCLRParams`) of each of :data:`CHOICES`."""
    default = UCLRParams()
    return {name: getattr(default, name) for name in CHOICES}


def _variant_of(choice: str, value: Any) -> str:
    """The run folder of ``choice=value`` with the other choices at their defaults."""
    return _variant_name({**choice_defaults(), choice: value})


def choice_variants() -> dict[str, dict[str, Any]]:
    """The UCLR settings of ``--section choices`` by run folder name (``<mask_mode>-<score_with>``): every
    value of each of :data:`CHOICES` with the others at the :class:`UCLRParams` default, the default's once."""
    variants: dict[str, dict[str, Any]] = {}
    for name, values in CHOICES.items():
        for value in values:
            setting = {**choice_defaults(), name: value}
            if setting["mask_mode"] == "element+dropout":
                setting["encoder_dropout"] = CHOICE_ENCODER_DROPOUT
            variants[_variant_name(setting)] = setting
    return variants


def plan_choices(out: Path, datasets: list[str], seeds: list[int], schedule: dict[str, Any], data_dir: Path | None,
                 device: str) -> list[PlannedRun]:
    """The ``choices`` section: ``uclr`` with each of :func:`choice_variants` on every dataset, for the first
    :data:`CHOICE_SEEDS` of ``seeds``, at ``schedule`` and ``eval.test=false``, in
    ``runs/<dataset>/choices/<variant>/seed<k>``; their PGE pretraining is the main plan's cached one."""
    shared = SharedPrepare()
    return [PlannedRun(f"{ds}/choices/{name}/seed{seed}", out / "runs" / ds / "choices" / name / f"seed{seed}",
                       functools.partial(_config, "uclr", ds, seed, schedule, data_dir, device, choice=setting), shared)
            for ds in datasets for seed in seeds[:CHOICE_SEEDS] for name, setting in choice_variants().items()]


# ------------------------------------------------------------------------------ aggregation
def _by(results: list[RunResult], datasets: list[str]) -> dict[tuple[str, str], list[RunResult]]:
    """Results grouped by (recipe dataset name, model)."""
    out: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        ds = next((d for d in datasets if _matches(r, d)), None)
        if ds is not None:
            out.setdefault((ds, r.model), []).append(r)
    return out


def _stat(values: list[float]) -> tuple[float, float, int]:
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(arr) == 0:
        return float("nan"), float("nan"), 0
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, len(arr)


def _fmt(stat: tuple[float, float, int]) -> str:
    mean, std, n = stat
    if n == 0:
        return "–"
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if n > 1 else f"{100 * mean:.2f}"


def _metric(runs: list[RunResult], domain: str, metric: str, bucket: str | None = None) -> tuple[float, float, int]:
    vals = []
    for r in runs:
        src = r.buckets.get(domain, {}).get(bucket, {}) if bucket else r.metrics.get(domain, {})
        if metric in src:
            vals.append(src[metric])
    return _stat(vals)


def _domain_mean(runs: list[RunResult], domains: list[str], metric: str = "MRR@10", bucket: str | None = None) -> tuple[float, float, int]:
    """Mean over domains per seed, then mean ± std over seeds (domains without rows are skipped)."""
    per_seed = []
    for r in runs:
        vals = []
        for d in domains:
            src = r.buckets.get(d, {}).get(bucket, {}) if bucket else r.metrics.get(d, {})
            if metric in src:
                vals.append(src[metric])
        if vals:
            per_seed.append(float(np.mean(vals)))
    return _stat(per_seed)


def _paper(table: dict, ds: str, dom: str, model: str) -> str:
    vals = table.get((ds, dom), {}).get(model)
    return " / ".join(f"{v:.2f}" for v in vals) if vals else ""


# ------------------------------------------------------------------------------ temperatures
def active_temperatures(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The learned per-user temperatures after the autoencoder stage (``tau_ae``) and the users' training
    interactions over all domains, from a run's ``temperatures.npz``, for the users with any."""
    with np.load(path) as z:
        tau, cnt = z["tau_ae"], z["total_count"]
    active = cnt > 0
    return tau[active], cnt[active]


def activity_spearman(tau: np.ndarray, counts: np.ndarray) -> float:
    """Spearman ρ of the temperatures ``tau`` with the users' activity ``counts``; NaN when either is constant."""
    from scipy.stats import spearmanr

    if np.ptp(tau) == 0 or np.ptp(counts) == 0:
        return float("nan")
    return float(spearmanr(counts, tau).statistic)


def temperature_analysis(out: Path, datasets: list[str]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Plot learned per-user temperatures (after the autoencoder stage) against training activity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import pearsonr

    stats: dict[str, dict[str, float]] = {}
    finished = [(ds, path.parent) for ds in datasets for path in sorted((out / "runs" / ds / "uclr").glob("seed*/results.json"))]
    found = [(ds, run / "temperatures.npz") for ds, run in finished if (run / "temperatures.npz").exists()]
    unrun = [ds for ds in datasets if all(d != ds for d, _ in finished)]
    lacking = [f"`{run.relative_to(out).as_posix()}`" for _, run in finished if not (run / "temperatures.npz").exists()]
    absent = ([f"No finished `uclr` run yet on: {', '.join(unrun)}.", ""] if unrun else []) + (
        [f"Finished `uclr` runs without their `temperatures.npz` (not in this analysis): {', '.join(lacking)}.", ""] if lacking else [])
    if not found:
        return [*absent, "No temperatures to analyse.", ""], stats
    shown = [ds for ds in datasets if any(d == ds for d, _ in found)]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.6), squeeze=False)
    rows = []
    per_seed: dict[str, list[float]] = {}
    for ax, ds in zip(axes[0], shown):
        taus, counts = [], []
        for d, path in found:
            if d != ds:
                continue
            tau, cnt = active_temperatures(path)
            taus.append(tau)
            counts.append(cnt)
            per_seed.setdefault(ds, []).append(activity_spearman(tau, cnt))
        tau, cnt = taus[0], counts[0]  # scatter of the first seed
        ax.scatter(cnt, tau, s=3, alpha=0.3, color="tab:blue", label="users (seed 0)")
        edges = np.unique(np.quantile(cnt, np.linspace(0, 1, 10)))
        which = np.clip(np.searchsorted(edges, cnt, side="right") - 1, 0, len(edges) - 2)
        centers = [np.median(cnt[which == b]) for b in range(len(edges) - 1) if (which == b).any()]
        means = [tau[which == b].mean() for b in range(len(edges) - 1) if (which == b).any()]
        sds = [tau[which == b].std() for b in range(len(edges) - 1) if (which == b).any()]
        ax.errorbar(centers, means, yerr=sds, color="tab:red", marker="o", label="group mean ± sd")
        ax.set_xscale("log")
        ax.set_xlabel("training interactions (all domains)")
        ax.set_ylabel("learned temperature τ_i")
        rho = float(np.mean(per_seed[ds]))
        ax.set_title(f"{ds}: Spearman ρ = {rho:.2f}")
        ax.legend(fontsize=7)
        all_tau = np.concatenate(taus)
        all_cnt = np.concatenate(counts)
        stats[ds] = {
            "spearman": rho,
            "spearman_min_seed": float(np.min(per_seed[ds])),
            "pearson_log": float(pearsonr(np.log(all_cnt), all_tau).statistic),
            "tau_min": float(all_tau.min()), "tau_max": float(all_tau.max()),
            "tau_mean": float(all_tau.mean()), "tau_std": float(all_tau.std()),
            "distinct": int(len(np.unique(np.round(all_tau, 6)))), "users": int(len(all_tau)),
        }
        s = stats[ds]
        rows.append([ds, len(per_seed[ds]), s["users"], f"{s['tau_min']:.4f}", f"{s['tau_max']:.4f}", f"{s['tau_mean']:.4f} ± {s['tau_std']:.4f}",
                     f"{_num(s['spearman'], '.3f')} (min over seeds {_num(s['spearman_min_seed'], '.3f')})", _num(s["pearson_log"], ".3f")])
    fig.tight_layout()
    save_figure(fig, out / "temperature_vs_activity.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(per_seed), 3.2))
    for i, (ds, vals) in enumerate(per_seed.items()):
        ax.bar(i, np.mean(vals), color="tab:blue", alpha=0.6)
        ax.scatter([i] * len(vals), vals, color="black", s=12, zorder=3)
    ax.set_xticks(range(len(per_seed)), list(per_seed), rotation=20)
    ax.set_ylabel("Spearman(τ_i, activity)")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_title("temperature-activity\ncorrelation per seed", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "temperature_correlation.png", dpi=120)
    plt.close(fig)
    lines = [
        "Learned per-user temperatures after the contrastive autoencoder stage (`tau_ae` in each `uclr` run's "
        "`temperatures.npz`; the finetuned per-domain copies are stored beside them) against the user's number of "
        "training interactions over all domains. ![temperature vs activity](temperature_vs_activity.png) "
        "![correlation](temperature_correlation.png)",
        "",
        markdown_table(["dataset", "seeds", "users", "τ min", "τ max", "τ mean ± sd", "Spearman ρ(τ, activity)", "Pearson(τ, log activity)"], rows),
        *absent,
    ]
    return lines, stats


# ------------------------------------------------------------------------------ report
PAPER_DATA_NOTE = (
    "Paper numbers (%, mean over 5 seeds, on their data) are shown beside ours for orientation only: their Douban has "
    "Books/Movies/Music (ours has no Movies) and their Amazon is Books/Movies/Electronics (ours are Food-Kitchen and "
    "Beauty-Electronics), so only the Douban book and music and the Amazon Electronics cells have a counterpart."
)
"""Why most of our cells have no paper cell beside them (the report's opening)."""


def _schedule_note(schedule: dict[str, Any], seeds: int) -> str:
    """The training schedule of the report's runs (:data:`SCHEDULE` or :data:`QUICK`)."""
    train, ladder = schedule["train"], schedule["ladder"]
    return (f"**Schedule**: batch {train['batch_size']}, Adam lr {train['lr']:g} (paper: 1e-3, batch 2048; it gives no epoch cap or patience), "
            f"at most {train['epochs']} epochs with patience {train['patience']} on validation MRR@10 for every BPR-MF, NeuMF, LightGCN, "
            f"HeroGraph, GA-MTCDR and PGE training; autoencoder at most {ladder['ae_epochs']} epochs x {ladder['ae_passes']} passes over "
            f"the users, LoRA finetune at most {ladder['ft_epochs']} epochs per domain (CAT-ART's CAT and ART follow these two); "
            f"{seeds} seed(s) finished.")


def _uclr_settings(runs: list[RunResult]) -> list[str]:
    """UCLR's hyper-parameters as its first finished run's ``config.yaml`` records them (none without a run)."""
    p = runs[0].config.get("model_params") if runs else None
    if not p:
        return []
    return [f"UCLR settings (its runs' config): embedding size {p['dim']}, MLP {p['hidden']}, mask ratio {p['mask_ratio']:g} "
            f"(`mask_mode={p['mask_mode']}`), alpha {p['alpha']:g}, τ in [{p['tau_min']:g}, {p['tau_max']:g}], reg {p['reg']:g}, "
            f"LoRA rank {p['lora_rank']}.", ""]


def _num(value: float, spec: str) -> str:
    """``value`` formatted by ``spec``; "–" for NaN (a t-test with fewer than two paired seeds)."""
    return "–" if np.isnan(value) else format(value, spec)


def _not_run(datasets: list[str], by: dict, models: Sequence[str], what: str) -> list[str]:
    """A line naming the datasets with no finished run of ``models`` (so their table is absent); none when all have one."""
    absent = [ds for ds in datasets if not any(by.get((ds, m)) for m in models)]
    return [f"No finished {what} run yet on: {', '.join(absent)} (no table).", ""] if absent else []


def write_report(out: Path, results: list[RunResult], datasets: list[str], schedule: dict[str, Any], quick: bool,
                 failed: Sequence[str] = (), coverage: Sequence[str] = ()) -> Path:
    """``report.md`` and ``summary.json`` of ``results``, ``coverage`` (:func:`coverage_section`) after the title."""
    by = _by(results, datasets)
    unrun = [ds for ds in datasets if not any(by.get((ds, m)) for m in [*MODELS, *LIGHTGCN_BACKBONE])]
    lines = [
        "# UCLR reproduction (Yang et al., WWW 2024): Tables 2-5",
        "",
        *coverage,
        *([f"**No finished run at all on: {', '.join(unrun)}**; these datasets are absent from Tables 2-5 below.", ""] if unrun else []),
        *(["**QUICK smoke run: the numbers are not meaningful.**", ""] if quick else []),
        "Leave-one-out per user per domain, 1 positive + 99 sampled in-domain negatives fixed by the seed, metrics @10 in %, "
        "mean ± std over seeds; early stopping on validation MRR@10, test reported.",
        "",
        PAPER_DATA_NOTE,
        "",
        _schedule_note(schedule, len({r.seed for r in results})),
        "",
        *_uclr_settings([r for r in results if r.model == "uclr"]),
        *failed_section(failed),
    ]
    stats_rows = []
    for ds in datasets:
        runs = next((runs for (d, _), runs in by.items() if d == ds), [])  # every model of a dataset has the same data
        if runs:
            st = runs[0].data_stats
            for dom, s in st["domains"].items():
                stats_rows.append([ds, dom, s["users"], s["items"], s["interactions"]])
    lines += ["## Data", "", markdown_table(["dataset", "domain", "users", "items", "interactions"], stats_rows)]

    checks: list[str] = []
    # ---------------------------------------------------------------- Table 2
    lines += ["## Table 2: baselines vs UCLR (test, %)", "", *_not_run(datasets, by, [*MODELS, *LIGHTGCN_BACKBONE], "Table 2")]
    ttest_rows = []
    for ds in datasets:
        doms = _domains(by, ds)
        if not doms:
            continue
        header = ["model", *[f"{d} {m}" for d in doms for m in METRICS], "mean MRR@10 over domains"]
        rows = []
        for model in [*BASELINES, *LIGHTGCN_BACKBONE, *CROSS_DOMAIN, "pge", "uclr"]:
            runs = by.get((ds, model), [])
            if runs:
                rows.append([model, *[_fmt(_metric(runs, d, m)) for d in doms for m in METRICS], _fmt(_domain_mean(runs, doms))])
        lines += [f"### {ds}", "", markdown_table(header, rows)]
        missing = [m for m in MODELS if not by.get((ds, m))]
        if missing:
            lines += [f"No finished run in this reproduction for: {', '.join(missing)} (they are absent from every comparison below).", ""]
        paper_rows, lower = [], []
        for d in doms:
            for m in [*BASELINES, *CROSS_DOMAIN, "uclr"]:
                paper = PAPER_TABLE2.get((ds, d), {}).get(m)
                if paper is None:
                    continue
                ours = [_metric(by.get((ds, m), []), d, metric) for metric in METRICS]
                if ours[0][2] == 0:
                    paper_rows.append([m, d, "not run", _paper(PAPER_TABLE2, ds, d, m), "–"])
                    continue
                gap = 100 * ours[0][0] - paper[0]
                paper_rows.append([m, d, " / ".join(f"{100 * o[0]:.2f}" for o in ours), _paper(PAPER_TABLE2, ds, d, m), f"{gap:+.2f}"])
                if gap < 0:
                    lower.append(f"{m} on {d} ({gap:+.2f})")
        if paper_rows:
            lines += ["Ours beside the paper (Table 2, MRR / HR / NDCG @10, %, our mean over seeds; Δ = our MRR@10 minus the paper's):", "",
                      markdown_table(["model", "domain", "ours", "paper", "Δ MRR@10"], paper_rows),
                      f"Ours are **lower** than the paper's for: {', '.join(lower)}." if lower else "Ours are at or above the paper's in every row.", ""]
        for d in doms:
            best = _best_baseline(by, ds, d)
            if best is None or not by.get((ds, "uclr")):
                continue
            b = _metric(by[(ds, best)], d, "MRR@10")[0]
            t, p = paired_ttest(by[(ds, "uclr")], by[(ds, best)], d, "MRR@10")
            u = _metric(by[(ds, "uclr")], d, "MRR@10")[0]
            ttest_rows.append([ds, d, best, f"{100 * b:.2f}", f"{100 * u:.2f}", f"{100 * (u - b):+.2f}", _num(t, ".2f"), _num(p, ".4f")])
            checks.append(f"- {ds} / {d}: UCLR MRR@10 {100 * u:.2f} vs the best baseline ({best}) {100 * b:.2f} -> "
                          f"{'beats' if u > b else 'DOES NOT beat'} it")
        for ref in ("pge", "bprmf"):
            if by.get((ds, ref)) and by.get((ds, "uclr")):
                a, b = _domain_mean(by[(ds, "uclr")], doms)[0], _domain_mean(by[(ds, ref)], doms)[0]
                checks.append(f"- {ds}: UCLR mean MRR@10 {100 * a:.2f} vs {ref} {100 * b:.2f} -> {'beats' if a > b else 'DOES NOT beat'} {ref}")
    lines += [
        "### Paired t-test: UCLR vs the best baseline per domain (MRR@10, paired by seed)",
        "",
        "Best baseline = highest mean test MRR@10 among the finished single-domain (Pop, ItemKNN, BPR-MF, NeuMF, LightGCN), "
        "multi-target (HeroGraph, GA-MTCDR, CAT-ART) and PGE runs; t and p are – with fewer than two seeds of both.",
        "",
        markdown_table(["dataset", "domain", "best baseline", "baseline", "UCLR", "Δ", "t", "p"], ttest_rows),
    ]

    lines += classics_section(out, by, datasets)
    choice_lines, choices = choices_section(out, datasets)
    lines += choice_lines

    # ---------------------------------------------------------------- Table 3
    lines += [
        f"## Table 3: users with {LOW_BUCKET} training interactions in the domain (test, %)",
        "",
        "The evaluator's activity bucket `1-2` (training interactions of the user in the evaluated domain). The Amazon "
        "sets keep only users with >= 5 interactions per domain, so after leave-one-out no test user has fewer than 3 "
        "training interactions there: afk and abe have no such users and the `3-5` bucket (the least active users they "
        "have) is shown instead.",
        "",
        *_not_run(datasets, by, [*BASELINES, *LADDER], "Table 3"),
    ]
    for ds in datasets:
        doms = _domains(by, ds)
        shown = [m for m in [*BASELINES, *LADDER] if by.get((ds, m))]
        if not doms or not shown:
            continue
        first = by[(ds, shown[0])]  # every model of a dataset has the same test users
        bucket = LOW_BUCKET if any(_metric(first, d, "MRR@10", LOW_BUCKET)[2] for d in doms) else "3-5"
        header = ["model", *[f"{d} {m}" for d in doms for m in METRICS], "mean MRR@10"]
        rows = []
        n_rows = {d: _metric(first, d, "n", bucket)[0] for d in doms}
        for model in shown:
            runs = by[(ds, model)]
            rows.append([model, *[_fmt(_metric(runs, d, m, bucket)) for d in doms for m in METRICS], _fmt(_domain_mean(runs, doms, bucket=bucket))])
        lines += [f"### {ds} (bucket `{bucket}`; test users per domain: " + ", ".join(f"{d} {0 if not np.isfinite(n) else int(n)}" for d, n in n_rows.items()) + ")", "", markdown_table(header, rows)]
        for ref in ("pge", "bprmf"):
            if by.get((ds, ref)) and by.get((ds, "uclr")):
                a, b = _domain_mean(by[(ds, "uclr")], doms, bucket=bucket)[0], _domain_mean(by[(ds, ref)], doms, bucket=bucket)[0]
                checks.append(f"- {ds} bucket {bucket}: UCLR mean MRR@10 {100 * a:.2f} vs {ref} {100 * b:.2f} -> {'beats' if a > b else 'DOES NOT beat'} {ref}")
    lines += [f"Paper Table 3 (Amazon Electronics, 1-2 interactions), UCLR MRR / HR / NDCG @10: {' / '.join(f'{v:.2f}' for v in PAPER_TABLE3_ELEC_UCLR)}.", ""]

    # ---------------------------------------------------------------- Tables 4-5
    lines += ["## Tables 4-5: ablation ladder (test, %)", "", "Δ = change of the mean MRR@10 over domains against the rung above; a negative Δ means the step did not help "
              "(– where the rung above has no finished run).", "",
              *_not_run(datasets, by, LADDER, "ladder")]
    for ds in datasets:
        doms = _domains(by, ds)
        if not doms or not any(by.get((ds, m)) for m in LADDER):
            continue
        rows, prev = [], None  # prev: the mean of the rung above when it has finished runs
        for model in LADDER:
            runs = by.get((ds, model), [])
            if not runs:
                prev = None
                continue
            mean = _domain_mean(runs, doms)[0]
            delta = "" if model == LADDER[0] else "–" if prev is None else f"{100 * (mean - prev):+.2f}"
            if prev is not None:
                checks.append(f"- {ds}: step to {model}: Δ mean MRR@10 {100 * (mean - prev):+.2f} ({'helps' if mean > prev else 'does NOT help'})")
            prev = mean
            paper = "; ".join(f"{d}: {_paper(PAPER_ABLATION, ds, d, model)}" for d in doms if _paper(PAPER_ABLATION, ds, d, model))
            rows.append([model, *[_fmt(_metric(runs, d, m)) for d in doms for m in METRICS], _fmt(_domain_mean(runs, doms)), delta, paper])
        lines += [f"### {ds}", "", markdown_table(["model", *[f"{d} {m}" for d in doms for m in METRICS], "mean MRR@10", "Δ", "paper (MRR / HR / NDCG)"], rows)]

    # ---------------------------------------------------------------- temperatures
    lines += ["## Learned temperatures vs user activity (section 3.4, Figure 5)", ""]
    temp_lines, tstats = temperature_analysis(out, datasets)
    lines += temp_lines
    for ds, s in tstats.items():
        checks.append(f"- {ds}: temperatures differ across users ({s['distinct']} distinct values, sd {s['tau_std']:.4f}) and "
                      f"Spearman ρ with activity = {_num(s['spearman'], '.3f')} ({'positive: more active users get larger τ, as section 3.4 argues' if s['spearman'] > 0 else 'not positive'})")

    # ---------------------------------------------------------------- timing and checks
    trows = []
    for ds in datasets:
        for model in [*MODELS, *LIGHTGCN_BACKBONE]:
            runs = by.get((ds, model), [])
            if runs:
                trows.append([ds, model, f"{np.mean([r.timing.get('train_s', 0.0) for r in runs]):.1f}", f"{np.mean([r.timing.get('eval_s', 0.0) for r in runs]):.1f}"])
    lines += _epochs_section(results, datasets)
    lines += ["## Checks (computed from the numbers above)", "",
              "Each compares means over the finished seeds; the paired t-tests above say which differences are significant.", "",
              *(checks or ["None: no finished `uclr` run beside a reference."]), "",
              "## Training time (s, mean over seeds; the ladder rungs after `pge` reuse its cached pretraining)", "",
              markdown_table(["dataset", "model", "train s", "eval s"], trows),
              f"Total over the {len(results)} finished runs: {sum(r.timing.get('train_s', 0.0) + r.timing.get('eval_s', 0.0) for r in results) / 60:.1f} min "
              "of training + evaluation (the wall-clock times their results.json record)."]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    atomic_write_text(out / "summary.json", json.dumps({"checks": checks, "temperatures": tstats, **({"choices": choices} if choices else {})}, indent=2) + "\n")
    return path


STAGE_CAPS = {"ae": "ae_epochs", "finetune": "ft_epochs", "cat": "cat_epochs", "art": "art_epochs"}
"""The ``model_params`` key that caps a training stage (by the stage name before ``:`` or ``-``); every other stage
(PGE, a single-domain model's scope, CAT-ART's MF) is capped by ``train.epochs``."""


def stage_epochs(run: RunResult) -> list[tuple[str, int, int, int]]:
    """``(stage, best epoch, epochs run, cap)`` of every trained stage of ``run``, from its history: a model with
    one trainer per scope records its best epoch; a staged model (UCLR's ladder, CAT-ART) records each epoch's
    stage, and the best is the first epoch with the highest validation ``train.metric`` within the stage (a LoRA
    finetune's epoch 0 is its starting point: best epoch 0 means finetuning never beat it)."""
    metric = run.config.get("train", {}).get("metric", "MRR@10")
    params = run.config.get("model_params") or {}
    found = []
    for entry in run.history or []:
        epochs = entry.get("epochs") or []
        stages = list(dict.fromkeys(e.get("stage") for e in epochs))
        for stage in stages:
            mine = [e for e in epochs if e.get("stage") == stage]
            if stage is None:
                name, best = entry.get("scope", "joint"), int(entry.get("best_epoch", 0))
            else:
                scores = [e.get("valid", {}).get(metric, float("-inf")) for e in mine]
                name, best = stage, int(mine[int(np.argmax(scores))]["epoch"])  # a finetune's epoch 0 is its starting point
            key = STAGE_CAPS.get(str(stage).replace("-", ":").split(":")[0]) if stage is not None else None
            cap = int(params.get(key, run.config["train"]["epochs"]) if key else run.config["train"]["epochs"])
            found.append((name, best, max(int(e.get("epoch", 0)) for e in mine) if stage is not None else len(mine), cap))
    return found


def _epochs_section(results: list[RunResult], datasets: list[str]) -> list[str]:
    """Each trained run's best epoch against its cap, per stage, and how many stages stopped at their cap."""
    rows, at_cap, total = [], 0, 0
    by = _by(results, datasets)
    for ds in datasets:
        for r in sorted((r for (d, _), runs in by.items() if d == ds for r in runs), key=lambda r: (r.model, r.seed)):
            stages = stage_epochs(r)
            if not stages:
                continue
            total += len(stages)
            at_cap += sum(best == cap for _, best, _, cap in stages)
            rows.append([ds, r.model, r.seed, ", ".join(f"{name} {best}/{ran}/{cap}" for name, best, ran, cap in stages)])
    if not rows:
        return []
    return ["## Training length: best epoch / epochs run / cap, per stage", "",
            f"{at_cap} of the {total} trained stages had their best epoch at the cap (not converged there); the others stopped "
            "early on validation MRR@10 (patience) or ran to the cap past their best epoch.", "",
            markdown_table(["dataset", "model", "seed", "stage best/run/cap"], rows)]


def _best_baseline(by: dict, ds: str, domain: str) -> str | None:
    """The Table 2 baseline (single-domain, multi-target CDR or PGE) with the highest mean test MRR@10
    in ``domain`` among the finished runs; None when there is none."""
    base = {m: _metric(by[(ds, m)], domain, "MRR@10")[0] for m in [*BASELINES, *CROSS_DOMAIN, "pge"] if by.get((ds, m))}
    return max(base, key=lambda m: base[m]) if base else None


def collect_classics(out: Path, ds: str) -> dict[tuple[str, str, str], list[RunResult]]:
    """The finished runs of the ``classics`` section on ``ds`` by ``(model, source, target)`` (as their
    ``setting`` records them)."""
    found: dict[tuple[str, str, str], list[RunResult]] = {}
    for path in sorted((Path(out) / "runs" / ds / "classics").glob("*/*/seed*/results.json")):
        r = RunResult.read(path)
        found.setdefault((r.model, r.setting["source"], r.setting["target"]), []).append(r)
    return found


def classics_section(out: Path, by: dict, datasets: list[str]) -> list[str]:
    """Report lines of ``--section classics`` (none without a finished run): per dataset and target
    domain, UCLR and the best Table 2 baseline beside every classic evaluated there, with a paired
    t-test (by seed) of UCLR's test MRR@10 against each."""
    tables = []
    for ds in datasets:
        classics = collect_classics(out, ds)
        targets = list(dict.fromkeys(d for runs in classics.values() for r in runs for d in r.setting["evaluated"]))
        uclr = by.get((ds, "uclr"), [])
        for d in targets:
            best = _best_baseline(by, ds, d)
            rows = [[name, "Table 2 run", *[_fmt(_metric(by[(ds, name)], d, m)) for m in METRICS], "", "", ""]
                    for name in ("uclr", best) if name is not None and by.get((ds, name))]
            for (model, source, target), runs in classics.items():
                if d not in runs[0].setting["evaluated"]:
                    continue
                trained = f"{source} -> {target}" if registry.get(model).cls.target_only else f"{source} + {target}"
                delta, t, p = "", "", ""
                if uclr:
                    delta = f"{100 * (_metric(uclr, d, 'MRR@10')[0] - _metric(runs, d, 'MRR@10')[0]):+.2f}"
                    t_stat, p_value = paired_ttest(uclr, runs, d, "MRR@10")
                    t, p = _num(t_stat, ".2f"), _num(p_value, ".4f")
                rows.append([model, trained, *[_fmt(_metric(runs, d, m)) for m in METRICS], delta, t, p])
            tables += [f"### {ds}: target {d}", "", markdown_table(["model", "trained on", *METRICS, "Δ MRR@10 (UCLR − model)", "t", "p"], rows)]
    if not tables:
        return []
    return ["## The two-domain classics beside UCLR (`--section classics`; test, %)", "",
            "Each classic trains on two domains alone (`data.keep_domains`): a dual-target one (a + b) is scored on both, a "
            "single-target one (source -> target) on its target only. UCLR and the best Table 2 baseline (highest mean test "
            "MRR@10 among the single-domain, multi-target and PGE runs) are the main section's runs over all of the dataset's "
            "domains; on ML-1M genre (3 domains) a pair's data set is filtered and split on its own, so its test users and "
            "negatives in a domain may differ from those of the three-domain runs. Δ and the paired t-test (two-sided, by seed) "
            "compare UCLR's test MRR@10 with each classic's.", "", *tables]


def collect_choices(out: Path, datasets: list[str]) -> dict[tuple[str, str], list[RunResult]]:
    """The finished runs of ``--section choices`` by ``(dataset, variant folder)`` (those of
    :func:`choice_variants` only), each with its validation metrics in place of its test ones (it has none:
    ``eval.test=false``), so the tables' helpers read validation and a choice never reads test."""
    found: dict[tuple[str, str], list[RunResult]] = {}
    for ds in datasets:
        for name in choice_variants():
            for path in sorted((Path(out) / "runs" / ds / "choices" / name).glob("seed*/results.json")):
                r = RunResult.read(path)
                found.setdefault((ds, name), []).append(dataclasses.replace(r, metrics=r.valid_metrics, buckets={}))
    return found


def choices_section(out: Path, datasets: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Report lines of ``--section choices`` and their summary (none without a finished run): per choice of
    :data:`CHOICES`, validation MRR@10 of every value per dataset and domain, the mean over domains and over
    the datasets where every value has a finished run, the winner by that mean and whether the model's default
    is it; then the learned temperatures of each contrastive view."""
    by = collect_choices(out, datasets)
    if not by:
        return [], {}
    defaults = choice_defaults()
    seeds = sorted({r.seed for runs in by.values() for r in runs})
    lines = ["## Open choices of UCLR on validation (`--section choices`; issue #32; validation MRR@10, %)", "",
             "Each choice is made on the validation split alone: every run of this section is `uclr` at the schedule above with "
             "`eval.test=false`, so the test split is not even scored. One value of a choice is varied at a time, the other "
             f"staying at the model's default (`UCLRParams`: {', '.join(f'`{n}={v}`' for n, v in defaults.items())}); the "
             f"`element+dropout` view drops the encoder's hidden units at rate {CHOICE_ENCODER_DROPOUT:g} (`encoder_dropout`). "
             "Per dataset: the mean over domains; the winner has the highest mean of those over the datasets where every value "
             f"has a finished run. Seed(s) {', '.join(map(str, seeds))}"
             + (": with one seed a difference of a few tenths may be seed noise (the main tables' ± give UCLR's spread over seeds)."
                if len(seeds) == 1 else ", mean over seeds."), ""]
    summary: dict[str, Any] = {}
    for choice, values in CHOICES.items():
        names = {value: _variant_of(choice, value) for value in values}
        held = ", ".join(f"`{n}={v}`" for n, v in defaults.items() if n != choice)
        rows, complete = [], [ds for ds in datasets if all(by.get((ds, names[v])) for v in values)]
        means = {v: [] for v in values}
        for ds in datasets:
            doms = _domains({key: runs for key, runs in by.items() if key[0] == ds}, ds)
            if not doms:
                continue
            rows += [[f"{ds} {d}", *[_fmt(_metric(by.get((ds, names[v]), []), d, "MRR@10")) for v in values]] for d in doms]
            per_value = {v: _domain_mean(by.get((ds, names[v]), []), doms) for v in values}
            rows.append([f"**{ds}: mean over domains**", *[_fmt(per_value[v]) for v in values]])
            if ds in complete:
                for v in values:
                    means[v].append(per_value[v][0])
        header = ["dataset / domain", *[f"`{v}`" + (" (default)" if v == defaults[choice] else "") for v in values]]
        if complete:
            rows.append([f"**mean over {', '.join(complete)}**", *[f"**{100 * np.mean(means[v]):.2f}**" for v in values]])
        winner = max(values, key=lambda v: np.mean(means[v])) if complete else None
        lines += [f"### `{choice}` (at {held})", "", markdown_table(header, rows), *_choice_verdict(choice, values, means, winner, [ds for ds in datasets if ds not in complete]), ""]
        summary[choice] = {"default": defaults[choice], "winner": winner, "datasets": complete,
                           "mean_valid_mrr10": {v: float(np.mean(means[v])) for v in values} if complete else {}}
    lines += _choice_temperatures(out, datasets, by)
    runs = [r for rs in by.values() for r in rs]
    lines += [f"The section's {len(runs)} finished runs took {sum(r.timing.get('train_s', 0.0) + r.timing.get('eval_s', 0.0) for r in runs) / 60:.1f} min "
              "of training + evaluation (their PGE pretraining is the main plan's cached one where it was trained first).", ""]
    return lines, summary


def _choice_verdict(choice: str, values: Sequence[str], means: dict[str, list[float]], winner: str | None,
                    absent: list[str]) -> list[str]:
    """The ``winner`` of ``choice`` (None: no dataset has a finished run of every value) with each value's
    mean validation MRR@10 over the datasets of ``means`` (provisional while ``absent`` ones lack a run), and
    whether the model's default is it ("the default should change to ..." when not)."""
    if winner is None:
        return [f"No dataset has a finished run of every `{choice}` yet: no winner."]
    n = len(means[winner])
    wins = sum(means[winner][k] >= max(means[v][k] for v in values) for k in range(n))
    default = choice_defaults()[choice]
    lines = [f"**Validation winner: `{choice}={winner}`** (mean validation MRR@10 over {n} dataset(s): "
             + ", ".join(f"{v} {100 * np.mean(means[v]):.2f}" for v in values) + f"; best on {wins} of {n})."]
    if absent:
        lines.append(f"Provisional: not every value has a finished run on {', '.join(absent)}.")
    if winner == default:
        lines.append(f"The model's current default (`UCLRParams.{choice}={default}`) is the validation winner.")
    else:
        lines.append(f"The model's current default (`UCLRParams.{choice}={default}`) is not the validation winner: "
                     f"**the default should change to `{choice}={winner}`**.")
    return [" ".join(lines)]


def _choice_temperatures(out: Path, datasets: list[str], by: dict[tuple[str, str], list[RunResult]]) -> list[str]:
    """Per dataset and contrastive view of ``--section choices``: the spread of the learned per-user
    temperatures and their Spearman correlation with activity (mean over seeds), from each run's ``temperatures.npz``."""
    rows = []
    for ds in datasets:
        for mode in CHOICES["mask_mode"]:
            name = _variant_of("mask_mode", mode)
            found = [path for r in by.get((ds, name), []) if (path := Path(out) / "runs" / ds / "choices" / name / f"seed{r.seed}" / "temperatures.npz").exists()]
            if not found:
                continue
            loaded = [active_temperatures(path) for path in found]
            rho = np.mean([activity_spearman(tau, cnt) for tau, cnt in loaded])
            tau = np.concatenate([t for t, _ in loaded])
            rows.append([ds, f"`{mode}`", len(found), len(tau), f"{tau.mean():.4f} ± {tau.std():.4f}", f"{tau.min():.4f} - {tau.max():.4f}", _num(float(rho), ".3f")])
    if not rows:
        return []
    return ["### Learned temperatures per contrastive view", "",
            "Per-user temperatures after the autoencoder stage (`tau_ae`) of each view's run: their spread (sd) and Spearman ρ "
            "with the user's training interactions over all domains (mean over seeds; section 3.4 expects larger τ for more "
            "active users).", "",
            markdown_table(["dataset", "mask_mode", "seeds", "users", "τ mean ± sd", "τ range", "Spearman ρ(τ, activity)"], rows)]


def _matches(r: RunResult, ds: str) -> bool:
    cfg_data = r.config.get("data", {})
    spec = DATASETS[ds]
    return all(cfg_data.get(k) == v for k, v in spec.items())


def _domains(by: dict, ds: str) -> list[str]:
    for (d, _m), runs in by.items():
        if d == ds and runs:
            return [k for k in runs[0].metrics if k != "overall"]
    return []


def collect(out: Path, datasets: list[str] | None = None) -> list[RunResult]:
    """Every finished ``results.json`` under ``out/runs`` (for a report of a partial run)."""
    datasets = datasets or list(DATASETS)
    return [RunResult.read(p) for ds in datasets for p in sorted((Path(out) / "runs" / ds).glob("*/seed*/results.json"))]


def reproduce(out: Path, *, data_dir: Path | None = None, quick: bool = False, seeds: int | None = None, device: str = "auto",
              datasets: list[str] | None = None, sections: Sequence[str] = DEFAULT_SECTIONS) -> Path:
    """Run the runs of ``sections`` (default: Tables 2-5 and the temperature analysis); returns ``out/report.md``."""
    out = Path(out)
    for section in sections:
        require(section in SECTIONS, f"--section: expected one of {sorted(SECTIONS)}, got {section!r}")
    schedule = QUICK if quick else SCHEDULE
    datasets = datasets or (QUICK["datasets"] if quick else list(DATASETS))
    for ds in datasets:
        require(ds in DATASETS, f"unknown UCLR dataset {ds!r}; expected one of {sorted(DATASETS)}")
    seed_list = list(range(seeds or schedule["seeds"]))
    # every dataset must load before anything is written
    domains = {ds: load_dataset(_config("uclr", ds, 0, schedule, data_dir, "cpu").data).domains for ds in datasets}
    runs = plan_runs(out, datasets, seed_list, schedule, data_dir, device) if "main" in sections else []
    if "classics" in sections:
        runs += plan_classics(out, domains, seed_list, schedule, data_dir, device)
    if "choices" in sections:
        runs += plan_choices(out, datasets, seed_list, schedule, data_dir, device)
    return run_plan(Invocation("uclr", out, data_dir, quick, seeds, device, () if tuple(sections) == DEFAULT_SECTIONS else tuple(sections)), runs,
                    lambda failed: report(out, quick=quick, seeds=seeds, device=device, datasets=datasets, failed=failed, sections=sections))


REPORT_OUT = Path("docs/reproductions/uclr")
"""The ``--out`` the report's continue command names: where the committed runs live, not the folder it was
written in, so the report is the same bytes wherever it is rebuilt."""


def recorded_sections(out: Path) -> tuple[str, ...]:
    """The ``--section`` values of the last ``cdrec reproduce uclr`` in ``out`` (``reproduce.json``); the default plan's when none."""
    path = Path(out) / OPTIONS_FILE
    saved = json.loads(path.read_text()).get("sections") if path.exists() else None
    return tuple(saved) if saved else DEFAULT_SECTIONS


def planned_dirs(out: Path, datasets: list[str], seeds: list[int], sections: Sequence[str], results: list[RunResult]) -> list[Path]:
    """The run folders of the plan of ``sections``, without loading any data set: the classics' pairs come from
    the domains of each dataset's finished runs (a dataset with none has no classics listed)."""
    planned = [run.run_dir for run in plan_runs(out, datasets, seeds, SCHEDULE, None, "cpu")] if "main" in sections else []
    if "classics" in sections:
        by = _by(results, datasets)
        domains = {ds: _domains(by, ds) for ds in datasets if _domains(by, ds)}
        planned += [run.run_dir for run in plan_classics(out, domains, seeds, SCHEDULE, None, "cpu")]
    if "choices" in sections:
        planned += [run.run_dir for run in plan_choices(out, datasets, seeds, SCHEDULE, None, "cpu")]
    return planned


def report(out: Path, *, quick: bool = False, seeds: int | None = None, device: str = "auto", datasets: list[str] | None = None,
           failed: Sequence[str] = (), sections: Sequence[str] | None = None) -> Path:
    """``report.md``, ``summary.json`` and the temperature plots from the runs in ``out``
    (``cdrec reproduce uclr --report-only``), opening with which runs of the plan (the recorded options and
    ``sections``, by default those of ``reproduce.json``) are finished."""
    out = Path(out)
    datasets = datasets or (QUICK["datasets"] if quick else list(DATASETS))
    sections = tuple(sections) if sections is not None else recorded_sections(out)
    schedule = QUICK if quick else SCHEDULE
    results = collect(out, datasets)
    planned = planned_dirs(out, datasets, list(range(seeds or schedule["seeds"])), sections, results)
    resume = Invocation("uclr", REPORT_OUT, None, quick, seeds, device, () if sections == DEFAULT_SECTIONS else sections)
    return write_report(out, results, datasets, schedule, quick, failed, coverage_section(out, planned, resume.command(), depth=4))


HEADLINE_DATA = {"douban": ("Douban", "the paper's Douban also has Movies"),
                 "abe": ("Amazon Beauty-Electronics", "the paper's Amazon is Books-Movies-Electronics")}
"""How the headline names the datasets of :data:`PAPER_TABLE2`'s cells, and how they differ from the paper's."""


def headline(out: Path) -> list[HeadlineRow]:
    """UCLR's test MRR@10 (%) in every (dataset, domain) with a :data:`PAPER_TABLE2` cell, from the finished
    ``uclr`` runs in ``out`` (``ours`` None where there is none); the note gives their schedule and how the data differ."""
    rows = []
    for (ds, domain), cells in PAPER_TABLE2.items():
        runs = _by(collect(out, [ds]), [ds]).get((ds, "uclr"), [])
        mean, std, n = _metric(runs, domain, "MRR@10")
        train = runs[0].config["train"] if runs else SCHEDULE["train"]
        name, differs = HEADLINE_DATA[ds]
        rows.append(HeadlineRow("UCLR (WWW 2024)", f"{name}: {domain}", "test MRR@10 (%)", cells["uclr"][0], (100 * mean, 100 * std, n) if n else None,
                                digits=2, note=f"Adam lr {train['lr']:g} ({'the paper' + chr(39) + 's' if train['lr'] == 1e-3 else 'paper 1e-3'}), ≤{train['epochs']} epochs, patience {train['patience']}; {differs}"))
    return rows
