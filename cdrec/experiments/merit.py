"""``cdrec reproduce merit``: MERIT (ACM MM 2025) Tables 2 and 3 and Fig. 7 on Food-Kitchen and
Beauty-Electronics.

The recipe is data: the datasets, the models, the ablations, the seeds and one schedule per
machine. Every run goes through :func:`cdrec.experiments.pipeline.run_config` (the ``cdrec run``
path) and writes ``runs/<data>/<model>/seed<k>/results.json``; a run whose results exist is not
repeated, so an interrupted reproduction resumes. The report puts the paper's numbers beside ours. It opens
with how many runs of the plan are finished and which are missing, then how the runs depart from the paper
(the schedule beside the authors' code's, and what the model takes from that code); every row of Tables 2
and 3 is there, ``not run`` where no run finished; ``headline`` gives the README's cells (MERIT's test MRR).

Schedules:

* ``paper`` (used when a GPU is present): the authors' code defaults — d=256, AdamW lr 1e-4,
  weight decay 5.0, batch 256, 10 warm-up epochs, ReduceLROnPlateau, early stopping after 61
  epochs without a better validation MRR sum, at most 500 epochs; 3 seeds, ablations 3 seeds.
  The plateau factor is the authors' ``demo.sh`` one: 0.4 on Food-Kitchen, 0.8 on
  Beauty-Electronics (``--lr_g``; ``main.py``'s default 0.5 is not what they ran). Their latest
  ``main.py`` defaults to 1 warm-up epoch, the earlier one (and this schedule) to 10.
* ``cpu`` (reduced, no GPU): d=32, dropout 0.2, AdamW lr 5e-3, weight decay 0.05, batch 128, no
  warm-up, ReduceLROnPlateau halving the lr after 2 epochs without a better validation MRR sum,
  early stopping after 3 such epochs, at most 20 epochs; 3 seeds, ablations on Beauty-Electronics
  with one seed. The whole plan's time has not been measured since ``pop``, ``itemknn``, ``cd-sasrec``,
  ``cd-asr``, ``mgcl``, ``abxi``, ``c2dsr``, ``dream`` and MERIT's per-position negatives joined it
  (before, with SASRec, BERT4Rec and MERIT only, it took about 1.5 h at one thread); the report adds up
  the recorded time of its finished runs and estimates the missing ones from them.
  How it was chosen (validation MRR sum only, MERIT on Beauty-Electronics, seed 0, d=32, batch 128;
  an epoch is one window per user, 35 batches on abe, 56 on afk):
  the previous 3-epoch schedule stopped while validation MRR was still rising steeply
  (lr 2e-3, wd 0.05: 0.085, 0.092, 0.116 after epochs 1-3, 0.247 at epoch 13);
  weight decay 0.5 trailed 0.05 at the same epoch (0.166 vs 0.180 after 5 epochs);
  lr 5e-3 reached 0.239 after 6 epochs (2e-3 needed 12) and 0.249 after 12;
  dropout 0.2 beat 0.5 at lr 5e-3 (0.257 vs 0.239 after 6 epochs).
  Time per training epoch at one thread on the shared machine (load 3-5; validation pass in
  brackets), d = 32 / 64 / 128: MERIT afk 17 / 28 / 95 s (4 / 8 / 25 s), abe 22 / 35 / 75 s;
  SASRec-dt afk 11 / 15 / 32 s, BERT4Rec-dt afk 12 / 22 / 31 s; d=64 doubles MERIT's cost and did
  not fit the session, so d stays 32. The same schedule trains every model (baselines included).
  Several MERIT runs still improve at epoch 20, but a longer, wider schedule (d=64, <= 60 epochs,
  patience 6, seed 0) moved MERIT's test MRR by only 1-5% and left it 13-22% below the paper, so
  ``cpu`` keeps the cheaper d=32 / 20-epoch plan.
* Both ``paper`` and ``cpu`` train MERIT with per-position negatives (``AUTHORS_NEGATIVES``, the
  authors' sampler; chosen on validation MRR, 2026-12-01), which makes a MERIT run about 1.6x slower on
  CPU than the timings above (measured with per-sequence negatives).
* ``quick`` (``--quick``, < 3 minutes): Beauty-Electronics only, d=16, one epoch of 4 batches,
  one seed, one ablation — a smoke test of the whole path, not a result.

Sections (``--section``, repeatable; default ``main``):

* ``main``: Tables 2 and 3 and Fig. 7 with the schedule above.
* ``switches`` (not in the default plan): which behaviours of the authors' code (``model_params.authors_code``,
  :data:`~cdrec.models.sequential.merit.AUTHORS_CODE`) the paper's numbers may depend on. MERIT on
  Beauty-Electronics, seed 0, at ``SWITCH_SCHEDULE`` (``cpu`` with 3 warm-up epochs from the authors'
  factor 1e-5, so the wasted first epoch is there to fix): the paper's text, each switch alone, all of
  them (the authors' code), and the paper's text with ``warmup_start_factor = 1/3``. Judged on the
  validation MRR sum. 8 runs; not measured as a whole: at the ~11 min of one ``cpu`` MERIT run on abe
  with per-position negatives (see ``AUTHORS_NEGATIVES``) about 1.5 h at one thread, which is why it is
  not in the default plan. With ``--quick`` the same variants run at the ``quick`` schedule (a smoke test).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from cdrec.config import load_config
from cdrec.errors import require
from cdrec.experiments.headline import HeadlineRow
from cdrec.experiments.runner import OPTIONS_FILE, Invocation, PlannedRun, coverage_section, failed_section, run_plan
from cdrec.models.sequential.merit import AUTHORS_CODE, MERITParams
from cdrec.results.schema import RunResult, atomic_write_text
from cdrec.results.tables import aggregate_seeds, markdown_table, mean_std, paired_ttest
from cdrec.results.plots import save_figure

DATASETS = {"abe": ("Beauty", "Electronics"), "afk": ("Food", "Kitchen")}
ONE_PASS = ["pop", "itemknn"]
"""Non-sequential baselines (not in the paper) fitted in one pass by the ranking task on the same split and
candidates: the popularity floor and item-based kNN (neighbours across both domains)."""
ONE_PASS_SETS = ["split.protocol=loo-mixed", "split.n_negatives=999", "eval.ks=[5,10]", "train.metric=MRR"]
"""MERIT's protocol for the one-pass baselines (the sequential models' YAML sets it; ``MRR_sum`` is the
sequential task's, and nothing is selected on validation in one pass)."""
BASELINES = [*ONE_PASS, "sasrec-st", "bert4rec-st", "cd-sasrec", "cd-asr", "mgcl", "sasrec-dt", "bert4rec-dt", "abxi", "c2dsr", "dream"]
MODELS = [*BASELINES, "merit"]
RUN_ORDER = [[*ONE_PASS, "merit", "sasrec-dt", "bert4rec-dt", "abxi", "c2dsr", "dream"], ["sasrec-st", "bert4rec-st", "cd-sasrec", "cd-asr", "mgcl"]]
"""Order of the runs within one seed: the one-pass baselines (seconds), MERIT and the dual-target baselines
it must beat on every dataset first, then the single-target ones, so a reproduction cut short still has the
comparison the issue asks for."""
ABLATIONS = ["SF1", "SF2", "SF3", "SF4", "FF1", "MF1", "MF2", "RL1", "RL2"]
METRICS = ["HR@5", "HR@10", "NDCG@10", "MRR"]

# Table 2 of the paper (mean over 5 seeds): HR@5, HR@10, NDCG@10, MRR per domain.
PAPER_TABLE2: dict[str, dict[str, list[float]]] = {
    "sasrec-st": {"Food": [0.1930, 0.2611, 0.1561, 0.1332], "Kitchen": [0.1241, 0.1851, 0.1040, 0.0900], "Beauty": [0.1837, 0.2597, 0.1523, 0.1295], "Electronics": [0.1345, 0.1894, 0.1111, 0.0982]},
    "bert4rec-st": {"Food": [0.1819, 0.2528, 0.1462, 0.1230], "Kitchen": [0.1114, 0.1685, 0.0926, 0.0810], "Beauty": [0.1687, 0.2438, 0.1404, 0.1197], "Electronics": [0.1277, 0.1832, 0.1053, 0.0930]},
    "cd-sasrec": {"Food": [0.1797, 0.2454, 0.1421, 0.1197], "Kitchen": [0.1119, 0.1757, 0.0946, 0.0821], "Beauty": [0.1605, 0.2530, 0.1380, 0.1162], "Electronics": [0.1290, 0.1842, 0.1069, 0.0948]},
    "cd-asr": {"Food": [0.1976, 0.2727, 0.1616, 0.1368], "Kitchen": [0.1345, 0.1995, 0.1107, 0.0941], "Beauty": [0.1661, 0.2550, 0.1424, 0.1211], "Electronics": [0.1355, 0.1938, 0.1122, 0.0987]},
    "mgcl": {"Food": [0.1932, 0.2673, 0.1523, 0.1260], "Kitchen": [0.1467, 0.2157, 0.1203, 0.1017], "Beauty": [0.1364, 0.2109, 0.1162, 0.1001], "Electronics": [0.1537, 0.2159, 0.1273, 0.1118]},
    "sasrec-dt": {"Food": [0.2313, 0.2854, 0.1797, 0.1535], "Kitchen": [0.1510, 0.2168, 0.1248, 0.1062], "Beauty": [0.2292, 0.3262, 0.1866, 0.1530], "Electronics": [0.1481, 0.2169, 0.1236, 0.1058]},
    "bert4rec-dt": {"Food": [0.2223, 0.2956, 0.1727, 0.1427], "Kitchen": [0.1363, 0.2055, 0.1116, 0.0948], "Beauty": [0.1970, 0.3077, 0.1679, 0.1363], "Electronics": [0.1519, 0.2246, 0.1275, 0.1101]},
    "abxi": {"Food": [0.2498, 0.3175, 0.1973, 0.1679], "Kitchen": [0.1737, 0.2410, 0.1415, 0.1206], "Beauty": [0.2807, 0.3835, 0.2245, 0.1846], "Electronics": [0.1659, 0.2389, 0.1385, 0.1200]},
    "c2dsr": {"Food": [0.1984, 0.2574, 0.1546, 0.1311], "Kitchen": [0.1263, 0.1879, 0.1051, 0.0903], "Beauty": [0.1835, 0.2645, 0.1519, 0.1290], "Electronics": [0.1288, 0.1859, 0.1081, 0.0960]},
    "dream": {"Food": [0.2158, 0.2771, 0.1698, 0.1441], "Kitchen": [0.1377, 0.2045, 0.1138, 0.0956], "Beauty": [0.2090, 0.3043, 0.1742, 0.1447], "Electronics": [0.1216, 0.1817, 0.1023, 0.0895]},
    "merit": {"Food": [0.2628, 0.3329, 0.2105, 0.1801], "Kitchen": [0.1873, 0.2603, 0.1522, 0.1287], "Beauty": [0.3073, 0.4054, 0.2425, 0.2004], "Electronics": [0.1837, 0.2619, 0.1515, 0.1297]},
}
# Table 3 of the paper: MRR per domain.
PAPER_TABLE3: dict[str, dict[str, float]] = {
    "MERIT": {"Food": 0.1801, "Kitchen": 0.1287, "Beauty": 0.2004, "Electronics": 0.1297},
    "SF1": {"Food": 0.1751, "Kitchen": 0.1282, "Beauty": 0.1937, "Electronics": 0.1285},
    "SF2": {"Food": 0.1759, "Kitchen": 0.1265, "Beauty": 0.1971, "Electronics": 0.1290},
    "SF3": {"Food": 0.1696, "Kitchen": 0.1201, "Beauty": 0.1909, "Electronics": 0.1213},
    "SF4": {"Food": 0.1754, "Kitchen": 0.1259, "Beauty": 0.1945, "Electronics": 0.1273},
    "FF1": {"Food": 0.1751, "Kitchen": 0.1273, "Beauty": 0.1945, "Electronics": 0.1290},
    "MF1": {"Food": 0.1696, "Kitchen": 0.1219, "Beauty": 0.1878, "Electronics": 0.1183},
    "MF2": {"Food": 0.1719, "Kitchen": 0.1257, "Beauty": 0.1947, "Electronics": 0.1252},
    "RL1": {"Food": 0.1796, "Kitchen": 0.1269, "Beauty": 0.1952, "Electronics": 0.1247},
    "RL2": {"Food": 0.1700, "Kitchen": 0.1207, "Beauty": 0.1764, "Electronics": 0.1274},
}


@dataclass(frozen=True)
class Schedule:
    name: str
    datasets: tuple[str, ...]
    dim: int
    epochs: int
    patience: int
    lr: float
    weight_decay: float
    warmup_epochs: int
    seeds: int
    ablation_seeds: int
    ablations: tuple[str, ...]
    ablation_datasets: tuple[str, ...]
    batch_size: int = 256
    max_batches: int | None = None
    dropout: float | None = None
    """None keeps the models' default (0.5, the authors' code)."""
    lr_patience: int | None = None
    """Epochs without a better validation MRR sum before ReduceLROnPlateau halves the learning rate;
    None keeps the models' default (30, the authors' code)."""
    lr_factors: tuple[tuple[str, float], ...] = ()
    """Per-dataset ReduceLROnPlateau factor; a dataset not named keeps the models' default (0.5)."""
    merit_params: tuple[tuple[str, str], ...] = ()
    """``model_params`` set for MERIT (and its ablations) and ABXI (the same authors' sampler) only."""
    note: str = ""
    """What the report says about this schedule beside the table of its settings."""

    def overrides(self, dataset: str | None = None, model: str | None = None) -> list[str]:
        if model in ONE_PASS:
            return list(ONE_PASS_SETS)
        out = [
            f"model_params.dim={self.dim}", f"train.epochs={self.epochs}", f"train.patience={self.patience}",
            f"train.lr={self.lr!r}", f"train.weight_decay={self.weight_decay!r}", f"model_params.warmup_epochs={self.warmup_epochs}",
            f"train.batch_size={self.batch_size}",
        ]
        if self.max_batches is not None:
            out.append(f"train.max_batches={self.max_batches}")
        if self.dropout is not None:
            out.append(f"model_params.dropout={self.dropout!r}")
        if self.lr_patience is not None:
            out.append(f"model_params.lr_patience={self.lr_patience}")
        factor = dict(self.lr_factors).get(dataset) if dataset is not None else None
        if factor is not None:
            out.append(f"model_params.lr_factor={factor!r}")
        if model in ("merit", "abxi"):
            out.extend(f"model_params.{key}={value}" for key, value in self.merit_params)
        return out


AUTHORS_NEGATIVES = (("negatives", "position"),)
"""MERIT's training negatives drawn per target position as in the authors' ``TrainDataset`` (the model
default shares them per sequence to meet the CPU memory target at d=256). On Beauty-Electronics, seed 0,
``cpu`` schedule: validation MRR sum 0.2903 vs 0.2837 per sequence, training 605 vs 366 s."""

SCHEDULES = {
    "paper": Schedule("paper", ("abe", "afk"), 256, 500, 61, 1e-4, 5.0, 10, 3, 3, tuple(ABLATIONS), ("abe", "afk"), lr_factors=(("afk", 0.4), ("abe", 0.8)), merit_params=AUTHORS_NEGATIVES),
    "cpu": Schedule("cpu (reduced)", ("abe", "afk"), 32, 20, 3, 5e-3, 0.05, 0, 3, 1, tuple(ABLATIONS), ("abe",), batch_size=128, dropout=0.2, lr_patience=1, lr_factors=(("abe", 0.5), ("afk", 0.5)), merit_params=AUTHORS_NEGATIVES,
                    note="It is the recipe's schedule for a machine without a GPU, chosen on MERIT's validation MRR sum (Beauty-Electronics, "
                         "seed 0), never on test figures; the measurements behind it are in the docstring of `cdrec/experiments/merit.py`."),
    "quick": Schedule("quick (smoke test)", ("abe",), 16, 1, 1, 2e-3, 0.5, 0, 1, 1, ("SF3",), ("abe",), max_batches=4,
                      note="It is a smoke test of the whole path (one epoch of a few batches): its numbers are not a result."),
}


SECTIONS = {
    "main": "Tables 2 and 3 and Fig. 7 (the default plan)",
    "switches": "MERIT with each behaviour of the authors' code alone, on Beauty-Electronics validation (about 1.5 h on CPU)",
}
"""What ``cdrec reproduce merit --section NAME`` runs; the report shows every section whose runs exist."""
DEFAULT_SECTIONS = ("main",)
SWITCH_WARMUP = 3
SWITCH_SCHEDULE = replace(SCHEDULES["cpu"], name="switches (cpu, 3 warm-up epochs)", datasets=("abe",), warmup_epochs=SWITCH_WARMUP,
                          seeds=1, ablation_seeds=0, ablations=(), ablation_datasets=())
"""The ``switches`` section's schedule: ``cpu`` on Beauty-Electronics, one seed, with a warm-up as in the
authors' code (10 epochs there; 3 of the 20 here)."""
SWITCH_VARIANTS: dict[str, tuple[str, ...]] = {
    "paper": (),
    **{name: (f"model_params.authors_code=[{name}]",) for name in AUTHORS_CODE},
    "all": (f"model_params.authors_code=[{','.join(AUTHORS_CODE)}]",),
    "warmup_start_factor": (f"model_params.warmup_start_factor={1 / SWITCH_WARMUP!r}",),
}
"""The ``switches`` section: variant -> its MERIT overrides. ``paper`` = the paper's text (the default),
``all`` = every behaviour of the authors' code at once, ``warmup_start_factor`` = the paper's text with a
warm-up whose first epoch learns (1/3 of lr instead of the authors' 1e-5)."""
SWITCH_PREFIX = "merit-switch-"


def pick_schedule(quick: bool, device: str) -> Schedule:
    if quick:
        return SCHEDULES["quick"]
    gpu = device != "cpu" and torch.cuda.is_available()
    return SCHEDULES["paper" if gpu else "cpu"]


def plan(schedule: Schedule, seeds: int | None) -> list[tuple[str, str, str | None, int]]:
    """``(dataset, model, ablation, seed)`` in the order they run: the main comparison seed by seed
    (within a seed in ``RUN_ORDER``; two seeds first, so a partial run already has Table 2 with a t-test), then the ablations, then
    the remaining seeds."""
    n_seeds = seeds or schedule.seeds
    main = [[(ds, m, None, s) for group in RUN_ORDER for ds in schedule.datasets for m in group] for s in range(n_seeds)]
    n_abl = schedule.ablation_seeds if seeds is None else min(seeds, schedule.ablation_seeds)
    abl = [(ds, "merit", ab, s) for s in range(n_abl) for ds in schedule.ablation_datasets for ab in schedule.ablations]
    first = [r for block in main[:2] for r in block]
    return first + abl + [r for block in main[2:] for r in block]


def run_dir(out: Path, ds: str, model: str, ablation: str | None, seed: int) -> Path:
    return out / "runs" / ds / (model if ablation is None else f"merit-{ablation}") / f"seed{seed}"


def reproduce(out: Path, *, data_dir: Path | None = None, quick: bool = False, seeds: int | None = None, device: str = "auto",
              sections: Sequence[str] = DEFAULT_SECTIONS) -> Path:
    """Train the runs of ``sections`` (default: the baselines, MERIT and its ablations); write ``report.md``,
    the tables and Fig. 7."""
    out = Path(out)
    for section in sections:
        require(section in SECTIONS, f"--section: expected one of {sorted(SECTIONS)}, got {section!r}")
    schedule = pick_schedule(quick, device)
    base = [f"train.device={device}", "train.progress=false"]
    if data_dir is not None:
        base.append(f"data.data_dir={data_dir}")
    require(device in ("auto", "cpu", "cuda"), f"--device: expected auto, cpu or cuda, got {device!r}")
    # (label, run folder, overrides) of every run, in order
    todo: list[tuple[str, Path, list[str]]] = []
    if "main" in sections:
        for ds, model, ablation, seed in plan(schedule, seeds):
            sets = [f"model={model}", f"data.name={ds}", f"seed={seed}", *schedule.overrides(ds, model)]
            if ablation is not None:
                sets.append(f"model_params.ablation={ablation}")
            todo.append((f"{ds}/{model if ablation is None else f'merit[{ablation}]'}/seed{seed}", run_dir(out, ds, model, ablation, seed), sets))
    if "switches" in sections:
        todo += switch_runs(out, SCHEDULES["quick"] if quick else SWITCH_SCHEDULE)
    # check every config (and the data folder) before writing anything
    configs = [load_config(None, [*sets, *base]) for _, _, sets in todo]
    from cdrec.data.datasets import load_dataset

    for ds in dict.fromkeys(c.data.name for c in configs):
        load_dataset(next(c for c in configs if c.data.name == ds).data)  # data present?
    planned = [PlannedRun(label, folder, cfg) for (label, folder, _), cfg in zip(todo, configs)]
    return run_plan(Invocation("merit", out, data_dir, quick, seeds, device, () if tuple(sections) == DEFAULT_SECTIONS else tuple(sections)), planned,
                    lambda failed: report(out, quick=quick, seeds=seeds, device=device, failed=failed))


def switch_runs(out: Path, schedule: Schedule, ds: str = "abe", seed: int = 0) -> list[tuple[str, Path, list[str]]]:
    """The ``switches`` section: one MERIT run per :data:`SWITCH_VARIANTS` entry at ``schedule``."""
    sets = ["model=merit", f"data.name={ds}", f"seed={seed}", *schedule.overrides(ds, "merit")]
    return [(f"{ds}/{SWITCH_PREFIX}{name}/seed{seed}", out / "runs" / ds / f"{SWITCH_PREFIX}{name}" / f"seed{seed}", [*sets, *extra])
            for name, extra in SWITCH_VARIANTS.items()]


def report(out: Path, *, quick: bool = False, seeds: int | None = None, device: str = "auto", failed: Sequence[str] = ()) -> Path:
    """The report of the runs in ``out`` (``cdrec reproduce merit --report-only``): the schedule is read off
    the runs' configs (the GPU and CPU schedules differ in size), the plan it is measured against is rebuilt
    from the options without loading any data, so a report of part of the plan names the missing runs."""
    out = Path(out)
    schedule = trained_schedule(load_runs(out), quick, device)
    sections = ("main", "switches") if "switches" in _recorded(out).get("sections", []) or load_runs(out, switches=True) else ()
    planned = planned_dirs(out, schedule, seeds, sections, quick)
    command = Invocation("merit", Path("docs/reproductions/merit"), quick=quick, seeds=seeds, device=device, sections=sections).command()
    return write_report(out, schedule, failed, planned=planned, continue_command=command, seeds=seeds)


def _recorded(out: Path) -> dict[str, Any]:
    """The options recorded in ``out/reproduce.json`` (empty when there are none)."""
    path = Path(out) / OPTIONS_FILE
    try:
        return dict(json.loads(path.read_text())) if path.exists() else {}
    except (ValueError, TypeError):
        return {}


def trained_schedule(runs: Sequence[tuple[str, str, str | None, RunResult, Path]], quick: bool, device: str) -> Schedule:
    """The schedule the runs were trained with (matched on d and the epoch cap of the first trained run), else
    the one ``quick`` and ``device`` pick (when only the one-pass baselines, which have no schedule, finished)."""
    for _, model, _, res, _ in runs:
        if model not in ONE_PASS:
            trained = (res.config.get("model_params", {}).get("dim"), res.config.get("train", {}).get("epochs"))
            found = next((s for s in SCHEDULES.values() if (s.dim, s.epochs) == trained), None)
            if found is not None:
                return found
    return pick_schedule(quick, device)


def planned_dirs(out: Path, schedule: Schedule, seeds: int | None, sections: Sequence[str] = (), quick: bool = False) -> list[Path]:
    """The run folders of the plan (the main section, plus the ``switches`` one when named), in run order."""
    dirs = [run_dir(Path(out), ds, model, ablation, seed) for ds, model, ablation, seed in plan(schedule, seeds)]
    if "switches" in sections:
        dirs += [folder for _, folder, _ in switch_runs(Path(out), SCHEDULES["quick"] if quick else SWITCH_SCHEDULE)]
    return dirs


# ---------------------------------------------------------------------------------------- report
def load_runs(out: Path, *, switches: bool = False) -> list[tuple[str, str, str | None, RunResult, Path]]:
    """``(dataset, model, ablation, result, folder)`` of the finished runs of the main section, or with
    ``switches`` of the ``switches`` section (the third field is then the variant)."""
    found = []
    for path in sorted((Path(out) / "runs").glob("*/*/seed*/results.json")):
        variant = path.parents[1].name.removeprefix(SWITCH_PREFIX) if path.parents[1].name.startswith(SWITCH_PREFIX) else None
        if (variant is not None) != switches:
            continue
        res = RunResult.read(path)
        found.append((path.parents[2].name, res.model, variant if switches else res.setting.get("ablation"), res, path.parent))
    return found


def _cell(ours: tuple[float, float, int] | None, paper: float | None) -> str:
    text = mean_std(ours)
    return f"{text} ({paper:.4f})" if paper is not None else text


def _num(value: float | None, fmt: str) -> str:
    """``value`` formatted, or – when it is missing or NaN."""
    return "–" if value is None or np.isnan(value) else format(value, fmt)


PROTOCOL = [
    "Protocol: leave-one-out on the mixed sequence, each target ranked against 999 negatives of its domain (never",
    "touched by the user), fixed by the seed; model selection on the sum of the two domains' validation MRR; test",
    "metrics reported. Cells: ours, mean ± std over the finished seeds (one value where one seed finished), and the",
    "paper's (mean of 5 seeds) in brackets.",
]
AUTHORS_CODE_NOTES = [
    "What the model takes from the authors' public code (github.com/DiMarzioBian/MERIT) and what it does not:",
    "",
    "- Where the paper leaves a detail open, the model follows their code: no dropout on the attention probabilities,",
    "  their weight initialisation and their loss normalisation (`attn_dropout`, `init`, `loss_norm` of `MERITParams`).",
    "- The `paper` and `cpu` schedules train MERIT (and ABXI, the same authors' sampler) with their per-position negatives",
    "  (`negatives=position`; the model's default shares them per sequence, which needs far less memory).",
    "- Where their code departs from the paper's text, the model follows the text, and `model_params.authors_code`",
    "  switches on each such behaviour: {switches}. `--section switches` (not in the default plan) measures them",
    "  one at a time on Beauty-Electronics validation.",
    "- Not copied: a later commit's `get_absolute_pos_idx`, which multiplies the masks in place by the reversed",
    "  positions, so that every layer's output is scaled by 1..47.",
    "- Smaller differences: the input holds the last 50 events (theirs 47); the experts' inner width is round(8d/3)",
    "  (theirs 680 at any d; `model_params.ffn_dim`); the 999 test negatives are fixed by the seed (theirs are drawn",
    "  anew, unseeded, at each evaluation), and a negative scored level with the target counts against it.",
    "",
]
"""Report text on the authors' code (``{switches}``: the names of :data:`AUTHORS_CODE`)."""


def _plateau(s: Schedule, default: float) -> str:
    factors = {ds: dict(s.lr_factors).get(ds, default) for ds in s.datasets}
    if len(set(factors.values())) == 1:
        return f"{next(iter(factors.values())):g}"
    return ", ".join(f"{factor:g} on {'-'.join(DATASETS[ds])}" for ds, factor in factors.items())


def _epochs_text(n: int) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


def schedule_table(ours: Schedule, seeds: int | None = None) -> list[str]:
    """The settings of ``ours`` beside those of the authors' code (the ``paper`` schedule), one row each."""
    defaults = MERITParams()
    paper = SCHEDULES["paper"]

    def cells(s: Schedule, n_seeds: int) -> list[str]:
        negatives = dict(s.merit_params).get("negatives", defaults.negatives)
        return [
            str(s.dim), f"{s.dropout if s.dropout is not None else defaults.dropout:g}", f"AdamW, lr {s.lr:g}, weight decay {s.weight_decay:g}",
            str(s.batch_size) + (f", {s.max_batches} batches per epoch" if s.max_batches is not None else ""), _epochs_text(s.warmup_epochs),
            f"patience {s.lr_patience if s.lr_patience is not None else defaults.lr_patience}, factor {_plateau(s, defaults.lr_factor)}",
            f"after {_epochs_text(s.patience)} without a better validation MRR sum", f"at most {s.epochs}", f"per {negatives}", str(n_seeds),
            f"{', '.join('-'.join(DATASETS[ds]) for ds in s.ablation_datasets)}; {s.ablation_seeds} seed{'s' if s.ablation_seeds > 1 else ''}",
        ]

    names = ["embedding size d", "dropout", "optimiser", "batch size", "warm-up", "ReduceLROnPlateau", "early stopping", "epochs",
             "MERIT's negatives", "seeds (Table 2)", "ablations (Table 3)"]
    ours_cells = cells(ours, seeds or ours.seeds)
    paper_cells = cells(paper, paper.seeds)
    paper_cells[names.index("seeds (Table 2)")] += " (the paper: 5)"
    return markdown_table(["setting", "authors' code (`paper` schedule)", f"these runs (`{ours.name}`)"],
                          [[n, p, o] for n, p, o in zip(names, paper_cells, ours_cells)]).splitlines()


def departures_section(schedule: Schedule, seeds: int | None) -> list[str]:
    """How the runs depart from the paper: the schedule (beside the authors' code's) and the model's choices."""
    paper = SCHEDULES["paper"]
    lines = ["## How these runs differ from the paper", ""]
    if schedule.name != paper.name:
        lines += [f"**These runs do not use the paper's schedule.** They ran the `{schedule.name}` schedule: d={schedule.dim} and at most "
                  f"{_epochs_text(schedule.epochs)}, where the authors' code trains d={paper.dim} for up to {paper.epochs} epochs, so numbers "
                  f"below the paper's are expected; they are reported as they are. {schedule.note}".rstrip(), ""]
    else:
        lines += ["These runs use the `paper` schedule, the defaults of the authors' code.", ""]
    lines += [*schedule_table(schedule, seeds), "", *PROTOCOL, ""]
    lines += [line.format(switches=", ".join(f"`{name}`" for name in AUTHORS_CODE)) for line in AUTHORS_CODE_NOTES]
    return lines


def write_report(out: Path, schedule: Schedule, failed: Sequence[str] = (), *, planned: Sequence[Path] | None = None,
                 continue_command: str = "", seeds: int | None = None) -> Path:
    """Build ``report.md``, ``table2.md``, ``table3.md``, ``fig7_gates.png`` and ``curves.png`` from the runs on
    disk. ``planned``: the run folders of the plan (default: ``schedule``'s main plan); the report opens
    with how many of them are finished and which are missing (``continue_command`` trains those)."""
    out = Path(out)
    runs = load_runs(out)
    if planned is None:
        planned = planned_dirs(out, schedule, seeds)
    lines = ["# MERIT reproduction (Tables 2 and 3, Fig. 7)", "", *coverage_section(out, planned, continue_command), *failed_section(failed),
             *departures_section(schedule, seeds)]
    table2, table3, verdict = [], [], []
    for ds in [ds for ds in DATASETS if ds in schedule.datasets]:
        domains = DATASETS[ds]
        main = [r for r in runs if r[0] == ds and r[2] is None]
        agg = {key[0]: value for key, value in aggregate_seeds([replace(r[3], setting={}) for r in main]).items()}  # by model name (the one-pass baselines record scope=joint)
        by_model = {m: [r[3] for r in main if r[1] == m] for m in MODELS}
        table2.append(f"\n### {' - '.join(domains)}\n")
        header = ["model", "seeds"] + [f"{d} {m}" for d in domains for m in METRICS]
        rows = []
        for m in MODELS:
            paper = PAPER_TABLE2.get(m)
            rows.append([m, str(len(by_model[m])) if m in agg else "not run"]
                        + [_cell(agg[m].get(d, {}).get(metric) if m in agg else None, paper[d][METRICS.index(metric)] if paper else None)
                           for d in domains for metric in METRICS])
        table2.append(markdown_table(header, rows))
        table2 += _ttest(domains, agg, by_model)
        verdict += _verdict(ds, domains, agg)
        table3 += _table3(ds, domains, [r for r in runs if r[0] == ds and r[1] == "merit"], schedule)
    lines += ["## Table 2: recommendation performance", *table2, "", "## MERIT against the paper", "", *verdict, "",
              "## Table 3: ablations (MRR)", *table3, "", *switch_section(out)]
    png = plot_gates(runs, out / "fig7_gates.png")
    if png is not None:
        lines += ["## Fig. 7: expert utilization", "", f"![gates]({png.name})", "",
                  "Mean (bars) and std (whiskers) over test targets of the shared-expert and specific-expert gate",
                  "weights of each moFFN output, at the input token each prediction uses, by target domain.", ""]
    curves = plot_curves(runs, out / "curves.png")
    if curves is not None:
        lines += ["## Learning curves", "", f"![validation MRR sum per epoch]({curves.name})", "",
                  "Validation MRR summed over the two domains after each epoch (seed 0; the `-st`, `cd-sasrec`, `cd-asr` and `mgcl` baselines",
                  "are one model per domain, each curve that domain's own validation MRR). The filled marker is",
                  "the epoch whose weights were kept (early stopping on this sum).", ""]
    lines += runs_section(out, planned)
    atomic_write_text(out / "table2.md", "\n".join(table2) + "\n")
    atomic_write_text(out / "table3.md", "\n".join(table3) + "\n")
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _ttest(domains: tuple[str, ...], agg: dict[str, dict[str, dict[str, tuple[float, float, int]]]],
           by_model: dict[str, list[RunResult]]) -> list[str]:
    """Paired t-test (by seed) of MERIT against the baseline with the highest mean, per domain and metric."""
    if not by_model["merit"]:
        return []
    rows = []
    for d in domains:
        for metric in METRICS:
            cands = [(agg[b][d][metric][0], b) for b in BASELINES if b in agg and d in agg[b]]
            if not cands:
                continue
            best_val, best = max(cands)
            t, p = paired_ttest(by_model["merit"], by_model[best], d, metric)
            rows.append([d, metric, best, f"{best_val:.4f}", f"{agg['merit'][d][metric][0]:.4f}", _num(t, ".2f"), _num(p, ".4f")])
    if not rows:
        return []
    return ["\nPaired t-test (by seed) of MERIT against the finished baseline with the highest mean (t and p are – with fewer than 2 seeds of both):\n",
            markdown_table(["domain", "metric", "best baseline", "baseline", "MERIT", "t", "p"], rows)]


def _table3(ds: str, domains: tuple[str, ...], merit_runs: list[tuple[str, str, str | None, RunResult, Path]], schedule: Schedule) -> list[str]:
    """Table 3 (MRR) of one dataset: MERIT and every ablation of the plan, `not run` where none finished."""
    head = f"\n### {' - '.join(domains)} (MRR)\n"
    if ds not in schedule.ablation_datasets:
        pairs = " and ".join("-".join(DATASETS[a]) for a in schedule.ablation_datasets)
        return [head, f"Not in the plan: the `{schedule.name}` schedule runs the ablations on {pairs} only."]
    agg = {key[0]: value for key, value in aggregate_seeds([r[3] for r in merit_runs]).items()}
    rows = []
    for variant in ["MERIT", *schedule.ablations]:
        found = agg.get("merit" if variant == "MERIT" else f"merit[ablation={variant}]")
        vals = [found.get(d, {}).get("MRR") if found else None for d in domains]
        ours_sum = sum(v[0] for v in vals) if all(vals) else None
        paper_sum = sum(PAPER_TABLE3[variant][d] for d in domains)
        rows.append([variant, str(max(v[2] for v in vals)) if all(vals) else "not run",
                     *[_cell(v, PAPER_TABLE3[variant][d]) for v, d in zip(vals, domains)], f"{_num(ours_sum, '.4f')} ({paper_sum:.4f})"])
    return [head, markdown_table(["variant", "seeds", *domains, "sum"], rows)]


def _epochs(res: RunResult) -> list[str]:
    """Epochs run, the kept (best) epoch and the epoch cap of each trained model (``/`` between the
    domains of the per-domain models); a one-pass fit has none."""
    hist = [h for h in res.history if isinstance(h, dict) and "epochs" in h and h.get("fit") != "one-pass"]
    if not hist:
        return ["one pass" if res.history else "–", "–", "–"]
    cap = res.config.get("train", {}).get("epochs")
    return ["/".join(str(len(h["epochs"])) for h in hist), "/".join(str(h["best_epoch"]) for h in hist), "–" if cap is None else str(cap)]


def _at_cap(res: RunResult) -> bool:
    """Whether a model of the run kept the weights of its last allowed epoch (it may still have been improving)."""
    cap = res.config.get("train", {}).get("epochs")
    return any(h.get("best_epoch") == cap for h in res.history if isinstance(h, dict) and h.get("epochs")) and cap is not None


def runs_section(out: Path, planned: Sequence[Path]) -> list[str]:
    """Every finished run with its epochs (kept one beside the cap) and recorded time; the time of the
    finished runs summed, and the missing runs' estimated from the finished runs of the same kind."""
    finished = [(path.parent, RunResult.read(path)) for path in sorted((Path(out) / "runs").glob("*/*/seed*/results.json"))]
    if not finished:
        return []
    seconds = {folder: res.timing.get("train_s", 0.0) + res.timing.get("eval_s", 0.0) for folder, res in finished}
    rows = [[folder.parents[1].name, folder.parent.name, str(res.seed), *_epochs(res), _num(res.timing.get("train_s"), ".0f"),
             _num(res.timing.get("eval_s"), ".0f"), _num(res.timing.get("peak_rss_mb"), ".0f")] for folder, res in finished]
    trained = [res for _, res in finished if _epochs(res)[1] != "–"]
    at_cap = sum(_at_cap(res) for res in trained)
    lines = ["## Runs", "", markdown_table(["data", "run", "seed", "epochs run", "best epoch", "epoch cap", "train s", "eval s", "peak RSS MB"], rows), ""]
    if trained:
        lines += [f"{at_cap} of the {len(trained)} trained runs kept the weights of their last allowed epoch (best epoch = cap): they may still "
                  "have been improving when the schedule stopped them." if at_cap else
                  f"None of the {len(trained)} trained runs kept the weights of its last allowed epoch (each stopped early or peaked before the cap).", ""]
    kind: dict[tuple[str, str], list[float]] = {}
    for folder, value in seconds.items():
        kind.setdefault((folder.parents[1].name, folder.parent.name), []).append(value)
    missing = [p for p in planned if not (p / "results.json").exists()]
    estimates = [float(np.mean(kind[(p.parents[1].name, p.parent.name)])) for p in missing if (p.parents[1].name, p.parent.name) in kind]
    total = sum(seconds.values())
    lines.append(f"Recorded time of the {len(finished)} finished runs: {total:.0f} s ({total / 3600:.1f} h) of training and evaluation, "
                 "on the machine and load each ran with (data loading not counted).")
    if missing:
        unknown = len(missing) - len(estimates)
        if not estimates:
            guess = f"none of its {len(missing)} missing runs has a finished run of the same model on the same data to estimate from"
        else:
            guess = (f"at the mean time of the finished runs of the same model on the same data, {len(estimates)} of its {len(missing)} missing "
                     f"runs would take about {sum(estimates):.0f} s ({sum(estimates) / 3600:.1f} h)"
                     + (f"; the other {unknown} have no such run to estimate from" if unknown else ""))
        lines.append(f"The whole plan's time is not measured: {guess}.")
    return [*lines, ""]


def switch_section(out: Path) -> list[str]:
    """Report lines of the ``switches`` section (none when it has no finished run): validation MRR of
    each variant beside the paper's text; the test MRR is shown but selects nothing."""
    runs = load_runs(out, switches=True)
    if not runs:
        return []
    lines = ["## The authors' code, one behaviour at a time (`--section switches`)", "",
             "MERIT with the paper's text (`paper`), with each behaviour of the authors' code that departs from it",
             "(`model_params.authors_code`, see `AUTHORS_CODE` in `cdrec/models/sequential/merit.py`), with all of them",
             "(`all`), and with a warm-up whose first epoch learns (`warmup_start_factor`). One seed: judge a difference",
             "against the seed spread of Table 2. Validation decides; the test columns select nothing.", ""]
    for ds, domains in DATASETS.items():
        found = {r[2]: r[3] for r in runs if r[0] == ds}
        if not found:
            continue
        ref = found.get("paper")
        ref_valid = ref.valid_metrics.get("overall", {}).get("MRR_sum") if ref is not None else None
        rows = []
        for name in [*SWITCH_VARIANTS, *sorted(set(found) - set(SWITCH_VARIANTS))]:
            res = found.get(name)
            if res is None:
                continue
            valid = res.valid_metrics.get("overall", {}).get("MRR_sum")
            delta = valid - ref_valid if valid is not None and ref_valid is not None and name != "paper" else None
            test = [res.metrics.get(d, {}).get("MRR") for d in domains]
            rows.append([name, " ".join(SWITCH_VARIANTS.get(name, ("?",))).replace("model_params.", "") or "–", _num(valid, ".4f"), _num(delta, "+.4f"),
                         *[_num(res.valid_metrics.get(d, {}).get("MRR"), ".4f") for d in domains], _num(sum(test) if None not in test else None, ".4f"),
                         *_epochs(res), _num(res.timing.get("train_s"), ".0f")])
        lines += [f"### {' - '.join(domains)}", "", markdown_table(
            ["variant", "overrides", "valid MRR sum", "vs paper", *[f"valid {d} MRR" for d in domains], "test MRR sum", "epochs run", "best epoch",
             "epoch cap", "train s"], rows), ""]
    return lines


HEADLINE_CELLS = (("afk", "Food"), ("afk", "Kitchen"), ("abe", "Beauty"), ("abe", "Electronics"))
"""The README's headline cells: MERIT's test MRR per domain (the paper's Table 2)."""


def headline(out: Path) -> list[HeadlineRow]:
    """MERIT's test MRR per domain over its finished Table 2 runs in ``out`` beside the paper's (``ours`` None
    where MERIT has no finished run on that pair); the note names the schedule the runs were trained with."""
    runs = load_runs(out)
    recorded = _recorded(out)
    schedule = trained_schedule(runs, bool(recorded.get("quick", False)), str(recorded.get("device", "auto")))
    merit = {ds: aggregate_seeds([r[3] for r in runs if r[0] == ds and r[1] == "merit" and r[2] is None]) for ds in DATASETS}
    note = f"{schedule.name} schedule: d={schedule.dim}, ≤{schedule.epochs} epochs" + ("" if schedule.name == "paper" else " (the paper's: d=256, ≤500)")
    return [HeadlineRow("MERIT (ACM MM 2025)", f"{ds}: {domain}", "test MRR", PAPER_TABLE2["merit"][domain][METRICS.index("MRR")],
                        next(iter(merit[ds].values()), {}).get(domain, {}).get("MRR"), digits=4, note=note) for ds, domain in HEADLINE_CELLS]


def plot_curves(runs: list[tuple[str, str, str | None, RunResult, Path]], path: Path) -> Path | None:
    """Validation MRR sum per epoch of every seed-0 Table 2 run, one panel per dataset."""
    main = [r for r in runs if r[2] is None and r[3].seed == 0 and any(isinstance(h, dict) and h.get("epochs") for h in r[3].history)]
    if not main:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [ds for ds in DATASETS if any(r[0] == ds for r in main)]
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 3.6), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for _, model, _, res, _ in sorted((r for r in main if r[0] == ds), key=lambda r: MODELS.index(r[1])):
            for h in res.history:
                ys = [e["valid"].get("MRR_sum", np.nan) for e in h.get("epochs", [])]
                if not ys:
                    continue
                label = model if h.get("scope", "joint") == "joint" else f"{model} ({h['scope']})"
                line, = ax.plot(range(1, len(ys) + 1), ys, label=label, lw=1.2)
                best = h.get("best_epoch", 0)
                if 1 <= best <= len(ys):
                    ax.plot([best], [ys[best - 1]], "o", color=line.get_color())
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation MRR (sum of domains)")
        ax.set_title(" - ".join(DATASETS[ds]), fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def _verdict(ds: str, domains: tuple[str, ...], agg: dict[str, dict[str, dict[str, tuple[float, float, int]]]]) -> list[str]:
    """Per domain: does MERIT beat the dual-target SASRec and BERT4Rec on MRR, and is it within 10% of the paper's
    HR@10 and MRR (the issue's target)."""
    if "merit" not in agg:
        return [f"- {ds}: MERIT has no finished run on {'-'.join(domains)}; nothing to compare."]
    lines = []
    merit = agg["merit"]
    for d in domains:
        beats = [f"{b} {('yes' if merit[d]['MRR'][0] > agg[b][d]['MRR'][0] else 'NO') if b in agg and d in agg[b] else 'not run'}" for b in ("sasrec-dt", "bert4rec-dt")]
        rel = []
        for metric in ("HR@10", "MRR"):
            paper = PAPER_TABLE2["merit"][d][METRICS.index(metric)]
            ours = merit[d][metric][0]
            ok = abs(ours - paper) / paper <= 0.10
            rel.append(f"{metric} {ours:.4f} vs {paper:.4f} ({100 * (ours / paper - 1):+.1f}%, {'within' if ok else 'NOT within'} 10%)")
        n = merit[d]["MRR"][2]
        lines.append(f"- {ds} {d} (MERIT: {n} seed{'s' if n > 1 else ''}): MERIT beats on MRR: {', '.join(beats)}; {'; '.join(rel)}")
    return lines


def plot_gates(runs: list[tuple[str, str, str | None, RunResult, Path]], path: Path) -> Path | None:
    """Fig. 7: gate weights per moFFN output on the test set, by target domain."""
    gate_files = [(r[0], r[4] / "gates.json") for r in runs if r[1] == "merit" and r[2] is None and (r[4] / "gates.json").exists()]
    if not gate_files:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [ds for ds in DATASETS if any(g[0] == ds for g in gate_files)]
    panels = [(ds, dom) for ds in datasets for dom in DATASETS[ds]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (ds, dom) in zip(axes[0], panels):
        per_seed = [json.loads(f.read_text()).get(dom, {}) for d, f in gate_files if d == ds]
        names = [n for n in ("M", "M2A", "M2B", "A", "A2M", "A2B", "B", "B2M", "B2A") if all(n in s for s in per_seed) and per_seed]
        if not names:
            continue
        vals = np.array([[s[n] for n in names] for s in per_seed])  # [seeds, outputs, 4]
        mean, std = vals[..., :2].mean(0), vals[..., 2:].mean(0)
        x = np.arange(len(names))
        ax.bar(x - 0.2, mean[:, 0], 0.4, yerr=std[:, 0], label="shared expert", capsize=2)
        ax.bar(x + 0.2, mean[:, 1], 0.4, yerr=std[:, 1], label="specific expert", capsize=2)
        ax.set_xticks(x, [f"H_{n}" for n in names], rotation=60, fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(f"{ds}: target {dom}", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path
