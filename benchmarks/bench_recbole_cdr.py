"""cdrec's two-domain classics beside RecBole-CDR on Douban book -> music, in one run (issue #36).

For each model (default CMF, DTCDR, CoNet, BiTGCF, EMCDR) both libraries train, one after the other,
each in a fresh process of its own (so peak memory is its own) with the same thread count, on the
same rows: cdrec's Douban (the users in both domains, as the UCLR recipe), leave-one-out per user per
domain, 1+99 candidates fixed by seed 0. RecBole-CDR gets that split as atomic benchmark files
(:mod:`benchmarks.cdr_export`: the source's training rows, the target's train / valid / test rows) and,
once trained, scores cdrec's exact target-domain test candidates with its own ``predict``; so HR@10 and
NDCG@10 compare the two on identical lists (cdrec's metric is its target-domain test entry; a
dual-target cdrec model also learns the source's, as RecBole-CDR's does). RecBole-CDR's own uni100
evaluation of the same test rows (its own negatives) is recorded beside it.

Schedule: Adam lr 1e-3, batch 2048, embedding size 64 (RecBole-CDR's default), ``--epochs`` epochs per
training phase without validation or early stopping; each library keeps its own defaults otherwise
(cdrec: BPR over both domains' rows, ``reg`` 1e-5; RecBole-CDR: its models' YAML, pointwise BCE with one
uniform negative). An *epoch* is one training pass: cdrec's covers every training row of both domains
once (Douban: 81,525 book + 65,087 music rows); RecBole-CDR's ``BOTH`` epoch walks the target's rows
with a source batch of the same size beside each target batch, so it sees about as many source rows
as target rows (the rest of the source waits for later epochs; about 130,000 rows here, 11 % fewer
than cdrec's); a model with several phases (EMCDR: ``SOURCE``, ``TARGET``, ``OVERLAP``) counts one
pass of each (the sum of the phases' median epochs; its source and target passes walk every row of
their domain, as cdrec's epoch). Every observed row comes with one sampled negative in both
libraries. Since the two epochs differ in size, the result gives both the **per-epoch** ratio (the
issue's bar, which favours RecBole-CDR by its smaller epoch) and the **per-row** ratio: CPU seconds
per training row (``rows_per_epoch``: cdrec's rows; RecBole-CDR's, counted from what its loaders
hand out, source plus target interactions, EMCDR's overlap users apart). Epoch time is the median
over epochs, as wall and CPU seconds; ratios are cdrec / RecBole-CDR. A model RecBole-CDR cannot run (set-up, data or training failure) is
reported with the stage and the error instead of numbers.

RecBole-CDR runs from its source at a pinned commit in its own virtualenv (:mod:`benchmarks.recbole_cdr_env`).
``--users N`` keeps a seeded sample of N users for a quick end-to-end check (not a measurement).
``--seeds N`` trains every model at seeds 0..N-1 in both libraries (the start and the training draws;
the split and the candidates stay seed 0), a seed's cdrec run then RecBole-CDR's: the table's figures
are the means over seeds, the targets judged on them, and a second table gives mean ± sd of HR@10,
NDCG@10 and the ratios, the paired per-seed differences and how many seeds meet each bar alone
(:func:`aggregate`). ``--models`` picks the models (e.g. ``cmf,conet``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import recbole_cdr_env
from benchmarks.common import ROOT, cdrec_child, log, machine, median, run_child, write_json

MODELS = {"cmf": "CMF", "dtcdr": "DTCDR", "conet": "CoNet", "bitgcf": "BiTGCF", "emcdr": "EMCDR",
          "clfm": "CLFM", "deepapf": "DeepAPF", "natr": "NATR", "sscdr": "SSCDR", "dcdcsr": "DCDCSR"}
"""cdrec's registry name -> RecBole-CDR's model class (every model RecBole-CDR ships)."""
DEFAULT_MODELS = ("cmf", "dtcdr", "conet", "bitgcf", "emcdr")
TARGETS = {"epoch_ratio_max": 0.5, "hit@10_below_max": 0.01}
"""Issue #36's bar: at most half RecBole-CDR's epoch time, HR@10 at most 0.01 below it on the same lists."""
RESULTS = ROOT / "benchmarks" / "results"


def ratio(a: float, b: float) -> float:
    return round(a / b, 4) if b else float("nan")


def recbole_cdr_epoch(theirs: dict[str, Any], key: str) -> float:
    """RecBole-CDR's epoch: the sum over its training phases of each phase's median epoch seconds."""
    return float(sum(theirs[f"phase_{key}"].values()))


def recbole_cdr_rows(theirs: dict[str, Any]) -> float | None:
    """The interactions (source plus target) one RecBole-CDR epoch walks; None when its driver did not
    count them (a result of an older driver)."""
    rows = theirs["rows_per_epoch"]
    return rows.get("interactions") if isinstance(rows, dict) else None


def per_row_ratio(ours: dict[str, Any], theirs: dict[str, Any]) -> float:
    """cdrec / RecBole-CDR CPU seconds per training row (each library's epoch CPU seconds over the
    interactions its epoch walks); NaN when RecBole-CDR's rows were not counted."""
    rows = recbole_cdr_rows(theirs)
    return ratio(ours["epoch_cpu_s"] / ours["rows_per_epoch"], theirs["epoch_cpu_s"] / rows) if rows else float("nan")


def summarize(ours: dict[str, Any], theirs: dict[str, Any] | None, why: str | None) -> dict[str, Any]:
    """One model's row: both sides' figures, the cdrec / RecBole-CDR ratios and the issue's targets,
    or RecBole-CDR's failure (``recbole_cdr.failed`` / ``error``) in place of the comparison."""
    row: dict[str, Any] = {
        "cdrec": {"epoch_s": median(ours["epoch_s"]), "epoch_cpu_s": median(ours["epoch_cpu_s"]), "eval_s": ours["eval_s"],
                  "peak_rss_mb": ours["peak_rss_mb"], "rows_per_epoch": ours["rows_per_epoch"], **ours["metrics"]},
    }
    if why is not None or theirs is None or "failed" in theirs:
        row["recbole_cdr"] = {"failed": (theirs or {}).get("failed", "set-up"), "error": why or theirs.get("error"), "traceback": (theirs or {}).get("traceback")}
        return row
    same = theirs["cdrec_candidates"]
    row["recbole_cdr"] = {
        "epoch_s": recbole_cdr_epoch(theirs, "epoch_s"), "epoch_cpu_s": recbole_cdr_epoch(theirs, "epoch_cpu_s"),
        "phases": theirs["phases"], "phase_epoch_s": theirs["phase_epoch_s"], "eval_s": theirs["eval_s"], "peak_rss_mb": theirs["peak_rss_mb"],
        "rows_per_epoch": theirs["rows_per_epoch"], "same_candidates": same, "own_protocol": theirs.get("own_protocol"),
    }
    rb = row["recbole_cdr"]
    row["ratio"] = {
        "epoch_wall": ratio(row["cdrec"]["epoch_s"], rb["epoch_s"]),
        "epoch_cpu": ratio(row["cdrec"]["epoch_cpu_s"], rb["epoch_cpu_s"]),
        "row_cpu": per_row_ratio(row["cdrec"], rb),
        "peak_memory": ratio(row["cdrec"]["peak_rss_mb"], rb["peak_rss_mb"]),
    }
    row["hit@10_minus_recbole_cdr"] = round(row["cdrec"]["hit@10"] - same["hit@10"], 4)
    row["ndcg@10_minus_recbole_cdr"] = round(row["cdrec"]["ndcg@10"] - same["ndcg@10"], 4)
    row["targets"] = targets_of(row)
    return row


def targets_of(row: dict[str, Any]) -> dict[str, bool]:
    """Which of the issue's bars a compared row meets (its ratios and HR@10 difference)."""
    return {
        "epoch_time": row["ratio"]["epoch_wall"] <= TARGETS["epoch_ratio_max"],
        "epoch_cpu_time": row["ratio"]["epoch_cpu"] <= TARGETS["epoch_ratio_max"],
        "row_cpu_time": row["ratio"]["row_cpu"] <= TARGETS["epoch_ratio_max"],
        "hit@10_within_0.01": row["hit@10_minus_recbole_cdr"] >= -TARGETS["hit@10_below_max"],
    }


SPREAD = {"cdrec_hit@10": ("cdrec", "hit@10"), "cdrec_ndcg@10": ("cdrec", "ndcg@10"),
          "recbole_cdr_hit@10": ("recbole_cdr", "same_candidates", "hit@10"), "recbole_cdr_ndcg@10": ("recbole_cdr", "same_candidates", "ndcg@10"),
          "hit@10_minus_recbole_cdr": ("hit@10_minus_recbole_cdr",), "ndcg@10_minus_recbole_cdr": ("ndcg@10_minus_recbole_cdr",),
          "epoch_ratio_wall": ("ratio", "epoch_wall"), "epoch_ratio_cpu": ("ratio", "epoch_cpu"), "row_cpu_ratio": ("ratio", "row_cpu")}
"""The figures a multi-seed row gives as mean and standard deviation over seeds (name -> path in a row)."""


def mean_sd(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (0 for one value), minimum and maximum of ``values``, and the values."""
    array = np.asarray(values, dtype=float)
    return {"mean": round(float(array.mean()), 4), "sd": round(float(array.std(ddof=1)) if len(array) > 1 else 0.0, 4),
            "min": round(float(array.min()), 4), "max": round(float(array.max()), 4), "values": [round(float(v), 4) for v in array]}


def mean_leaves(trees: list[dict[str, Any]]) -> dict[str, Any]:
    """The first tree with every number (not a flag) replaced by its mean over ``trees`` (same keys)."""
    out: dict[str, Any] = {}
    for key, value in trees[0].items():
        if isinstance(value, dict):
            out[key] = mean_leaves([tree[key] for tree in trees])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(np.mean([tree[key] for tree in trees]))
        else:
            out[key] = value
    return out


def aggregate(rows: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """One model's row over several seeds (``rows[k]`` from ``seeds[k]``, each :func:`summarize`'s): the
    row's figures are their means over seeds (the ratios and differences the means of the per-seed ones)
    and the targets are judged on those means; ``spread`` gives mean and standard deviation of the main
    figures (:data:`SPREAD`), ``paired`` counts the seeds that meet each bar on their own, ``per_seed``
    keeps every seed's row. One seed: its row unchanged. A seed where RecBole-CDR failed: that failure."""
    if len(rows) == 1:
        return rows[0]
    failed = [(seed, row) for seed, row in zip(seeds, rows) if "ratio" not in row]
    if failed:
        seed, row = failed[0]
        return {**row, "failed_seed": seed, "per_seed": dict(zip(map(str, seeds), rows))}
    row = mean_leaves(rows)
    row["targets"] = targets_of(row)

    def at(tree: dict[str, Any], path: tuple[str, ...]) -> float:
        for key in path:
            tree = tree[key]
        return float(tree)

    row["spread"] = {name: mean_sd([at(r, path) for r in rows]) for name, path in SPREAD.items()}
    row["paired"] = {f"seeds_{bar}": sum(bool(r["targets"][bar]) for r in rows) for bar in rows[0]["targets"]}
    row["paired"]["seeds"] = len(rows)
    row["per_seed"] = dict(zip(map(str, seeds), rows))
    return row


def markdown(result: dict[str, Any]) -> str:
    """The Markdown page of one run: what ran, then one table row per model (a failure says why)."""
    cfg, env = result["config"], result["recbole_cdr_env"]
    seeds = cfg.get("seeds", [0])
    packages = ", ".join(f"{k} {v}" for k, v in sorted(env.items()) if k != "recbole_cdr_commit")
    lines = [
        f"# cdrec vs RecBole-CDR ({result['dataset']}, {cfg['source']} -> {cfg['target']})",
        "",
        (f"**Quick check on {cfg['users']} sampled users, {cfg['epochs']} epoch(s): not a measurement.**" if cfg["users"]
         else f"{cfg['epochs']} epoch(s) per phase, all users.")
        + (f" Seeds {', '.join(map(str, seeds))} (start and training draws of both libraries; split and candidates seed 0): every figure of "
           "the first table is the mean over seeds, the targets judged on the means; the second gives mean ± sd and the seeds meeting each bar alone."
           if len(seeds) > 1 else ""),
        f"Threads per process: {result['machine']['threads_per_process']}; load average at start {result['machine']['load_average_at_start']}; "
        + (f"RecBole-CDR {env['recbole_cdr_commit'][:7]} on {packages}." if env else "RecBole-CDR was not set up (the rows say why)."),
        "Epoch: median wall (CPU) seconds of a training pass; ratios cdrec / RecBole-CDR; per row: CPU seconds per training interaction an epoch walks "
        "(rows: cdrec / RecBole-CDR, thousands); HR@10 and NDCG@10 on cdrec's target-domain 1+99 test candidates for both.",
        "",
        "| model | cdrec s/epoch | RecBole-CDR s/epoch | epoch ratio wall (CPU) | rows per epoch (k) | per-row CPU ratio | peak MB cdrec / RecBole-CDR (ratio) | HR@10 cdrec / RecBole-CDR | NDCG@10 cdrec / RecBole-CDR | targets met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in result["models"].items():
        ours = row.get("cdrec")
        if ours is None:
            lines.append(f"| {name} | cdrec failed: {row['cdrec_error']} | | | | | | | | |")
            continue
        rb = row["recbole_cdr"]
        cdrec_epoch = f"{ours['epoch_s']:.3f} ({ours['epoch_cpu_s']:.3f})"
        if "failed" in rb:
            lines.append(f"| {name} | {cdrec_epoch} | RecBole-CDR failed at {rb['failed']}: {rb['error']} | | {ours['rows_per_epoch'] / 1000:.1f} / - | | "
                         f"{ours['peak_rss_mb']:.0f} / - | {ours['hit@10']:.4f} / - | {ours['ndcg@10']:.4f} / - | - |")
            continue
        same, r = rb["same_candidates"], row["ratio"]
        met = ", ".join(k for k, v in row["targets"].items() if v) or "none"
        lines.append(
            f"| {name} | {cdrec_epoch} | {rb['epoch_s']:.3f} ({rb['epoch_cpu_s']:.3f}) | {r['epoch_wall']:.2f} ({r['epoch_cpu']:.2f}) | "
            f"{ours['rows_per_epoch'] / 1000:.1f} / {(recbole_cdr_rows(rb) or float('nan')) / 1000:.1f} | {r['row_cpu']:.2f} | "
            f"{ours['peak_rss_mb']:.0f} / {rb['peak_rss_mb']:.0f} ({r['peak_memory']:.2f}) | {ours['hit@10']:.4f} / {same['hit@10']:.4f} | "
            f"{ours['ndcg@10']:.4f} / {same['ndcg@10']:.4f} | {met} |")
    if len(seeds) > 1:
        lines += seed_table(result["models"])
    unknown = {n: r["recbole_cdr"]["same_candidates"]["unknown_candidate_items"] for n, r in result["models"].items()
               if "same_candidates" in r.get("recbole_cdr", {})}
    if any(unknown.values()):
        lines += ["", f"Candidate items RecBole-CDR never saw in its files, ranked last for it (which favours it; only a --users sample "
                      f"leaves items without rows): {unknown}."]
    return "\n".join(lines) + "\n"


def seed_table(models: dict[str, Any]) -> list[str]:
    """The multi-seed table: mean ± sd over seeds of HR@10, NDCG@10 and the ratios, the paired (per-seed)
    differences cdrec - RecBole-CDR with their smallest, and how many seeds meet each bar on their own."""

    def pm(spread: dict[str, Any], digits: int = 4) -> str:
        return f"{spread['mean']:.{digits}f} ± {spread['sd']:.{digits}f}"

    lines = ["", "| model | HR@10 cdrec | HR@10 RecBole-CDR | HR@10 difference, paired (min) | NDCG@10 cdrec | NDCG@10 RecBole-CDR | "
             "NDCG@10 difference, paired (min) | epoch ratio CPU | epoch ratio wall | per-row CPU ratio | seeds within 0.01 HR@10 / epoch ratio <= 0.5 (CPU) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, row in models.items():
        if "spread" not in row:
            lines.append(f"| {name} | no comparison at seed {row.get('failed_seed', 0)} (first table) | | | | | | | | | |")
            continue
        sp, paired = row["spread"], row["paired"]
        lines.append(
            f"| {name} | {pm(sp['cdrec_hit@10'])} | {pm(sp['recbole_cdr_hit@10'])} | {pm(sp['hit@10_minus_recbole_cdr'])} ({sp['hit@10_minus_recbole_cdr']['min']:+.4f}) | "
            f"{pm(sp['cdrec_ndcg@10'])} | {pm(sp['recbole_cdr_ndcg@10'])} | {pm(sp['ndcg@10_minus_recbole_cdr'])} ({sp['ndcg@10_minus_recbole_cdr']['min']:+.4f}) | "
            f"{pm(sp['epoch_ratio_cpu'], 3)} | {pm(sp['epoch_ratio_wall'], 3)} | {pm(sp['row_cpu_ratio'], 3)} | "
            f"{paired['seeds_hit@10_within_0.01']} / {paired['seeds_epoch_cpu_time']} ({paired['seeds_epoch_time']} wall) of {paired['seeds']} |")
    return lines


def prepare_recbole_cdr(mirror: str | None) -> tuple[Path | None, dict[str, str], str | None]:
    """RecBole-CDR's source and virtualenv: ``(python, versions, None)``, or ``(None, {}, why)``."""
    try:
        recbole_cdr_env.fetch_source(mirror, log)
        py = recbole_cdr_env.ensure(log)
        return py, recbole_cdr_env.versions(py), None
    except Exception as exc:  # a set-up that cannot finish (no source, no pip) is reported, not raised
        return None, {}, f"RecBole-CDR set-up failed: {type(exc).__name__}: {exc}"


def compare_model(name: str, seed: int, base: dict[str, Any], work: Path, rb_python: Path | None, why: str | None, threads: int) -> dict[str, Any]:
    """Both libraries' run of model ``name`` at ``seed`` (start and training draws; the split and the
    candidates stay seed 0), each in its own process: :func:`summarize`'s row, or ``{"cdrec_error": ...}``."""
    tag = name if seed == 0 else f"{name}-seed{seed}"
    log(f"{tag}: cdrec")
    try:
        ours = run_child(cdrec_child(), {**base, "model": name, "seed": seed}, work, f"cdrec-{tag}", threads=threads)
    except RuntimeError as exc:
        return {"cdrec_error": str(exc).splitlines()[-1]}
    theirs, failure = None, why
    if rb_python is not None:
        log(f"{tag}: cdrec HR@10 {ours['metrics']['hit@10']:.4f}, {median(ours['epoch_s']):.3f} s/epoch; RecBole-CDR {MODELS[name]} next")
        rb_spec = {"model": MODELS[name], "src": str(recbole_cdr_env.SRC), "export_dir": str(work / "atomic"), "candidates": str(work / "candidates.json"),
                   "checkpoint_dir": str(work / "ckpt"), "epochs": base["epochs"], "batch_size": base["batch_size"], "lr": base["lr"], "dim": 64,
                   "device": base["device"], "seed": seed}
        try:
            theirs = run_child([str(rb_python), str(Path(__file__).with_name("recbole_cdr_driver.py"))], rb_spec, work, f"recbole-cdr-{tag}", threads=threads, cwd=work)
        except RuntimeError as exc:
            failure = f"the driver process died: {str(exc).splitlines()[-1]}"
    row = summarize(ours, theirs, failure)
    rb = row["recbole_cdr"]
    log(f"{tag}: RecBole-CDR " + (f"failed at {rb['failed']}: {rb['error']}" if "failed" in rb else f"HR@10 {rb['same_candidates']['hit@10']:.4f}, {rb['epoch_s']:.3f} s/epoch"))
    return row


def run(out: Path, *, data_dir: Path | None, models: tuple[str, ...] = DEFAULT_MODELS, epochs: int = 20, users: int | None = None,
        threads: int = 1, device: str = "cpu", source: str = "book", target: str = "music", mirror: str | None = None,
        seeds: tuple[int, ...] = (0,)) -> dict[str, Any]:
    """Run the comparison (each model at every seed of ``seeds``), write ``recbole_cdr.json`` and
    ``recbole_cdr.md`` into ``out``; return the result."""
    from benchmarks.cdr_export import export_two_domain
    from benchmarks.cdrec_driver import two_domain_split

    work = out / "recbole-cdr-work" if out != RESULTS else ROOT / "benchmarks" / "out" / "recbole-cdr-work"
    data = {"name": "douban", "overlap_only": True, **({"data_dir": str(data_dir)} if data_dir else {})}
    base = {"data": data, "model_params": {"source": source, "target": target, "dim": 64}, "users": users,
            "epochs": epochs, "batch_size": 2048, "lr": 1e-3, "device": device}
    split, _, s, t = two_domain_split({**base, "model": models[0]})
    candidates = export_two_domain(split, work / "atomic", s, t)
    (work / "candidates.json").write_text(json.dumps(candidates))
    rb_python, rb_versions, why = prepare_recbole_cdr(mirror)
    if why:
        log(why)
    result: dict[str, Any] = {
        "benchmark": "recbole_cdr", "dataset": "douban", "machine": machine(device, threads), "recbole_cdr_env": rb_versions,
        "config": {"source": source, "target": target, "epochs": epochs, "users": users, "batch_size": 2048, "lr": 1e-3, "dim": 64,
                   "protocol": "leave-one-out per user per domain, 1+99 candidates (seed 0), target domain's test rows",
                   "test_rows": len(candidates["users"]), "seeds": list(seeds)},
        "targets": TARGETS, "models": {},
    }
    for name in models:
        rows: list[dict[str, Any]] = []
        for seed in seeds:
            row = compare_model(name, seed, base, work, rb_python, why, threads)
            if "cdrec" not in row:
                break
            rows.append(row)
        if len(rows) < len(seeds):
            result["models"][name] = {**row, **({"failed_seed": seed} if len(seeds) > 1 else {})}
        else:
            result["models"][name] = {**aggregate(rows, list(seeds)), "config": {"recbole_cdr_model": MODELS[name], "cdrec_model_params": base["model_params"]}}
        write_json(out / "recbole_cdr.json", result)
    write_json(out / "recbole_cdr.json", result)
    (out / "recbole_cdr.md").write_text(markdown(result))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_recbole_cdr", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS, help="where recbole_cdr.json and recbole_cdr.md go (work files: benchmarks/out/recbole-cdr-work)")
    ap.add_argument("--data-dir", type=Path, default=None, help="folder holding douban-ga-dtcdr/ (default: $CDREC_DATA_DIR, else ../shared/data)")
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated cdrec names of " + ",".join(MODELS))
    ap.add_argument("--epochs", type=int, default=20, help="epochs per training phase, both libraries")
    ap.add_argument("--seeds", type=int, default=1, help="train each model at seeds 0..N-1 in both libraries (start and training draws; "
                    "the split and candidates stay seed 0): the table gives means, a second one mean ± sd and the seeds meeting each bar")
    ap.add_argument("--users", type=int, default=None, help="a seeded sample of this many users (a quick check, not a measurement)")
    ap.add_argument("--threads", type=int, default=1, help="torch / BLAS threads of every timed process")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--source", default="book")
    ap.add_argument("--target", default="music")
    ap.add_argument("--recbole-cdr-mirror", default=None, help=f"a local clone of RUCAIBox/RecBole-CDR when GitHub cannot be reached (or ${recbole_cdr_env.MIRROR_ENV})")
    args = ap.parse_args(argv)
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        print(f"error: --models: unknown {unknown}; expected some of {list(MODELS)}", file=sys.stderr)
        return 2
    if not models:
        print(f"error: --models: expected at least one of {list(MODELS)}", file=sys.stderr)
        return 2
    if args.seeds < 1:
        print(f"error: --seeds: expected a count of at least 1, got {args.seeds}", file=sys.stderr)
        return 2
    result = run(args.out, data_dir=args.data_dir, models=models, epochs=args.epochs, users=args.users, threads=args.threads,
                 device=args.device, source=args.source, target=args.target, mirror=args.recbole_cdr_mirror, seeds=tuple(range(args.seeds)))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
