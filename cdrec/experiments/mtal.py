"""``cdrec reproduce mtal``: AAE + MTAL (paper 001, Table 4 layout) and DMTCDR (paper 002) on real data.

What runs (each run is one ``cdrec run`` config through :func:`cdrec.experiments.pipeline.run_config`,
writing ``runs/<dataset>/<column>/<row>/seed<k>/results.json``; finished runs are reused, so the
command resumes):

1. ML-100K, Table 4 layout: explicit / implicit x user-aligned uniform K=8 (``uniform-items:8``),
   user-aligned genre K=18 (``genre-random``, each movie to one of its genres drawn by the seed, the
   ``unknown`` genre dropped) and item-aligned uniform K=8 (``uniform-users:8``); rows Joint / Alone
   (Base, MF, MLP, NCF, AE) and MTAL (AAE), with and without side information (``_s`` rows), and
   ``mtal-aae-heldout`` / ``mtal-aae-heldout_s`` (w and eta fitted on half of each organization's validation
   users, see ``HELDOUT``).
2. Ablations on ML-100K user-aligned: eta in {0.1, 0.3, 1.0, optimize}, optimized w; partial alignment
   curve; cold-start curve; Laplace DP and interval privacy.
3. ML-1M user-aligned 18 genres (paper 002 Table 2) and Douban book + music (paper 002, two of its
   three domains), explicit and implicit.
4. ML-1M in the other four Table 4 columns (MTAL, held-out MTAL and Alone rows): paper 001's Table 4
   (captioned ML100K) holds ML-1M's results and its Table 1 (captioned ML1M) ML-100K's (:func:`caption_swap`),
   so these runs are the ones Table 4 is compared with.
5. Paper 002 Table 5, last: its MTAL rows on ML-1M and Douban with Laplace DP and interval privacy on the
   residuals at the authors' strengths (:data:`PRIVACY_PAPER_SETTING`); the report also sets each organization's
   cells of the paper 002 runs beside its Tables 4 and 9.

``--section privacy`` (:data:`SECTIONS`, not in the default plan) sweeps each mechanism's strength on ML-100K
explicit/user/uniform, then ML-1M explicit/user/genre (:data:`PRIVACY_SWEEP`), for ``privacy.png``: test RMSE
against the strength beside the best Alone row. It is a section rather than more of the default plan because it
answers a question the papers do not ask and costs about 1.5 CPU-hours per seed at today's speed (8 ML-100K runs of
5 rounds, about 3 minutes each; 6 ML-1M runs, about 12 minutes each), against the 2.5 the whole default plan aims at;
its reference rows (MTAL without privacy, Alone, the authors' strength) are runs of the default plan, shared.

Runs of one column that differ only in eta, w, ``assist_fit`` or the number of rounds (``mtal-aae``, its held-out
row, the eta / w ablations) begin with the same round-1 local fits; the recipe trains each of those once and the
later runs take its parameters (:mod:`cdrec.federated.shared_fits`, bit-identical; ``timing.reused_fits`` of a
run's ``results.json`` counts them).

The CPU schedule (2 shared cores) says where it departs from the papers in the report: ``SCHEDULES["cpu"]``
versus the papers' ``SCHEDULES["paper"]`` (20 local epochs, 10 rounds, 4 seeds).
"""

from __future__ import annotations

import functools
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from cdrec.config import RunConfig, load_config
from cdrec.errors import CdrecError, require
from cdrec.experiments.headline import HeadlineRow
from cdrec.experiments.runner import OPTIONS_FILE, Invocation, PlannedRun, coverage_section, failed_section, run_plan
from cdrec.federated.shared_fits import sharing_fits
from cdrec.results.schema import RunResult, atomic_write_text
from cdrec.results.tables import markdown_table
from cdrec.results.plots import save_figure

ML100K_GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
                 "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]

COLUMNS = {  # name -> (feedback, alignment, partition, domains builder)
    "explicit/user/uniform": ("explicit", "user", "uniform", "uniform-items:8"),
    "explicit/user/genre": ("explicit", "user", "genre", "genre-random"),
    "explicit/item/uniform": ("explicit", "item", "uniform", "uniform-users:8"),
    "implicit/user/uniform": ("implicit", "user", "uniform", "uniform-items:8"),
    "implicit/user/genre": ("implicit", "user", "genre", "genre-random"),
    "implicit/item/uniform": ("implicit", "item", "uniform", "uniform-users:8"),
}
COLS = list(COLUMNS)

# Paper 001 Table 4 (captioned "ML100K", holding ML-1M's results) and Table 1 (captioned "ML1M", holding ML-100K's),
# columns in COLS order; None = unreadable in the text. The report sets each beside the dataset it holds (caption_swap).
PAPER_T4 = {
    ("joint", "base"): [0.980, 0.980, 1.033, 0.808, 0.808, 0.620], ("joint", "mf"): [0.915, 0.915, 0.914, 0.831, 0.831, 0.653],
    ("joint", "mf_s"): [0.910, 0.910, 0.909, 0.832, 0.832, 0.720], ("joint", "mlp"): [0.899, 0.899, 0.908, 0.835, 0.835, 0.730],
    ("joint", "mlp_s"): [0.884, 0.884, 0.885, 0.832, 0.832, None], ("joint", "ncf"): [0.893, 0.893, 0.909, 0.832, 0.832, 0.727],
    ("joint", "ncf_s"): [0.883, 0.883, 0.881, 0.832, 0.832, 0.725], ("joint", "ae"): [0.881, 0.881, 0.873, 0.842, 0.842, 0.735],
    ("joint", "ae_s"): [0.874, 0.874, 0.870, 0.846, 0.846, 0.740],
    ("alone", "base"): [0.980, 0.980, 1.033, 0.807, 0.805, 0.619], ("alone", "mf"): [0.949, 1.060, 0.935, 0.809, 0.809, 0.657],
    ("alone", "mf_s"): [0.936, 0.934, 0.908, 0.819, 0.821, 0.711], ("alone", "mlp"): [0.932, 0.928, 0.918, 0.811, 0.811, 0.704],
    ("alone", "mlp_s"): [0.930, 0.924, 0.909, 0.812, 0.812, 0.704], ("alone", "ncf"): [0.931, 0.929, 0.921, 0.812, 0.811, 0.703],
    ("alone", "ncf_s"): [0.929, 0.923, 0.913, 0.812, 0.817, 0.702], ("alone", "ae"): [0.967, 1.159, 0.893, 0.833, 0.824, 0.731],
    ("alone", "ae_s"): [0.961, 1.059, 0.894, 0.833, 0.829, 0.732],
    ("mtal", "aae"): [0.878, 0.893, 0.834, 0.847, 0.845, 0.745], ("mtal", "aae_s"): [0.881, 0.897, 0.835, 0.844, 0.844, 0.743],
}
PAPER_T1 = {
    ("joint", "base"): [1.020, 1.020, 1.040, 0.744, 0.744, 0.623], ("joint", "mf"): [0.939, 0.939, 0.944, 0.768, 0.768, 0.681],
    ("joint", "mf_s"): [0.912, 0.912, 0.911, 0.784, 0.784, 0.696], ("joint", "mlp"): [0.937, 0.937, 0.921, 0.775, 0.775, 0.694],
    ("joint", "mlp_s"): [0.922, 0.922, 0.919, 0.771, 0.771, 0.698], ("joint", "ncf"): [0.937, 0.937, 0.913, 0.777, 0.777, 0.693],
    ("joint", "ncf_s"): [0.912, 0.912, 0.913, 0.774, 0.774, 0.693], ("joint", "ae"): [0.927, 0.927, 0.899, 0.788, 0.788, None],
    ("joint", "ae_s"): [0.926, 0.926, 0.898, 0.792, 0.792, None],
    ("alone", "base"): [1.020, 1.011, 1.040, 0.744, 0.748, 0.624], ("alone", "mf"): [1.007, 1.184, 1.037, 0.750, 0.755, 0.651],
    ("alone", "mf_s"): [0.986, 0.971, 0.975, 0.756, 0.770, 0.668], ("alone", "mlp"): [0.980, 0.970, 0.980, 0.744, 0.768, 0.669],
    ("alone", "mlp_s"): [0.974, 0.960, 0.978, 0.747, 0.768, 0.670], ("alone", "ncf"): [0.981, 0.974, 0.980, 0.747, 0.769, 0.670],
    ("alone", "ncf_s"): [0.972, 0.960, 0.977, 0.751, 0.768, 0.669], ("alone", "ae"): [1.076, 1.353, 1.094, 0.767, 0.777, 0.667],
    ("alone", "ae_s"): [1.041, 1.174, 1.057, 0.767, 0.780, 0.679],
    ("mtal", "aae"): [0.938, 0.945, 0.883, 0.789, 0.802, 0.706], ("mtal", "aae_s"): [0.940, 0.950, 0.884, 0.789, 0.801, 0.706],
}
# Paper 002 Table 2 (user-aligned; RMSE, NDCG@10) for ML-1M and Douban (3 domains there, 2 here).
PAPER_002 = {
    "ml-1m": {("joint", "base"): (0.981, 0.817), ("joint", "mf"): (0.917, 0.840), ("joint", "mlp"): (0.899, 0.847),
              ("joint", "ncf"): (0.904, 0.842), ("joint", "ae"): (0.879, 0.853), ("mtcdr", "mf"): (0.925, 0.832),
              ("mtcdr", "mlp"): (0.908, 0.841), ("mtcdr", "ncf"): (0.902, 0.841), ("alone", "base"): (0.981, 0.815),
              ("alone", "mf"): (1.060, 0.822), ("alone", "mlp"): (0.929, 0.838), ("alone", "ncf"): (0.931, 0.838),
              ("alone", "ae"): (1.158, 0.835), ("mtal", "aae"): (0.894, 0.850)},
    "douban": {("joint", "base"): (0.904, 0.769), ("joint", "mf"): (1.081, 0.851), ("joint", "mlp"): (0.911, 0.872),
               ("joint", "ncf"): (0.899, 0.872), ("joint", "ae"): (0.907, 0.869), ("mtcdr", "mf"): (0.955, 0.852),
               ("mtcdr", "mlp"): (0.905, 0.872), ("mtcdr", "ncf"): (0.898, 0.872), ("alone", "base"): (0.904, 0.769),
               ("alone", "mf"): (1.050, 0.856), ("alone", "mlp"): (0.901, 0.873), ("alone", "ncf"): (0.905, 0.873),
               ("alone", "ae"): (0.905, 0.869), ("mtal", "aae"): (0.857, 0.877)},
}
PAPER_ETA_ML1M = {"0.1": (0.911, 0.841), "0.3": (0.894, 0.847), "1.0": (0.889, 0.850), "optimize": (0.896, 0.829), "optimize w": (0.894, 0.850)}
PAPER_PRIVACY = {"ml-1m": {"alone": (0.929, 0.838), "dp": (0.900, 0.850), "ip": (0.899, 0.850)},
                 "douban": {"alone": (0.901, 0.873), "dp": (0.856, 0.875), "ip": (0.857, 0.875)}}
"""Paper 002 Table 5 (RMSE, NDCG@10); its Alone cells are Table 2's best Alone row (MLP on both)."""
PRIVACY_PAPER_SETTING = {"dp": 10.0, "ip": 10}
"""The strengths of Table 5, which the paper does not print: the authors' ``src/make.py`` (mode ``pl``) runs
``dp-10`` and ``ip-10`` at eta 0.3 with uniform w, i.e. ``dp(y, alpha=10)`` and ``ip(y, num_thresh=10)`` of their
privacy module; cdrec's defaults ``setting.privacy_alpha=10`` and ``setting.privacy_thresholds=10``."""
PRIVACY_OPTION = {"dp": "privacy_alpha", "ip": "privacy_thresholds"}
PRIVACY_LABEL = {"dp": "Laplace DP", "ip": "interval privacy"}
PRIVACY_PARAMETER = {"dp": "alpha", "ip": "thresholds"}
PRIVACY_SWEEP = {"ml-100k": {"dp": (100.0, 30.0, 10.0, 3.0, 1.0), "ip": (100, 30, 10, 3, 1)},
                 "ml-1m": {"dp": (30.0, 10.0, 3.0, 1.0), "ip": (30, 10, 3, 1)}}
"""``--section privacy``: the strengths per mechanism, weakest first (a smaller alpha, fewer thresholds: more noise)."""
PRIVACY_SWEEP_QUICK = {"ml-100k": {"dp": (10.0, 1.0), "ip": (10, 1)}}
SWEEP_COLUMN = {"ml-100k": "explicit/user/uniform", "ml-1m": "explicit/user/genre"}
"""The column each dataset's strength sweep runs in: the ablation column on ML-100K, paper 002's Table 5 column on ML-1M."""
SECTIONS = {
    "main": "Tables 1 and 4 of paper 001, Tables 2 and 5 of paper 002, the ablations (the default plan)",
    "privacy": "beyond the papers: MTAL test RMSE against the strength of Laplace DP and interval privacy on ML-100K "
               "explicit/user/uniform (5 rounds) and ML-1M explicit/user/genre, with privacy.png",
}
"""What ``cdrec reproduce mtal --section NAME`` runs; the report shows every section whose runs exist."""
DEFAULT_SECTIONS = ("main",)

# Paper 002 per-organization tables: Table 4 (ML-1M, 18 genres) and Table 9 (Douban; the recipe has two of its three
# domains): items per organization and, per metric, each model's cell in the order of ``orgs``.
PAPER_002_ORGS = {
    "ml-1m": {
        "orgs": ML100K_GENRES,
        "n_k": [235, 130, 48, 95, 791, 89, 103, 1098, 24, 28, 235, 52, 51, 226, 119, 258, 74, 50],
        "RMSE": {
            "base": [0.973, 0.980, 1.002, 1.012, 1.001, 0.923, 0.984, 0.952, 1.026, 0.857, 1.095, 0.994, 0.958, 0.973, 1.005, 0.952, 0.944, 0.985],
            "mf": [0.943, 1.085, 1.444, 1.173, 0.950, 1.215, 1.803, 0.901, 1.490, 1.885, 1.102, 1.450, 1.863, 1.008, 1.020, 0.936, 1.328, 1.507],
            "mlp": [0.897, 0.938, 0.992, 0.930, 0.933, 0.947, 1.030, 0.893, 1.030, 0.912, 0.996, 0.975, 0.982, 0.939, 0.954, 0.896, 0.975, 0.972],
            "ncf": [0.899, 0.934, 0.993, 0.929, 0.938, 0.942, 1.053, 0.896, 1.024, 0.936, 0.991, 0.983, 0.985, 0.937, 0.951, 0.897, 0.974, 0.978],
            "ae": [1.034, 1.153, 1.790, 1.305, 1.022, 1.265, 1.898, 0.985, 2.119, 2.360, 1.219, 1.667, 1.714, 1.058, 1.095, 1.013, 1.466, 1.797],
            "aae": [0.871, 0.892, 0.920, 0.913, 0.911, 0.856, 0.933, 0.877, 0.933, 0.800, 0.989, 0.914, 0.876, 0.888, 0.915, 0.860, 0.860, 0.893]},
        "NDCG@10": {
            "base": [0.705, 0.680, 0.651, 0.616, 0.761, 0.727, 0.754, 0.805, 0.546, 0.788, 0.590, 0.666, 0.662, 0.718, 0.678, 0.749, 0.736, 0.652],
            "mf": [0.710, 0.682, 0.651, 0.615, 0.769, 0.728, 0.755, 0.812, 0.542, 0.787, 0.591, 0.665, 0.663, 0.722, 0.680, 0.753, 0.739, 0.654],
            "mlp": [0.712, 0.684, 0.655, 0.617, 0.771, 0.730, 0.757, 0.814, 0.547, 0.790, 0.592, 0.668, 0.667, 0.724, 0.682, 0.756, 0.741, 0.657],
            "ncf": [0.712, 0.684, 0.654, 0.618, 0.771, 0.730, 0.759, 0.814, 0.546, 0.790, 0.593, 0.668, 0.667, 0.724, 0.681, 0.756, 0.740, 0.657],
            "ae": [0.711, 0.679, 0.651, 0.610, 0.772, 0.728, 0.756, 0.815, 0.540, 0.790, 0.591, 0.664, 0.665, 0.722, 0.680, 0.757, 0.738, 0.656],
            "aae": [0.714, 0.686, 0.656, 0.619, 0.777, 0.731, 0.759, 0.819, 0.548, 0.790, 0.593, 0.670, 0.668, 0.726, 0.684, 0.758, 0.742, 0.658]}},
    "douban": {
        "orgs": ["book", "movie", "music"],
        "n_k": [1134, 9500, 727],
        "RMSE": {"base": [0.811, 0.908, 0.855], "mf": [0.847, 1.059, 0.963], "mlp": [0.817, 0.905, 0.860],
                 "ncf": [0.847, 0.907, 0.879], "ae": [0.857, 0.907, 0.910], "aae": [0.800, 0.859, 0.843]},
        "NDCG@10": {"base": [0.846, 0.770, 0.843], "mf": [0.858, 0.850, 0.853], "mlp": [0.861, 0.868, 0.858],
                    "ncf": [0.861, 0.868, 0.858], "ae": [0.860, 0.865, 0.858], "aae": [0.862, 0.873, 0.859]}},
}
P002_COLUMN_PART = {"ml-1m": "user/genre", "douban": "user/domain"}
"""The user-aligned columns of paper 002's runs (``<feedback>/<part>``)."""

DATASET_LABEL = {"ml-100k": "ML-100K", "ml-1m": "ML-1M", "douban": "Douban"}
PAPER_TABLE = {"ml-100k": ("Table 1", "ML1M", PAPER_T1), "ml-1m": ("Table 4", "ML100K", PAPER_T4)}
"""The paper 001 table that holds each dataset's results: (its name, the dataset its caption names, its cells)."""
ITEM_MEAN_RMSE = {"ml-1m": (0.979, 0.002), "ml-100k": (1.022, 0.008)}
"""Explicit RMSE of the item mean (paper 001's Base row, which trains nothing) over 20 random 90/10 splits of all
ratings, (mean, std); ``tests/experiments/test_mtal_recipe.py`` recomputes it from the data."""


def caption_swap() -> str:
    """Why the report sets paper 001's Table 1 beside ML-100K and its Table 4 beside ML-1M."""
    base = [ITEM_MEAN_RMSE[ds] for ds in ("ml-1m", "ml-100k")]
    p002 = PAPER_002["ml-1m"]
    return ("**Paper 001's result tables have swapped captions, and this report reads them so**: Table 4 (captioned "
            "ML100K) holds the ML-1M results and Table 1 (captioned ML1M) the ML-100K ones, so Table 4 stands beside our "
            "ML-1M runs and Table 1 beside our ML-100K runs. The explicit Base row is the item mean, which trains nothing: "
            f"over 20 random 90/10 splits it gives RMSE {base[0][0]:.3f} ± {base[0][1]:.3f} on ML-1M (Table 4: "
            f"{PAPER_T4[('alone', 'base')][0]:.3f}) and {base[1][0]:.3f} ± {base[1][1]:.3f} on ML-100K (Table 1: "
            f"{PAPER_T1[('alone', 'base')][0]:.3f}), and paper 002, by the same authors on ML-1M, prints the user-aligned "
            f"genre MTAL and Base cells as {p002[('mtal', 'aae')][0]:.3f} and {p002[('alone', 'base')][0]:.3f} "
            f"(Table 4: {PAPER_T4[('mtal', 'aae')][1]:.3f} and {PAPER_T4[('alone', 'base')][1]:.3f}).")


QUERY_PRIVACY = (
    "Besides the values (the pseudo-residuals, which `setting.privacy=dp|ip` perturbs before they leave the "
    "organization, and the predictions, which it does not; the privacy sections above), a peer learns the aligned ids, the keys of the sender's training entries on shared rows (from "
    "the residual messages, as in the papers' algorithm) and the keys of the sender's evaluation queries. The recipe "
    "leaves `setting.query_decoys` at 0, where a query carries exactly the held-out keys: a peer learns which entries "
    "of a shared user (a shared item, when item-aligned) are held out, and from their order which are validation and "
    "which test. With `setting.query_decoys=r` each held-out key travels with r decoys drawn uniformly among the row's "
    "columns the sender holds no entry at, and the answers to decoys are dropped (metrics, w and eta unchanged): a "
    "peer still learns how many keys are held out and their union with the decoys, and, since decoys are not shaped "
    "like ratings, guesses the real ones better than chance from item popularity.")
"""What the messages of an MTAL run tell a peer beyond their values (the report's privacy note)."""
REPORT_HOME = Path("docs/reproductions/mtal")
"""Where the committed reproduction lives: the report's command that trains the missing runs names it (no machine path)."""
ABLATION_PREFIXES = ("ablation-", "privacy-", "align-", "cold-")

# ``ae_lr`` / ``ae_epochs`` / ``ae_schedule``: Adam learning rate, epochs and learning-rate schedule of the
# Joint / Alone AE baselines (the authors' code: Adam 1e-3, 200 epochs, CosineAnnealingLR, src/utils.py;
# a cosine schedule runs all its epochs and the best validation epoch is kept);
# ``assist``: setting overrides of the main MTAL rows (the ablation rows set their own eta / w).
SCHEDULES = {
    "paper": {"rounds": 10, "local_epochs": 20, "local_lr": 1e-3, "cf_epochs": 50, "ae_lr": 1e-3, "ae_epochs": 200,
              "ae_schedule": "cosine", "seeds": 4, "assist": {}},
    "cpu": {"rounds": 10, "local_epochs": 20, "local_lr": 1e-3, "cf_epochs": 10, "ae_lr": 1e-3, "ae_epochs": 200,
            "ae_schedule": "cosine", "seeds": 1,
            "assist": {},  # eta 0.3 / uniform w as in the papers; assist_fit="valid" overfits validation (report)
            # ML-1M (6,040 users x 3,706 items, 18 organizations): the papers' 10 rounds x 20 local epochs cost
            # 45-60 CPU minutes per MTAL run here, so ML-1M keeps the papers' local schedule for 4 rounds (~12 min;
            # with held-out w / eta most organizations pick round 1-4) and runs 5 CF baseline epochs; its AE
            # baselines keep the 200 cosine epochs (Joint AE: 377 s, test RMSE 0.883; 50 epochs undertrain: 0.978)
            "datasets": {"ml-1m": {"rounds": 4, "cf_epochs": 5}}},
    "reduced": {"rounds": 10, "local_epochs": 5, "local_lr": 5e-3, "cf_epochs": 10, "ae_lr": 5e-3, "seeds": 1, "assist": {}},
    "quick": {"rounds": 2, "local_epochs": 2, "local_lr": 5e-3, "cf_epochs": 3, "ae_lr": 5e-3, "seeds": 1, "assist": {}},
}
DEFAULT_SCHEDULE = "cpu"
SCHEDULE_WORDS = {"rounds": "{} MTAL rounds", "cf_epochs": "at most {} epochs for the CF baselines"}
"""How the report's departures note words a per-dataset override of a schedule (``SCHEDULES[...]["datasets"]``)."""
BACKBONES = ["base", "mf", "mlp", "ncf", "ae"]
MODEL = {"base": "assisted-base", "mf": "assisted-mf", "mlp": "assisted-mlp", "ncf": "assisted-ncf", "ae": "assisted-ae", "aae": "aae"}


# The "held-out" MTAL rows (``mtal-aae-heldout``): w on the simplex (Eq. 8) and eta (Eq. 9) fitted by L-BFGS on
# half of each organization's validation users, the round chosen on the other half (the papers fit them on
# training entries, where every local model has already fitted the residuals, and suggest a validation set).
HELDOUT = {"eta": "optimize", "weights": "optimize", "assist_fit": "valid-split"}
AUTO_ROW = "mtal-auto"
"""The MTAL row whose organizations each assist with their own best local model (MF, NCF, MLP or AAE on their own
validation entries, ``setting.backbone=auto``), at the settings of its column's ``mtal-aae`` row otherwise."""


PAPER_METRIC = "MAP@10[paper]"  # implicit feedback scored as the papers' code scores it (paper_list_metrics)


def _metric(feedback: str) -> str:
    return "RMSE" if feedback == "explicit" else "MAP@10"


def job_config(job: tuple, seed: int, sched: dict, data_dir: Path | None, device: str) -> RunConfig:
    """The ``cdrec run`` config of one job of :func:`plan` at ``seed`` under the schedule ``sched``;
    ``data.data_dir`` only when ``--data-dir`` was given, so a committed ``config.yaml`` finds the data
    wherever the default data folder is."""
    dataset, column, row, model, domains, setting, keep, batch, kcore = job
    sched = {**sched, **sched.get("datasets", {}).get(dataset, {})}
    epochs = sched.get("ae_epochs", sched["cf_epochs"]) if model == "ae" else sched["cf_epochs"]
    sets = [f"model={MODEL[model]}", f"data.name={dataset}", *([f"data.data_dir={data_dir}"] if data_dir is not None else []), f"seed={seed}",
            f"train.device={device}", "train.progress=false", f"train.epochs={epochs}",
            "train.batch_size=256"]
    if domains:
        sets.append(f"data.domains={domains}")
    if keep:
        sets.append("data.keep_domains=" + json.dumps(keep))
    if kcore:
        sets.append(f"data.kcore={kcore}")
    if model in ("aae", "ae"):
        sets.append(f"model_params.epochs={sched['local_epochs'] if model == 'aae' else epochs}")
        sets.append(f"model_params.lr={sched['local_lr'] if model == 'aae' else sched['ae_lr']}")
        if model == "ae":
            sets.append(f"model_params.lr_schedule={sched.get('ae_schedule', 'none')}")
        if batch:
            sets.append(f"model_params.batch_size={batch}")
    rounds = {"rounds": sched["rounds"]} if setting["mode"] == "mtal" else {}  # a baseline refuses round settings
    setting = {**rounds, "paper_eval_batch": batch or 100, **setting}
    if model == "aae" and (row.startswith("mtal-aae") or row == AUTO_ROW) and row not in ("mtal-aae-wopt", "mtal-aae-heldout"):
        setting.update(sched.get("assist", {}))  # the main MTAL rows of this schedule
    sets += [f"setting.{k}={json.dumps(v)}" for k, v in setting.items()]
    return load_config(None, sets)


def _setting(column: str, mode: str, side: bool, **extra) -> dict:
    feedback, alignment, partition, _ = COLUMNS[column]
    s = {"mode": mode, "feedback": feedback, "alignment": alignment, "partition": partition, "side_info": side}
    if mode == "mtal":
        s.update({"eta": 0.3 if feedback == "explicit" else "optimize", "weights": "uniform"})
    s.update(extra)
    return s


def plan(quick: bool) -> list[tuple]:
    """(dataset, column, row, model, domains, setting, keep, batch, kcore), most important first:
    MTAL and Alone rows of every ML-100K column, ablations, Joint rows, paper 002 data, side information."""
    keep = ML100K_GENRES
    cols = ["explicit/user/uniform"] if quick else ["explicit/user/genre", "explicit/user/uniform", "explicit/item/uniform",
                                                    "implicit/user/genre", "implicit/user/uniform", "implicit/item/uniform"]
    main, joint, side_jobs = [], [], []
    for side in ([False] if quick else [False, True]):
        sfx = "_s" if side else ""
        for col in cols:
            dom = COLUMNS[col][3]
            k = keep if dom == "genre-random" else None
            target = side_jobs if side else main
            target.append(("ml-100k", col, f"mtal-aae{sfx}", "aae", dom, _setting(col, "mtal", side), k, 100, 0))
            if side:
                target.append(("ml-100k", col, "mtal-aae-heldout_s", "aae", dom, _setting(col, "mtal", side, **HELDOUT), k, 100, 0))
            for b in (["base", "mf"] if quick else BACKBONES):
                if side and b == "base":
                    continue
                target.append(("ml-100k", col, f"alone-{b}{sfx}", b, dom, _setting(col, "alone", side), k, 100, 0))
                if not quick:
                    (side_jobs if side else joint).append(("ml-100k", col, f"joint-{b}{sfx}", b, dom, _setting(col, "joint", side), k, 100, 0))
    if quick:
        return main
    g = "explicit/user/genre"
    wopt = ("ml-100k", g, "mtal-aae-wopt", "aae", "genre-random", _setting(g, "mtal", False, weights="optimize"), keep, 100, 0)
    main.insert(3 * (len(BACKBONES) + 1), wopt)
    ablations = []
    col, dom = "explicit/user/uniform", "uniform-items:8"
    short = {"rounds": 5}  # ablations run 5 rounds (reduced schedule); eta=0.3 at 5 rounds is their reference row
    for eta in (0.3, 1.0):
        ablations.append(("ml-100k", col, f"ablation-eta-{eta}", "aae", dom, _setting(col, "mtal", False, eta=eta, **short), None, 100, 0))
    ablations.append(("ml-100k", col, "ablation-w-optimize", "aae", dom, _setting(col, "mtal", False, weights="optimize", **short), None, 100, 0))
    for priv in ("dp", "ip"):
        ablations.append(("ml-100k", col, privacy_row(priv, PRIVACY_PAPER_SETTING[priv]), "aae", dom,
                          _setting(col, "mtal", False, **privacy_setting(priv, PRIVACY_PAPER_SETTING[priv]), **short), None, 100, 0))
    for ratio in (0.5, 0.25, 0.75):
        ablations.append(("ml-100k", col, f"align-{ratio}", "aae", dom, _setting(col, "mtal", False, align_ratio=ratio, **short), None, 100, 0))
        for b, mode in (("aae", "mtal"), ("ae", "alone"), ("base", "alone")):
            extra = short if mode == "mtal" else {}
            ablations.append(("ml-100k", col, f"cold-{ratio}-{mode}-{b}", b, dom, _setting(col, mode, False, cold_start_ratio=ratio, **extra), None, 100, 0))
        if ratio == 0.5:
            for eta in (0.1, "optimize"):
                ablations.append(("ml-100k", col, f"ablation-eta-{eta}", "aae", dom, _setting(col, "mtal", False, eta=eta, **short), None, 100, 0))
    # the F0 = 0 diagnostic (setting.base=zero, not the papers' F0) on every ML-100K column
    base0 = [("ml-100k", c, "mtal-aae-base0", "aae", COLUMNS[c][3], _setting(c, "mtal", False, base="zero"),
              keep if COLUMNS[c][3] == "genre-random" else None, 100, 0) for c in cols]
    heldout = [("ml-100k", c, "mtal-aae-heldout", "aae", COLUMNS[c][3], _setting(c, "mtal", False, **HELDOUT),
                keep if COLUMNS[c][3] == "genre-random" else None, 100, 0) for c in cols]
    # paper 002: Douban book + music and ML-1M 18 genres (user-aligned)
    p002 = []
    for ds, dom, batch, kcore in (("douban", None, 100, 20), ("ml-1m", "genre-random", 500, 0)):
        for fb in ("explicit", "implicit"):
            col = f"{fb}/user/{'genre' if ds == 'ml-1m' else 'domain'}"
            base = {"feedback": fb, "alignment": "user", "partition": "genre" if ds == "ml-1m" else "domain", "side_info": False}
            p002.append((ds, col, "mtal-aae", "aae", dom, {**base, "mode": "mtal", "eta": 0.3 if fb == "explicit" else 1.0}, None, batch, kcore))
            p002.append((ds, col, "mtal-aae-heldout", "aae", dom, {**base, "mode": "mtal", **HELDOUT}, None, batch, kcore))
            for b in BACKBONES:
                p002.append((ds, col, f"alone-{b}", b, dom, {**base, "mode": "alone"}, None, batch, kcore))
            for b in BACKBONES:
                p002.append((ds, col, f"joint-{b}", b, dom, {**base, "mode": "joint"}, None, batch, kcore))
            for b in ("mf", "mlp", "ncf"):
                p002.append((ds, col, f"mtcdr-{b}", b, dom, {**base, "mode": "mtcdr"}, None, batch, kcore))
    # ML-1M in the other four Table 4 columns (the genre columns come from paper 002's block above): the Base rows,
    # paper 002's ML-1M genre MTAL row and our MTAL runs place Table 4 ("ML100K") on ML-1M (module docstring)
    t4_ml1m = []
    for col in (c for c in cols if COLUMNS[c][2] != "genre"):
        dom = COLUMNS[col][3]
        t4_ml1m.append(("ml-1m", col, "mtal-aae-heldout", "aae", dom, _setting(col, "mtal", False, **HELDOUT), None, 500, 0))
        t4_ml1m.append(("ml-1m", col, "mtal-aae", "aae", dom, _setting(col, "mtal", False), None, 500, 0))
        t4_ml1m += [("ml-1m", col, f"alone-{b}", b, dom, _setting(col, "alone", False), None, 500, 0) for b in BACKBONES]
    # paper 002 Table 5: the MTAL rows of its two columns with DP / IP on the residuals, RMSE cells first
    table5 = [(*job[:2], privacy_row(m, PRIVACY_PAPER_SETTING[m]), *job[3:5], {**job[5], **privacy_setting(m, PRIVACY_PAPER_SETTING[m])}, *job[6:])
              for fb in ("explicit", "implicit") for job in p002 if job[1].startswith(fb) and job[2] == "mtal-aae" for m in ("dp", "ip")]
    # beyond the papers: each MTAL row's column again with every organization's own backbone (setting.backbone=auto)
    own_backbone = [(*job[:2], AUTO_ROW, *job[3:5], {**job[5], "backbone": "auto"}, *job[6:])
                    for job in main + p002 + t4_ml1m if job[2] == "mtal-aae"]
    return main + heldout + ablations + base0 + joint + p002 + t4_ml1m + side_jobs + own_backbone + table5


def privacy_row(mechanism: str, strength: float) -> str:
    """The row of an MTAL run with ``mechanism`` (``dp`` / ``ip``) at ``strength``: ``privacy-dp`` at the paper's
    strength (:data:`PRIVACY_PAPER_SETTING`), ``privacy-dp-3`` at another."""
    return f"privacy-{mechanism}" if strength == PRIVACY_PAPER_SETTING[mechanism] else f"privacy-{mechanism}-{strength:g}"


def privacy_setting(mechanism: str, strength: float) -> dict:
    """The ``setting`` keys of ``mechanism`` at ``strength``; the strength key only where it is not the paper's
    (the task's default), so a run at the paper's strength keeps the config it always had."""
    return {"privacy": mechanism, **({} if strength == PRIVACY_PAPER_SETTING[mechanism] else {PRIVACY_OPTION[mechanism]: strength})}


def sweep_reference(dataset: str, quick: bool) -> str:
    """The MTAL row without privacy that a strength sweep on ``dataset`` starts from (same rounds and eta)."""
    return "mtal-aae" if quick or dataset != "ml-100k" else "ablation-eta-0.3"


def privacy_plan(quick: bool) -> list[tuple]:
    """``--section privacy``: per dataset of :data:`PRIVACY_SWEEP`, the MTAL row without privacy, the column's
    Alone rows (both also in the default plan) and one MTAL run per mechanism and strength."""
    main = {job[:3]: job for job in plan(quick)}
    jobs = []
    for dataset, strengths in (PRIVACY_SWEEP_QUICK if quick else PRIVACY_SWEEP).items():
        column = SWEEP_COLUMN[dataset]
        reference = main[(dataset, column, sweep_reference(dataset, quick))]
        jobs.append(reference)
        jobs += [job for key, job in main.items() if key[:2] == (dataset, column) and key[2].startswith("alone-") and not key[2].endswith("_s")]
        for mechanism, values in strengths.items():
            for value in values:
                row = privacy_row(mechanism, value)
                jobs.append(main.get((dataset, column, row)) or
                            (dataset, column, row, *reference[3:5], {**reference[5], **privacy_setting(mechanism, value)}, *reference[6:]))
    return jobs


def plan_sections(quick: bool, sections: Sequence[str] = DEFAULT_SECTIONS) -> list[tuple]:
    """The jobs of ``sections`` (:data:`SECTIONS`) in order, each (dataset, column, row) once."""
    unique: dict[tuple, tuple] = {}
    for job in (plan(quick) if "main" in sections else []) + (privacy_plan(quick) if "privacy" in sections else []):
        unique.setdefault(job[:3], job)
    return list(unique.values())


def schedule(quick: bool, seeds: int | None) -> dict:
    """The schedule a reproduction runs (``CDREC_MTAL_SCHEDULE`` names one), as the report states it."""
    name = "quick" if quick else os.environ.get("CDREC_MTAL_SCHEDULE", DEFAULT_SCHEDULE)
    if name not in SCHEDULES:
        raise CdrecError(f"CDREC_MTAL_SCHEDULE={name!r}: expected one of {sorted(SCHEDULES)}")
    return {"name": name, **SCHEDULES[name], **({"seeds": seeds} if seeds else {})}


def planned_runs(out: Path, sched: dict, quick: bool, sections: Sequence[str] = DEFAULT_SECTIONS) -> list[tuple[tuple, int, Path]]:
    """Every run of the plan of ``sections`` under the schedule ``sched``: (job of :func:`plan`, seed, run folder),
    seed by seed. Loads no data, so ``--report-only`` can list the plan's missing runs where the data is absent."""
    return [(job, seed, Path(out) / "runs" / job[0] / job[1] / job[2] / f"seed{seed}")
            for seed in range(sched["seeds"]) for job in plan_sections(quick, sections)]


def reproduce(out: Path, *, data_dir: Path | None = None, quick: bool = False, seeds: int | None = None, device: str = "cpu",
              sections: Sequence[str] = DEFAULT_SECTIONS) -> Path:
    out = Path(out)
    from cdrec.data.loaders import data_dir as resolve_data_dir

    for section in sections:
        require(section in SECTIONS, f"--section: expected one of {sorted(SECTIONS)}, got {section!r}")
    root = resolve_data_dir(data_dir)
    if not (root / "ml-100k" / "u.data").exists():
        raise CdrecError(f"--data-dir {root}: ml-100k/u.data not found; `cdrec reproduce mtal` needs the real datasets")
    sched = schedule(quick, seeds)
    runs = [PlannedRun(f"{job[0]}/{job[1]}/{job[2]}/seed{seed}", run_dir, functools.partial(job_config, job, seed, sched, data_dir, device))
            for job, seed, run_dir in planned_runs(out, sched, quick, sections)
            if job[0] == "ml-100k" or (root / ("ml-1m" if job[0] == "ml-1m" else "douban-ga-dtcdr")).exists()]
    extra = () if tuple(sections) == DEFAULT_SECTIONS else tuple(sections)
    with sharing_fits():  # round-1 local fits equal between runs of a column are trained once (shared_fits)
        return run_plan(Invocation("mtal", out, data_dir, quick, seeds, device, extra), runs,
                        lambda failed: report(out, quick=quick, seeds=seeds, device=device, failed=failed))


def report_sections(out: Path, quick: bool, seeds: int | None) -> tuple[str, ...]:
    """The sections a report of ``out`` covers: the default plan, and ``privacy`` where a reproduction in ``out``
    was asked for it (``reproduce.json``) or one of its own runs is finished."""
    path = Path(out) / OPTIONS_FILE
    recorded = (json.loads(path.read_text()).get("sections") or []) if path.exists() else []
    main = {run_dir for _, _, run_dir in planned_runs(out, schedule(quick, seeds), quick)}
    own = [run_dir for _, _, run_dir in planned_runs(out, schedule(quick, seeds), quick, ("privacy",)) if run_dir not in main]
    return ("main", "privacy") if "privacy" in recorded or any((d / "results.json").exists() for d in own) else DEFAULT_SECTIONS


def report(out: Path, *, quick: bool = False, seeds: int | None = None, device: str = "auto", failed: Sequence[str] = ()) -> Path:
    """``report.md``, ``rounds.png`` and ``privacy.png`` from the runs in ``out`` (``cdrec reproduce mtal
    --report-only``); the command it names for the missing runs repeats these options (and the sections of
    :func:`report_sections`) with ``--out`` at :data:`REPORT_HOME`."""
    sections = report_sections(out, quick, seeds)
    extra = () if sections == DEFAULT_SECTIONS else sections
    command = Invocation("mtal", REPORT_HOME, quick=quick, seeds=seeds, device=device, sections=extra).command()
    return write_report(Path(out), schedule(quick, seeds), quick, failed, continue_command=command, sections=sections)


HEADLINE_COLUMN = "explicit/user/uniform"
"""The column of the headline rows: the papers' MTAL explicit cell the issue quotes (Table 4's 0.878, Table 1's 0.938)."""


def headline(out: Path) -> list[HeadlineRow]:
    """The MTAL row's explicit RMSE in :data:`HEADLINE_COLUMN`, on ML-1M beside Table 4 and on ML-100K beside
    Table 1 (:func:`caption_swap`), from the finished runs in ``out``; ``ours`` is None where none is finished."""
    res = _load(Path(out))
    rows = []
    for dataset in ("ml-1m", "ml-100k"):
        name, caption, paper = PAPER_TABLE[dataset]
        runs = res.get((dataset, HEADLINE_COLUMN, "mtal-aae"), [])
        values = [r.metrics["overall"]["RMSE"] for r in runs if "RMSE" in r.metrics.get("overall", {})]
        ours = (float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, len(values)) if values else None
        rows.append(HeadlineRow(
            paper="AAE + MTAL (Diao, Tarokh, Ding; paper 001)", dataset=DATASET_LABEL[dataset],
            metric=f"RMSE, explicit, user-aligned uniform K=8, MTAL row (paper's {name}, captioned {caption})",
            paper_value=paper[("mtal", "aae")][COLS.index(HEADLINE_COLUMN)], ours=ours, higher_is_better=False, digits=3,
            note=_run_schedule(runs) if runs else "no finished run"))
    return rows


# ----------------------------------------------------------------------------------------- report
def _load(out: Path) -> dict:
    res: dict = defaultdict(list)
    for path in sorted((out / "runs").glob("*/*/*/*/*/seed*/results.json")) + sorted((out / "runs").glob("*/*/*/*/seed*/results.json")):
        rel = path.relative_to(out / "runs").parts
        ds, row = rel[0], rel[-3]
        col = "/".join(rel[1:-3])
        res[(ds, col, row)].append(RunResult.read(path))
    return res


def _mean(results: list[RunResult], metric: str, org: str = "overall") -> float | None:
    vals = [r.metrics.get(org, {}).get(metric) for r in results]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def _cell(res: dict, dataset: str, column: str, row: str, metric: str) -> float | None:
    """The mean ``metric`` of one (dataset, column, row) over its seeds; None when it was not run."""
    return _mean(res[(dataset, column, row)], metric) if (dataset, column, row) in res else None


def _wall(result: RunResult) -> str:
    """A run's recorded wall seconds, and how many of its local fits it took from an equal earlier fit (shared_fits)."""
    reused = result.timing.get("reused_fits", 0)
    return f"{result.timing.get('train_s', 0):.0f}" + (f" ({reused} local fits reused)" if reused else "")


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _is_ablation(row: str) -> bool:
    return row.startswith(ABLATION_PREFIXES)


def _coverage_by_column(planned: Sequence[tuple[tuple, int, Path]]) -> list[str]:
    """Finished runs per column of the report's tables (and the ablations), so a partial report says plainly
    which columns have no run at all; empty when every run is finished."""
    groups: dict[str, list[bool]] = {}
    main: dict[str, list[bool]] = {}
    for job, _, run_dir in planned:
        dataset, column, row = job[:3]
        kind = " privacy" if row.startswith("privacy-") else " ablations" if _is_ablation(row) else ""
        key = f"{DATASET_LABEL[dataset]}{kind}{' (' + column + ')' if kind else ' ' + column}"
        done = (run_dir / "results.json").exists()
        groups.setdefault(key, []).append(done)
        if row == "mtal-aae":
            main.setdefault(key, []).append(done)
    if all(all(v) for v in groups.values()):
        return []
    order = list(DATASET_LABEL.values())
    rows = [[key, f"{sum(v)} of {len(v)}" if any(v) else f"**no run** (0 of {len(v)})",
             f"{sum(main[key])} of {len(main[key])}" if key in main else "–"]
            for key, v in sorted(groups.items(), key=lambda kv: order.index(kv[0].split()[0]))]
    return ["### Finished runs per column", "",
            markdown_table(["data and column", "finished runs (all rows, all seeds)", "MTAL row `mtal-aae` (seeds)"], rows), ""]


def _not_run(what: str) -> list[str]:
    return [f"_Not run: no {what} run is finished._", ""]


def write_report(out: Path, sched: dict, quick: bool, failed: Sequence[str] = (), *, continue_command: str | None = None,
                 sections: Sequence[str] = DEFAULT_SECTIONS) -> Path:
    """``report.md`` from the runs under ``out/runs``: first which runs of the plan (``sched``, ``quick``,
    ``sections``) are finished, with ``continue_command`` to train the rest; ``failed`` lists the runs that raised."""
    res = _load(out)
    planned = planned_runs(out, sched, quick, sections)
    command = continue_command or Invocation("mtal", REPORT_HOME, quick=quick).command()
    lines = ["# AAE + MTAL reproduction (papers 001 and 002)", "",
             *coverage_section(out, [run_dir for _, _, run_dir in planned], command), *_coverage_by_column(planned),
             "## How the runs are made", "",
             f"Schedule `{sched.get('name', 'quick' if quick else '?')}`. " + _schedule_note(sched) + " "
             "Split: random per-user 81/9/10 (validation carved from the papers' 90% train); each organization picks "
             "its round on its own validation entries, nothing is chosen on test. Explicit: RMSE (lower is better); "
             "implicit: MAP@10 and NDCG@10 over each user's held-out rated items (rating >= 3.5 positive).", "",
             caption_swap(), ""]
    lines += failed_section(failed)
    lines += _layout_section(res, "ml-100k")
    if any(k[0] == "ml-100k" for k in res):
        lines += ["*Held-out w / eta* (`mtal-aae-heldout`): w on the simplex and eta fitted by L-BFGS on half of each "
                  "organization's validation users, the round chosen on the other half (`setting.assist_fit=valid-split`).", ""]
    lines += _layout_section(res, "ml-1m", note="The genre columns are paper 002's ML-1M runs (their implicit `mtal-aae` "
                                                "row uses eta 1.0, Table 8's best); on ML-1M the plan has Joint rows in the genre "
                                                "columns only and no side-information rows.")
    lines += ["## Implicit columns scored as the papers' code scores them", ""]
    with_paper = {k[0] for k, v in res.items() if any(PAPER_METRIC in r.metrics.get("overall", {}) for r in v)}
    scored = [ds for ds in ("ml-100k", "ml-1m") if ds in with_paper]
    if scored:
        lines += ["`MAP@10[paper]`: the same predictions, scored as `src/metrics/metrics.py` of the authors' repository does: "
                  "lists per aligned id (per *item* when item-aligned), AP@10 divided by the hits in the top 10, a list "
                  "without a positive counted as 0, means per batch of `setting.paper_eval_batch` ids (100 ML-100K, 500 "
                  "ML-1M) weighted by entries. Rows are still selected on our MAP@10; compare these figures, not the ones "
                  "above, with the papers' implicit columns.", ""]
        for ds in scored:
            lines += [f"**{DATASET_LABEL[ds]}**", "", _papers_scoring(res, ds), ""]
            if any(k[0] == ds and k[2].startswith("mtal-aae") and k[2].endswith("_s") for k in res):
                lines += [f"**{DATASET_LABEL[ds]}, side information** (`u.user` profile and `u.item` genres encoded and summed in, AAE_s)", "",
                          _papers_scoring(res, ds, side=True), ""]
    else:
        lines += _not_run("ML-100K or ML-1M implicit")
    w = res.get(("ml-100k", "explicit/user/genre", "mtal-aae-wopt"))
    if w:
        main = res.get(("ml-100k", "explicit/user/genre", "mtal-aae"), [])
        lines += [f"MTAL AAE with gradient-assistance weights w optimized on training entries (Eq. 8 as written) on "
                  f"explicit/user/genre: RMSE {_f(_mean(w, 'RMSE'))} ({_run_schedule(w)}) versus "
                  f"{_f(_mean(main, 'RMSE'))} for the main row ({_run_schedule(main)}).", ""]
    trows = [[f"{k[0]} {k[1]}", k[2], _run_schedule(v), _wall(v[0]), f"{v[0].timing.get('peak_rss_mb', 0):.0f}",
              v[0].data_stats.get("messages", "–"), v[0].data_stats.get("values", "–")]
             for k, v in sorted(res.items()) if k[2].startswith("mtal")]
    if trows:
        lines += ["### MTAL runs: schedule and cost (first seed; wall seconds as each run recorded them on a shared machine; "
                  "peak RSS of the whole recipe process so far, so cumulative; messages exchanged)", "",
                  markdown_table(["data / column", "row", "schedule", "wall s", "peak RSS MiB", "messages", "values sent"], trows), ""]
    lines += _curves(out, res)
    lines += _ablations(res)
    lines += _paper002(res)
    lines += _privacy_table5(res)
    lines += _per_organization(res)
    lines += _own_backbone(res)
    lines += _rounds_by_organization(res)
    lines += _privacy_sweep(out, res, quick, sections)
    lines += ["## What a peer learns from the messages", "", QUERY_PRIVACY, ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _layout_section(res: dict, dataset: str, note: str = "") -> list[str]:
    """Our ``dataset`` runs in paper 001's layout beside the paper table that holds that dataset's results."""
    name, caption, paper = PAPER_TABLE[dataset]
    label = DATASET_LABEL[dataset]
    lines = [f"## {label}, paper 001's layout, beside its {name} (captioned {caption})", ""]
    if not any(k[0] == dataset and k[1] in COLUMNS and not _is_ablation(k[2]) for k in res):
        return lines + _not_run(label)
    return lines + [*([note, ""] if note else []), "Ours (mean over the finished seeds; – = no finished run):", "", _layout(res, dataset), "",
                    f"Paper 001 {name} (captioned {caption}; {label}'s results):", "", _paper_layout(paper), "",
                    f"### {label}: MTAL (AAE) against the best Alone model, per column", "", _against_alone(res, dataset), ""]



LAYOUT_ROWS = [("joint", b) for b in BACKBONES] + [("joint", b + "_s") for b in BACKBONES[1:]] + \
              [("alone", b) for b in BACKBONES] + [("alone", b + "_s") for b in BACKBONES[1:]] + [("mtal", "aae"), ("mtal", "aae_s")]
LAYOUT_HEADER = ["mode", "model"] + [f"{c} ({_metric(COLUMNS[c][0])})" for c in COLS]


def _layout(res: dict, dataset: str) -> str:
    """Our mean metric per (row, column) of ``dataset`` in the layout of paper 001's tables, and the MTAL row with
    each organization's own backbone (:data:`AUTO_ROW`, which the papers do not have)."""
    table = []
    for mode, b in [*LAYOUT_ROWS, ("mtal", AUTO_ROW[5:])]:
        name = f"{mode}-{b}" if mode != "mtal" else f"mtal-{b}"
        table.append([mode, b, *(_f(_cell(res, dataset, c, name, _metric(COLUMNS[c][0]))) for c in COLS)])
    return markdown_table(LAYOUT_HEADER, table)


def _paper_layout(paper: dict) -> str:
    """A paper table (``PAPER_T4`` / ``PAPER_T1``) in the layout of :func:`_layout`."""
    return markdown_table(LAYOUT_HEADER, [[mode, b, *(_f(v) for v in paper.get((mode, b), [None] * 6))] for mode, b in LAYOUT_ROWS])


def _best_row(res: dict, dataset: str, column: str, prefix: str, metric: str, side: bool = True) -> tuple[str, float] | None:
    """The best ``prefix`` row (``alone-`` / ``joint-``) of a column by its mean ``metric`` (lowest RMSE, highest
    otherwise), with or without the side-information ``_s`` rows; None when no such row has the metric."""
    rows = [(k[2], _mean(v, metric)) for k, v in res.items()
            if k[:2] == (dataset, column) and k[2].startswith(prefix) and (side or not k[2].endswith("_s"))]
    rows = [r for r in rows if r[1] is not None]
    return (min if metric == "RMSE" else max)(rows, key=lambda kv: kv[1]) if rows else None


def _against_alone(res: dict, dataset: str) -> str:
    """MTAL (papers' row, held-out row, F0 = 0 diagnostic) against the best Alone row of each column, beside the
    MTAL row of the paper 001 table that holds ``dataset`` (:data:`PAPER_TABLE`)."""
    name, _, paper = PAPER_TABLE[dataset]
    rows = []
    for i, c in enumerate(COLS):
        m = _metric(COLUMNS[c][0])
        lower = m == "RMSE"
        best = _best_row(res, dataset, c, "alone-", m)
        o, h, z = (_cell(res, dataset, c, r, m) for r in ("mtal-aae", "mtal-aae-heldout", "mtal-aae-base0"))
        rows.append([c, m, _f(o), f"{best[0]} {best[1]:.4f}" if best else "–", _beats(o, best, lower), _f(h), _beats(h, best, lower),
                     _f(z), _f(paper[("mtal", "aae")][i])])
    return markdown_table(["column", "metric", "MTAL AAE", "best Alone", "MTAL better", "MTAL AAE, held-out w / eta",
                           "held-out better", "MTAL AAE, F0 = 0 (not the papers' F0)", f"paper {name} MTAL"], rows)


def _papers_scoring(res: dict, dataset: str, side: bool = False) -> str:
    """The implicit columns scored as the papers' code scores them (``MAP@10[paper]``, see
    :func:`cdrec.metrics.ranking.paper_list_metrics`), beside the Base and MTAL rows of the paper 001 table that
    holds ``dataset``. With ``side``, the
    side-information MTAL rows (AAE_s) against the best Alone row with or without side information."""
    sfx, model = ("_s", "aae_s") if side else ("", "aae")
    name, _, paper = PAPER_TABLE[dataset]
    rows = []
    for i, c in enumerate(COLS):
        if COLUMNS[c][0] != "implicit":
            continue
        base, o, h = (_cell(res, dataset, c, r, PAPER_METRIC) for r in ("alone-base", f"mtal-aae{sfx}", f"mtal-aae-heldout{sfx}"))
        best = _best_row(res, dataset, c, "alone-", PAPER_METRIC, side=side)
        rows.append([c, _f(base), f"{best[0]} {best[1]:.4f}" if best else "–", _f(o), _beats(o, best, False), _f(h),
                     _beats(h, best, False), f"{_f(paper[('alone', 'base')][i])} / {_f(paper[('mtal', model)][i])}"])
    name = "MTAL AAE_s" if side else "MTAL AAE"
    return markdown_table(["column", "Alone Base", "best Alone" + (" (with or without side information)" if side else ""),
                           name, "MTAL better", f"{name}, held-out w / eta", "held-out better",
                           f"paper {name} Base / MTAL{sfx}"], rows)


def _beats(value: float | None, best: tuple[str, float] | None, lower: bool) -> str:
    """"yes" / "**no**" for ``value`` against the best Alone row (lower or higher is better), "–" when either is missing."""
    if value is None or best is None:
        return "–"
    return "yes" if (value < best[1] if lower else value > best[1]) else "**no**"


def _schedule_note(sched: dict) -> str:
    """Where the schedule departs from the papers', in words."""
    paper = SCHEDULES["paper"]
    notes = []
    if (sched["local_epochs"], sched["local_lr"]) != (paper["local_epochs"], paper["local_lr"]):
        notes.append(f"{sched['local_epochs']} local epochs per round at Adam lr {sched['local_lr']:g} "
                     f"(paper: {paper['local_epochs']} at {paper['local_lr']:g})")
    else:
        notes.append(f"MTAL local training as in the papers ({paper['local_epochs']} epochs, Adam lr {paper['local_lr']:g}, "
                     f"{sched['rounds']} rounds)")
    if sched["cf_epochs"] < paper["cf_epochs"]:
        notes.append(f"at most {sched['cf_epochs']} epochs (early stopping on validation) for the Joint/Alone CF baselines")
    if sched.get("ae_epochs", sched["cf_epochs"]) < paper["ae_epochs"]:
        notes.append(f"{sched.get('ae_epochs', sched['cf_epochs'])} epochs for the AE baselines at Adam lr {sched['ae_lr']:g} "
                     f"(the authors' code: {paper['ae_epochs']}, {paper['ae_schedule']} schedule)")
    if sched.get("assist"):
        notes.append("main MTAL rows with " + ", ".join(f"{k}={v}" for k, v in sched["assist"].items())
                     + " (w on the simplex and eta fitted on each organization's validation entries, not its training "
                       "entries; see the note below)")
    for dataset, override in sched.get("datasets", {}).items():
        notes.append(f"on {DATASET_LABEL[dataset]}: " + ", ".join(SCHEDULE_WORDS.get(k, k + " {}").format(v) for k, v in override.items()))
    notes.append(f"{sched['seeds']} seed(s) (the papers: {paper['seeds']})")
    return "**Departures from the papers' schedule**: " + "; ".join(notes) + "."


def _run_schedule(results: list[RunResult]) -> str:
    """The local schedule a stored MTAL run actually used (from its config)."""
    if not results:
        return "–"
    c = results[0].config or {}
    mp, st = c.get("model_params", {}), c.get("setting", {})
    extra = "".join(f", {k}={st[k]}" for k in ("eta", "weights", "assist_fit") if k in st)
    return f"{st.get('rounds', '?')} rounds x {mp.get('epochs', '?')} local epochs, lr {mp.get('lr', '?')}{extra}"


def _curves(out: Path, res: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [(c, res[("ml-100k", c, "mtal-aae")]) for c in COLS if ("ml-100k", c, "mtal-aae") in res]
    if not present:
        return []
    fig, axes = plt.subplots(1, len(present), figsize=(3.2 * len(present), 3), squeeze=False)
    for ax, (c, rs) in zip(axes[0], present):
        m = _metric(COLUMNS[c][0])
        hist = rs[0].history
        ax.plot([h["round"] for h in hist], [h["test"].get(m) for h in hist], marker="o", label="MTAL AAE")
        for prefix, color, ls in (("alone-", "gray", "--"), ("joint-", "green", ":")):
            best = _best_row(res, "ml-100k", c, prefix, m, side=False)
            if best:
                ax.axhline(best[1], color=color, ls=ls, label=f"best {prefix[:-1].capitalize()} ({best[0][6:]})")
        ax.set_title(c, fontsize=8)
        ax.set_xlabel("assistance round")
        ax.set_ylabel(m)
        ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, out / "rounds.png", dpi=110)
    plt.close(fig)
    return ["## Per-round curves (test, pooled over organizations; round 0 = F0)", "", "![rounds](rounds.png)", ""]


def _ablations(res: dict) -> list[str]:
    col = "explicit/user/uniform"
    get = lambda row: _mean(res.get(("ml-100k", col, row), []), "RMSE") if ("ml-100k", col, row) in res else None  # noqa: E731
    heading = ["## Ablations (ML-100K explicit, user-aligned uniform K=8, RMSE; ablation rows run 5 rounds)", ""]
    if not any(k[:2] == ("ml-100k", col) and _is_ablation(k[2]) for k in res):
        return heading + _not_run("ablation")
    lines = [*heading,
             f"Ablation rows ran with: {_run_schedule(res.get(('ml-100k', col, 'ablation-eta-0.3'), []))}; "
             f"the main run with: {_run_schedule(res.get(('ml-100k', col, 'mtal-aae'), []))}. "
             "Compare rows of one schedule with each other.", ""]
    rows = [["eta = 0.3 (main run, 10 rounds), uniform w", _f(get("mtal-aae"))]]
    for eta in (0.3, 0.1, 1.0, "optimize"):
        rows.append([f"eta = {eta}, uniform w", _f(get(f"ablation-eta-{eta}"))])
    rows.append(["eta = 0.3, optimized w", _f(get("ablation-w-optimize"))])
    lines += [markdown_table(["setting", "RMSE"], rows), "",
              "Paper 002 Table 8 (ML-1M genre, RMSE / NDCG): " + ", ".join(f"{k}: {v[0]} / {v[1]}" for k, v in PAPER_ETA_ML1M.items()), ""]
    rows = [[r, _f(get(f"align-{r}"))] for r in (0.25, 0.5, 0.75)] + [[1.0, _f(get("ablation-eta-0.3"))]]
    lines += ["### Partial alignment (share of users aligned)", "", markdown_table(["align_ratio", "MTAL RMSE"], rows), ""]
    rows = []
    for r in (0.25, 0.5, 0.75):
        cells = []
        for row in (f"cold-{r}-mtal-aae", f"cold-{r}-alone-ae", f"cold-{r}-alone-base"):
            rr = res.get(("ml-100k", col, row))
            cold_org = rr[0].setting.get("cold_start_org") if rr else None
            org = cold_org or (list(rr[0].metrics)[0] if rr else None)
            cells.append(_f(_mean(rr, "RMSE", org)) if rr else "–")
        rows.append([r, *cells])
    lines += ["### Cold start (organization part0 trains on a share of its users, evaluated on the others; RMSE on its new users)", "",
              markdown_table(["cold_start_ratio", "MTAL AAE", "Alone AE", "Alone Base"], rows), ""]
    rows = [["none", _f(get("ablation-eta-0.3"))]] + [[_mechanism(m, PRIVACY_PAPER_SETTING[m]), _f(get(privacy_row(m, PRIVACY_PAPER_SETTING[m])))]
                                                      for m in ("dp", "ip")]
    best = _best_row(res, "ml-100k", col, "alone-", "RMSE", side=False)
    rows.append(["best Alone", _f(best[1] if best else None)])
    lines += ["### Privacy of transmitted residuals (the authors' strengths; Table 5's ML-1M and Douban rows below, `--section privacy` sweeps the strength)", "",
              markdown_table(["mechanism", "RMSE"], rows), ""]
    return lines


def _paper002(res: dict) -> list[str]:
    lines = ["## Paper 002 (DMTCDR) Table 2 columns, user-aligned", ""]

    def ours(ds: str, col_part: str, row: str) -> tuple[str, str]:
        e, i = (res.get((ds, f"{fb}/{col_part}", row)) for fb in ("explicit", "implicit"))
        return (_f(_mean(e, "RMSE")) if e else "–"), (_f(_mean(i, "NDCG@10")) if i else "–")

    for ds, col_part in (("ml-1m", "user/genre"), ("douban", "user/domain")):
        lines += [f"### {DATASET_LABEL[ds]}" + (" (book + music; the paper also had movie)" if ds == "douban" else " (18 genres)"), ""]
        if not any(k[0] == ds and k[1] in (f"explicit/{col_part}", f"implicit/{col_part}") for k in res):
            lines += _not_run(f"{DATASET_LABEL[ds]} {col_part}")
            continue
        rows = []
        for (mode, b), (p_rmse, p_ndcg) in PAPER_002[ds].items():
            rmse, ndcg = ours(ds, col_part, f"{mode}-{b}")
            rows.append([mode, b, rmse, p_rmse, ndcg, p_ndcg])
            if (mode, b) == ("mtal", "aae"):
                rmse, ndcg = ours(ds, col_part, "mtal-aae-heldout")
                rows.append(["mtal", "aae, held-out w / eta", rmse, "–", ndcg, "–"])
                rmse, ndcg = ours(ds, col_part, AUTO_ROW)
                rows.append(["mtal", "each organization's own backbone", rmse, "–", ndcg, "–"])
        lines += [markdown_table(["mode", "model", "RMSE (ours)", "RMSE (paper)", "NDCG@10 (ours)", "NDCG@10 (paper)"], rows), ""]
    return lines


# ----------------------------------------------------------------------------------------- privacy and organizations
PRIVACY_NOTE = (
    "**The mechanisms and their strengths.** Paper 002 adds DP (Dwork) or interval privacy (IP, Ding & Ding) noise "
    "\"to the transmitted residuals\" and prints no strength; the authors' code (`src/make.py`, mode `pl`) runs `dp-10` "
    "and `ip-10` at eta 0.3 with uniform w, which the rows `privacy-dp` / `privacy-ip` run as `setting.privacy_alpha=10` / "
    "`setting.privacy_thresholds=10` (the task's defaults). Both mechanisms clip a message's residuals to their 2.5%-97.5% "
    "quantiles [a, b], as the authors' code does. DP adds Laplace noise of scale (b - a) / alpha: alpha is the epsilon of "
    "the Laplace mechanism for one released value of sensitivity b - a, not an end-to-end epsilon (neither paper nor code "
    "accounts for more): a residual is released again every round (T rounds compose to T x alpha), each of a user's "
    "entries spends it, a and b come from the data unprotected (the IP message carries them), and cdrec draws fresh "
    "noise for each peer, so K - 1 colluding peers that average their copies cut the noise by sqrt(K - 1). IP releases, "
    "for each of `privacy_thresholds` thresholds t drawn uniformly in [a, b], one bit (value < t); the receiver's estimate "
    "(2t - b or 2t - a, averaged over the thresholds) is unbiased. Its privacy is the interval the bits confine a value "
    "to, about 2 (b - a) / (T + 1) wide for a value mid-range, so more thresholds mean less privacy (the authors' docstring "
    "calls the parameter the average interval width; it is the number of thresholds). Noise std of a released value as a "
    "share of b - a: DP sqrt(2) / alpha; IP 1 / sqrt(12 T) for a value mid-range to 1 / sqrt(3 T) at an end. The "
    "predictions sent back are not perturbed (nor in the papers). The Table 5 rows run at their column's MTAL row's eta "
    "(0.3 explicit, 1.0 implicit; the authors' code uses 0.3 for both), so each differs from the row without privacy in "
    "the mechanism only.")
ORG_ROWS = [f"alone-{b}" for b in BACKBONES] + ["mtal-aae", "privacy-dp", "privacy-ip"]
"""The rows of the per-organization tables: paper 002's Alone backbones and MTAL, with DP and IP (Table 5's runs)."""


def _mechanism(mechanism: str, strength: float) -> str:
    """``Laplace DP (alpha = 10)`` / ``interval privacy (10 thresholds)``."""
    return f"Laplace DP (alpha = {strength:g})" if mechanism == "dp" else f"interval privacy ({strength:g} thresholds)"


def _noise_share(mechanism: str, strength: float) -> str:
    """Noise std of one released residual as a share of its clip range b - a (:data:`PRIVACY_NOTE`)."""
    if mechanism == "dp":
        return f"{np.sqrt(2) / strength:.3f}"
    return f"{1 / np.sqrt(12 * strength):.3f}-{1 / np.sqrt(3 * strength):.3f}"


def _improvement(value: float | None, best: float | None, lower: bool) -> str:
    """Paper 002's "Improvement": the gain of ``value`` over the best Alone cell, in % of that cell."""
    if value is None or best is None:
        return "–"
    return f"{100 * ((best - value) if lower else (value - best)) / best:.1f}%"


def _privacy_table5(res: dict) -> list[str]:
    """Paper 002 Table 5 beside our MTAL_DP / MTAL_IP rows, the MTAL row without privacy and the best Alone row."""
    lines = ["## Privacy enhancement: paper 002 Table 5 (MTAL_DP and MTAL_IP at the paper's strengths)", "", PRIVACY_NOTE, ""]
    metrics = ("RMSE", "NDCG@10")
    rows = []
    for ds in ("ml-1m", "douban"):
        part = P002_COLUMN_PART[ds]
        columns = {"RMSE": f"explicit/{part}", "NDCG@10": f"implicit/{part}"}
        if not any(k[0] == ds and k[1] in columns.values() for k in res):
            continue
        best = {m: _best_row(res, ds, c, "alone-", m, side=False) for m, c in columns.items()}
        paper = PAPER_PRIVACY[ds]
        alone = [f"{best[m][1]:.4f} ({best[m][0][6:]})" if best[m] else "–" for m in metrics]
        rows.append([DATASET_LABEL[ds], "Alone (best row)", alone[0], _f(paper["alone"][0]), alone[1], _f(paper["alone"][1]), ""])
        for name, row, cells in (("MTAL, no privacy (paper: Table 2)", "mtal-aae", PAPER_002[ds][("mtal", "aae")]),
                                 *((f"MTAL_{m.upper()}, {_mechanism(m, PRIVACY_PAPER_SETTING[m])}", privacy_row(m, PRIVACY_PAPER_SETTING[m]), paper[m])
                                   for m in ("dp", "ip"))):
            ours = [_cell(res, ds, columns[m], row, m) for m in metrics]
            rows.append([DATASET_LABEL[ds], name, _f(ours[0]), _f(cells[0]), _f(ours[1]), _f(cells[1]),
                         ", ".join(_beats(v, best[m], m == "RMSE") for v, m in zip(ours, metrics))])
    if not rows:
        return lines + _not_run("ML-1M or Douban user-aligned")
    header = ["data", "row", "RMSE (ours)", "RMSE (paper)", "NDCG@10 (ours)", "NDCG@10 (paper)", "better than the best Alone (RMSE, NDCG@10)"]
    return lines + [markdown_table(header, rows), "",
                    "RMSE: explicit feedback, NDCG@10: implicit, in paper 002's user-aligned columns (ML-1M 18 genres; Douban: "
                    "the paper's three organizations book, movie and music, the recipe's two, book and music). NDCG@10 is ours, as "
                    "in the Table 2 section above: each user's held-out rated items ranked, not the papers' scoring.", ""]


def _org_items(runs: dict) -> dict[str, int]:
    """Items (columns) per organization as the first run that records them holds them."""
    for results in runs.values():
        stats = results[0].data_stats.get("organizations") if results else None
        if stats:
            return {org: s.get("n_cols") for org, s in stats.items()}
    return {}


def _per_organization(res: dict) -> list[str]:
    """Each organization's metric for the Alone backbones, MTAL and MTAL_DP / MTAL_IP, beside paper 002's
    per-organization tables (Table 4 for ML-1M, Table 9 for Douban)."""
    lines = ["## Per organization: paper 002 Tables 4 (ML-1M) and 9 (Douban), from the same runs", ""]
    shown = False
    for ds in ("ml-1m", "douban"):
        paper = PAPER_002_ORGS[ds]
        for feedback, metric in (("explicit", "RMSE"), ("implicit", "NDCG@10")):
            column = f"{feedback}/{P002_COLUMN_PART[ds]}"
            runs = {row: res[(ds, column, row)] for row in ORG_ROWS if (ds, column, row) in res}
            if not runs:
                continue
            shown, lower = True, metric == "RMSE"
            ours_orgs = sorted({org for results in runs.values() for r in results for org in r.metrics} - {"overall"})
            orgs = [o for o in paper["orgs"] if o in ours_orgs] + [o for o in ours_orgs if o not in paper["orgs"]]
            items = _org_items(runs)
            table = []
            for org in orgs:
                cells = {row: _mean(runs[row], metric, org) if row in runs else None for row in ORG_ROWS}
                alone = [cells[f"alone-{b}"] for b in BACKBONES if cells[f"alone-{b}"] is not None]
                best = (min if lower else max)(alone) if alone else None
                table.append([org, items.get(org, "–"), *(_f(cells[row]) for row in ORG_ROWS),
                              _improvement(cells["mtal-aae"], best, lower)])
            header = ["organization", "items", *(f"Alone {b}" for b in BACKBONES), "MTAL AAE",
                      *(f"MTAL_{m.upper()} ({PRIVACY_PARAMETER[m]} {PRIVACY_PAPER_SETTING[m]:g})" for m in ("dp", "ip")),
                      "MTAL improvement over the best Alone"]
            cells = paper[metric]
            ptable = [[org, paper["n_k"][i], *(_f(cells[m][i]) for m in [*BACKBONES, "aae"]),
                       _improvement(cells["aae"][i], (min if lower else max)(cells[b][i] for b in BACKBONES), lower)]
                      for i, org in enumerate(paper["orgs"])]
            lines += [f"### {DATASET_LABEL[ds]} {column} ({metric}; mean over the finished seeds, – = no finished run)", "",
                      markdown_table(header, table), "",
                      f"Paper 002 Table {4 if ds == 'ml-1m' else 9} ({metric}):", "",
                      markdown_table(["organization", "items n_k", *(f"Alone {b}" for b in BACKBONES), "DMTCDR AAE",
                                      "improvement over the best Alone (from these rounded cells)"], ptable), ""]
    return lines if shown else lines + _not_run("ML-1M or Douban user-aligned")


OWN_BACKBONE_NOTE = (
    "MTAL is backbone-agnostic: any local model that fits the pseudo-residuals can assist. In the row `mtal-auto` "
    "(`setting.backbone=auto`) each organization, before round 1 and on its own entries only, fits MF, NCF and MLP "
    "exactly as its Alone rows do and the autoencoder as its Alone AE with the AAE's local schedule (`model_params`, "
    "early stopping), scores them on its own validation entries (RMSE explicit, NDCG@10 "
    "implicit; ties to the earlier of MF, NCF, MLP, AAE) and fits the winner to its pseudo-targets over all columns in "
    "every round (a pair model for the epochs its Alone fit kept); nothing of the choice is sent. Everything else is "
    "the `mtal-aae` row's (eta, w, rounds, F0). Metric as in the layout tables: RMSE explicit, MAP@10 implicit.")


def _backbone_choices(results: list[RunResult]) -> list[list[str]]:
    """Per seed: how many organizations chose each backbone, and each organization's choice (``data_stats.backbones``)."""
    rows = []
    for r in sorted(results, key=lambda r: r.seed):
        chosen = {org: rec["chosen"] for org, rec in r.data_stats.get("backbones", {}).items()}
        counts = ", ".join(f"{b} {n}" for b, n in ((b, list(chosen.values()).count(b)) for b in ("mf", "ncf", "mlp", "aae")) if n)
        rows.append([str(r.seed), counts or "–", ", ".join(f"{org}: {b}" for org, b in chosen.items()) or "–"])
    return rows


def _own_backbone(res: dict) -> list[str]:
    """The MTAL row with each organization's own backbone against the best Alone row and the MTAL AAE row, per dataset
    and column, and the backbone each organization chose per seed."""
    lines = ["## MTAL with each organization's own backbone (`setting.backbone=auto`; beyond the papers)", "", OWN_BACKBONE_NOTE, ""]
    shown = False
    for ds, label in DATASET_LABEL.items():
        columns = sorted({k[1] for k in res if k[0] == ds and k[2] in ("mtal-aae", AUTO_ROW)})
        if not columns:
            continue
        shown, rows, choices = True, [], []
        for c in columns:
            m = _metric(c.split("/")[0])
            lower = m == "RMSE"
            best = _best_row(res, ds, c, "alone-", m, side=False)
            fixed, own = (_cell(res, ds, c, r, m) for r in ("mtal-aae", AUTO_ROW))
            rows.append([c, m, f"{best[0]} {best[1]:.4f}" if best else "–", _f(fixed), _f(own), _beats(own, best, lower),
                         _beats(own, ("mtal-aae", fixed) if fixed is not None else None, lower), len(res.get((ds, c, AUTO_ROW), []))])
            choices += [[c, *row] for row in _backbone_choices(res.get((ds, c, AUTO_ROW), []))]
        lines += [f"### {label}", "",
                  markdown_table(["column", "metric", "best Alone (without side information)", "MTAL AAE", "MTAL, own backbone",
                                  "own backbone better than the best Alone", "own backbone better than MTAL AAE", "seeds (own backbone)"], rows), ""]
        lines += [f"Backbone chosen per organization ({label}):", "",
                  markdown_table(["column", "seed", "organizations per backbone", "choice per organization"], choices), ""] if choices else \
                 [f"_Backbone chosen per organization ({label}): no `{AUTO_ROW}` run is finished._", ""]
    return lines if shown else lines + _not_run(f"`{AUTO_ROW}` or `mtal-aae`")


ROUNDS_COLUMN_PART = "user/domain"
"""Columns (``<feedback>/<this>``) whose MTAL runs get the per-round, per-organization section (Douban's book and
music; a dataset with such a column joins the section without more code)."""

ROUND_METRIC = {"explicit": "RMSE", "implicit": "NDCG@10"}
"""Validation (per organization) and test (pooled) metric of the per-round tables: each organization's round choice
is made on it (RMSE explicit, NDCG@10 implicit)."""


def _weights(w: list[float] | None) -> str:
    return "–" if w is None else ", ".join(f"{v:.2f}" for v in w)


def _round_rows(result: RunResult, orgs: list[str], metric: str) -> list[list[str]]:
    """One row per recorded round: each organization's validation ``metric``, eta and w, then the pooled test ``metric``."""
    rows = []
    for h in result.history:
        cells = []
        for org in orgs:
            eta = (h.get("eta") or {}).get(org)
            cells += [_f((h.get("valid_by_org") or {}).get(org, {}).get(metric)), "–" if eta is None else f"{eta:g}",
                      _weights((h.get("w") or {}).get(org))]
        rows.append([str(h["round"]), *cells, _f(h.get("test", {}).get(metric))])
    return rows


def _best_round(result: RunResult, org: str, metric: str) -> tuple[int, float, float] | None:
    """(best round, its validation ``metric``, round 0's) of ``org``: argmin for RMSE, argmax otherwise; None when not recorded."""
    points = [(h["round"], h.get("valid_by_org", {}).get(org, {}).get(metric)) for h in result.history]
    points = [(r, v) for r, v in points if v is not None]
    if not points:
        return None
    best = (min if metric == "RMSE" else max)(points, key=lambda p: p[1])
    return best[0], best[1], points[0][1]


def _alone_valid(res: dict, ds: str, column: str, row: str, result: RunResult, org: str, metric: str) -> tuple[str, float] | None:
    """``org``'s own Alone validation figure (what it is, value): for ``mtal-auto`` its chosen backbone's
    (``data_stats.backbones``), for ``mtal-aae`` the best of the finished ``alone-*`` runs' ``valid_metrics`` (same seed);
    None when not recorded."""
    if row == AUTO_ROW:
        rec = result.data_stats.get("backbones", {}).get(org) or {}
        value = rec.get("valid", {}).get(rec.get("chosen"))
        return (f"its own Alone fit ({rec['chosen']})", value) if value is not None else None
    alone = [(f"best Alone ({b}, seed {result.seed})", r.valid_metrics.get(org, {}).get(metric)) for b in BACKBONES
             for r in res.get((ds, column, f"alone-{b}"), []) if r.seed == result.seed]
    alone = [(name, v) for name, v in alone if v is not None]
    return (min if metric == "RMSE" else max)(alone, key=lambda p: p[1]) if alone else None


def _rounds_by_organization(res: dict) -> list[str]:
    """Per round of each finished ``mtal-aae`` / ``mtal-auto`` run in a :data:`ROUNDS_COLUMN_PART` column (its lowest
    seed): each organization's validation metric, eta and w, the pooled test metric; then each organization's best
    validation round, its gain over round 0 (F0) and its own Alone validation figure."""
    keys = sorted(k for k in res if k[1].endswith("/" + ROUNDS_COLUMN_PART) and k[2] in ("mtal-aae", AUTO_ROW))
    labels = ", ".join(dict.fromkeys(DATASET_LABEL[k[0]] for k in keys)) or "Douban"
    lines = [f"## Per round, per organization ({labels})", "",
             "Round 0 is F0 (the item means); each round adds eta x the organization's fit to the pseudo-residuals, the "
             "assisting organizations' fits weighted by w (– = not used in that round). Each table is the run's lowest "
             "finished seed; validation is each organization's own, test is pooled over organizations.", ""]
    if not keys:
        return lines + _not_run(f"`mtal-aae` or `{AUTO_ROW}` {ROUNDS_COLUMN_PART}")
    for ds, column, row in keys:
        result = min(res[(ds, column, row)], key=lambda r: r.seed)
        metric = ROUND_METRIC[column.split("/")[0]]
        orgs = sorted({org for h in result.history for org in h.get("valid_by_org", {})})
        header = ["round", *(f"{org} {part}" for org in orgs for part in (f"valid {metric}", "eta", "w")), f"test {metric} (pooled)"]
        sentences = []
        for org in orgs:
            best = _best_round(result, org, metric)
            if best is None:
                continue
            sign = 1 if metric == "RMSE" else -1
            alone = _alone_valid(res, ds, column, row, result, org, metric)
            versus = (f"{alone[0]} {alone[1]:.4f}, so MTAL's best is {sign * (alone[1] - best[1]):+.4f} against it (+ = MTAL better)"
                      if alone else "its own Alone validation figure is not recorded")
            sentences.append(f"{org}: best validation {metric} {best[1]:.4f} at round {best[0]}, a gain of "
                             f"{sign * (best[2] - best[1]):.4f} over round 0's {best[2]:.4f}; {versus}.")
        lines += [f"### {DATASET_LABEL[ds]} {column}, `{row}` (seed {result.seed})", "",
                  markdown_table(header, _round_rows(result, orgs, metric)), "", *(f"- {s}" for s in sentences), ""]
    return lines


def _sweep_points(res: dict, dataset: str, quick: bool) -> dict[str, list[tuple[float, float | None]]]:
    """Per mechanism, (strength, test RMSE or None) of ``dataset``'s sweep, weakest first."""
    column = SWEEP_COLUMN[dataset]
    sweep = (PRIVACY_SWEEP_QUICK if quick else PRIVACY_SWEEP)[dataset]
    return {m: [(v, _cell(res, dataset, column, privacy_row(m, v), "RMSE")) for v in values] for m, values in sweep.items()}


def _privacy_sweep(out: Path, res: dict, quick: bool, sections: Sequence[str]) -> list[str]:
    """``--section privacy``: test RMSE against each mechanism's strength per dataset, the best Alone row and the
    MTAL row without privacy beside it (table and ``privacy.png``)."""
    if "privacy" not in sections:
        return []
    lines = ["## Privacy strength sweep (`--section privacy`; beyond the papers)", "",
             "One MTAL run per mechanism and strength, at the settings of the row without privacy (same eta, w and rounds). "
             "Noise: std of a released residual as a share of its clip range (see the note on the mechanisms above). Test "
             "RMSE, lower is better; MTAL is worth its privacy while it stays below the best Alone row.", ""]
    panels = []
    for ds in (PRIVACY_SWEEP_QUICK if quick else PRIVACY_SWEEP):
        column = SWEEP_COLUMN[ds]
        points = _sweep_points(res, ds, quick)
        if not any(v is not None for pts in points.values() for _, v in pts):
            continue
        reference = _cell(res, ds, column, sweep_reference(ds, quick), "RMSE")
        best = _best_row(res, ds, column, "alone-", "RMSE", side=False)
        rows = [["none", "–", "0", _f(reference), _beats(reference, best, True)]]
        summary = []
        for m, pts in points.items():
            rows += [[PRIVACY_LABEL[m], f"{PRIVACY_PARAMETER[m]} = {v:g}", _noise_share(m, v), _f(r), _beats(r, best, True)] for v, r in pts]
            finished = [(v, r) for v, r in pts if r is not None]
            curve = [r for r in [reference, *(r for _, r in finished)] if r is not None]
            losing = [v for v, r in finished if best is not None and r >= best[1]]
            stops = ("–" if best is None else f"from {PRIVACY_PARAMETER[m]} = {losing[0]:g} on" if losing
                     else "at no strength run")
            summary.append(f"{PRIVACY_LABEL[m]}: MTAL stops beating the best Alone {stops}; test RMSE grows with the strength: "
                           + ("yes" if all(a <= b for a, b in zip(curve, curve[1:])) else "**no**"))
        lines += [f"### {DATASET_LABEL[ds]} {column} (best Alone: {f'{best[0]} {best[1]:.4f}' if best else '–'})", "",
                  markdown_table(["mechanism", "strength", "noise / (b - a)", "test RMSE", "better than the best Alone"], rows), "",
                  *(f"- {line}" for line in summary), ""]
        panels.append((ds, column, points, reference, best))
    if not panels:
        return lines + _not_run("strength sweep")
    _plot_privacy(out / "privacy.png", panels)
    return lines + ["![privacy](privacy.png)", ""]


def _plot_privacy(path: Path, panels: list[tuple]) -> None:
    """One row per dataset, one panel per mechanism: test RMSE against the strength (stronger to the right), the
    best Alone row and MTAL without privacy as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 2, figsize=(7, 2.8 * len(panels)), squeeze=False)
    for ax_row, (ds, column, points, reference, best) in zip(axes, panels):
        for ax, (m, pts) in zip(ax_row, points.items()):
            finished = [(v, r) for v, r in pts if r is not None]
            ax.plot([v for v, _ in finished], [r for _, r in finished], marker="o", label=f"MTAL, {PRIVACY_LABEL[m]}")
            if reference is not None:
                ax.axhline(reference, color="tab:blue", ls=":", label="MTAL, no privacy")
            if best is not None:
                ax.axhline(best[1], color="gray", ls="--", label=f"best Alone ({best[0][6:]})")
            ax.axvline(PRIVACY_PAPER_SETTING[m], color="tab:red", lw=0.6, alpha=0.5, label="paper's strength")
            ax.set_xscale("log")
            ax.invert_xaxis()
            ax.set_xlabel(f"{PRIVACY_PARAMETER[m]} (smaller: stronger privacy)")
            ax.set_ylabel("test RMSE")
            ax.set_title(f"{DATASET_LABEL[ds]} {column}: {PRIVACY_LABEL[m]}", fontsize=8)
            ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
