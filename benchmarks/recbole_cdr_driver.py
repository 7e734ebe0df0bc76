"""Train one RecBole-CDR model on cdrec's exported split; run by RecBole-CDR's virtualenv (never imports cdrec).

Usage: ``python recbole_cdr_driver.py spec.json out.json``. The spec names the RecBole-CDR model class,
the pinned source folder (put first on ``sys.path``), the export folder of
:func:`benchmarks.cdr_export.export_two_domain` (source and target domain datasets as benchmark files)
and its candidates JSON, the epochs per training phase, batch size, learning rate, embedding size and
the seed of RecBole-CDR's start and draws (``seed``, default 0).

A model trains in the phases its own YAML lists (``train_epochs``: ``BOTH`` for most, ``SOURCE``,
``TARGET`` then ``OVERLAP`` for EMCDR), each for ``spec["epochs"]`` epochs without validation or early
stopping. Every training pass is timed (``Trainer._train_epoch``, wall and CPU seconds) with its
phase, and the rows the training loaders hand out are counted (:func:`count_training_rows`); the trained model (in its final ``OVERLAP`` phase, as RecBole-CDR evaluates it) then scores
cdrec's exact target-domain 1+99 test candidates with its own ``predict``, and RecBole-CDR's own
sampled 1+99 evaluation of the same test rows is recorded beside them. A failure at any stage is
written to the result (``failed``: the stage, ``error``: what was raised) instead of a traceback exit,
so the benchmark can say why RecBole-CDR could not run a model.
"""

from __future__ import annotations

import importlib.util  # noqa: F401  (RecBole-CDR's get_model calls importlib.util.find_spec without importing it)
import json
import os
import sys
import time
import traceback
from pathlib import Path

from recbole_driver import clock_epochs, hit_ndcg_at_10, own_peak_rss_mb



def phases_of(src: str, model: str, epochs: int) -> list[str]:
    """The model's training phases (its YAML's ``train_epochs``, default ``BOTH``), each ``epochs`` long."""
    import yaml

    path = Path(src) / "recbole_cdr" / "properties" / "model" / f"{model}.yaml"
    own = yaml.safe_load(path.read_text()) if path.exists() else None
    schemes = [p.split(":")[0] for p in (own or {}).get("train_epochs", ["BOTH:1"])]
    return [f"{s}:{epochs}" for s in schemes]


def config_dict(spec: dict, phases: list[str]) -> dict:
    """RecBole-CDR's configuration: both domains from the export as benchmark files (no filtering, no
    re-split; a model with a ``SOURCE`` phase splits its source into cdrec's train and valid rows), the
    shared schedule, uni100 evaluation of the target, no checkpoints, no validation."""
    splits_source = any(p.startswith("SOURCE:") for p in phases)
    cand = json.loads(Path(spec["candidates"]).read_text())

    def domain(name: str, parts: list[str]) -> dict:
        return {
            "dataset": name, "data_path": spec["export_dir"], "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id",
            "RATING_FIELD": None, "TIME_FIELD": None, "load_col": {"inter": ["user_id", "item_id"]}, "benchmark_filename": parts,
            "user_inter_num_interval": None, "item_inter_num_interval": None, "val_interval": None,
        }

    dim = spec["dim"]
    return {
        "source_domain": domain(cand["source"], ["train", "valid"] if splits_source else ["train"]),
        "target_domain": domain(cand["target"], ["train", "valid", "test"]),
        # the trainer's sampled evaluation reads the item field by the top-level name: the target's, renamed
        "USER_ID_FIELD": "target_user_id", "ITEM_ID_FIELD": "target_item_id",
        "train_epochs": phases,
        "train_batch_size": spec["batch_size"],
        "learning_rate": spec["lr"],
        "embedding_size": dim, "source_embedding_size": dim, "target_embedding_size": dim,
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "split_valid": {"RS": [0.8, 0.2]}, "group_by": "user", "order": "RO", "mode": "uni100"},
        "metrics": ["Hit", "NDCG"], "topk": [10], "valid_metric": "NDCG@10",
        "eval_step": spec["epochs"] + 1, "stopping_step": 10**6,
        "seed": int(spec.get("seed", 0)), "reproducibility": True, "show_progress": False, "state": "WARNING",
        "use_gpu": spec.get("device") == "cuda", "gpu_id": 0, "checkpoint_dir": spec["checkpoint_dir"],
        "save_dataset": False, "save_dataloaders": False, "log_wandb": False,
    }


def count_training_rows(train_data) -> dict[str, int]:
    """Count, in place, the observed rows RecBole-CDR's training loaders hand out: each source and
    target batch's interactions before RecBole adds its sampled negatives (one per interaction here,
    as cdrec's BPR draws one), and each overlap batch's users (EMCDR's mapping phase)."""
    counts = {"source": 0, "target": 0, "overlap_users": 0}

    def count(loader, key: str, method: str) -> None:
        original = getattr(loader, method)

        def counted(*args):
            out = original(*args)
            counts[key] += len(args[0] if args else out)
            return out

        setattr(loader, method, counted)

    count(train_data.source_dataloader, "source", "_neg_sampling")
    count(train_data.target_dataloader, "target", "_neg_sampling")
    count(train_data.overlap_dataloader, "overlap_users", "_next_batch_data")
    return counts


def score_cdrec_candidates(model, dataset, cand: dict, device: str, chunk: int = 256) -> dict:
    """HR@10 / NDCG@10 of the trained model on cdrec's target test candidates (raw tokens), scored by
    ``model.predict`` on (user, item) pairs; a candidate item RecBole-CDR never saw ranks last."""
    import numpy as np
    import torch
    from recbole.data.interaction import Interaction

    target = dataset.target_domain_dataset
    users_of, items_of = target.field2token_id[target.uid_field], target.field2token_id[target.iid_field]
    users = np.asarray([users_of[u] for u in cand["users"]], dtype=np.int64)
    tokens = np.asarray(cand["items"])
    lookup = np.vectorize(lambda t: items_of.get(t, -1), otypes=[np.int64])
    items = lookup(tokens)
    known = items >= 0
    scores = np.empty(items.shape, dtype=np.float64)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(users), chunk):
            u = np.repeat(users[start:start + chunk], items.shape[1])
            i = np.where(known[start:start + chunk], items[start:start + chunk], 0).reshape(-1)
            batch = Interaction({model.TARGET_USER_ID: torch.as_tensor(u), model.TARGET_ITEM_ID: torch.as_tensor(i)}).to(device)
            scores[start:start + chunk] = model.predict(batch).view(-1, items.shape[1]).float().cpu().numpy()
    scores[~known] = -np.inf
    return {**hit_ndcg_at_10(scores), "unknown_candidate_items": int((~known).sum()), "unknown_positives": int((~known[:, 0]).sum())}


def own_evaluation(trainer, test_data) -> dict:
    """RecBole-CDR's own uni100 evaluation of the target's test rows (its own negatives), a cross-check
    only: on failure the error is recorded in its place and the run still counts."""
    try:
        return {k: float(v) for k, v in dict(trainer.evaluate(test_data, load_best_model=False, show_progress=False)).items()}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "where": frames(exc)[-1]}


def frames(exc: BaseException, last: int = 4) -> list[str]:
    """The last frames of an exception's traceback as ``file.py:line in function`` (no machine's folders)."""
    return [f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in traceback.extract_tb(exc.__traceback__)[-last:]]


def phase_medians(phases: list[str], wall: list[float]) -> dict[str, float]:
    """Median epoch seconds of each phase (the epochs come phase by phase, ``epochs`` each)."""
    import numpy as np

    per = int(phases[0].split(":")[1])
    return {p.split(":")[0]: float(np.median(wall[k * per:(k + 1) * per])) for k, p in enumerate(phases) if wall[k * per:(k + 1) * per]}


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    sys.path.insert(0, spec["src"])
    out: dict = {"library": "recbole-cdr", "model": spec["model"]}
    stage = "import"
    try:
        import torch

        torch.set_num_threads(int(spec.get("threads", 1)))
        from recbole.utils import init_seed
        from recbole_cdr.config import CDRConfig
        from recbole_cdr.data import create_dataset, data_preparation
        from recbole_cdr.utils import get_model, get_trainer

        stage = "config"
        phases = phases_of(spec["src"], spec["model"], spec["epochs"])
        out["phases"] = phases
        config = CDRConfig(model=spec["model"], config_dict=config_dict(spec, phases))
        init_seed(config["seed"], config["reproducibility"])
        stage = "dataset"
        t0 = time.perf_counter()
        dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        out["prep_s"] = time.perf_counter() - t0
        stage = "model"
        init_seed(config["seed"], config["reproducibility"])
        model = get_model(config["model"])(config, train_data.dataset).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        stage = "training"
        clock = clock_epochs(trainer)
        walked = count_training_rows(train_data)
        trainer.fit(train_data, valid_data=None, saved=False, show_progress=False)
        out.update(clock)
        out["phase_epoch_s"] = phase_medians(phases, clock["epoch_s"])
        out["phase_epoch_cpu_s"] = phase_medians(phases, clock["epoch_cpu_s"])
        out["dataset_rows"] = {"source": len(dataset.source_domain_dataset.inter_feat), "target_train": len(train_data.target_dataset)}
        # one pass of each phase (the epoch the benchmark times): what the loaders handed out over all epochs / epochs per phase
        out["rows_per_epoch"] = {key: value / spec["epochs"] for key, value in walked.items()}
        out["rows_per_epoch"]["interactions"] = out["rows_per_epoch"]["source"] + out["rows_per_epoch"]["target"]
        stage = "scoring cdrec's candidates"
        t0, cpu = time.perf_counter(), time.process_time()
        out["cdrec_candidates"] = score_cdrec_candidates(model, dataset, json.loads(Path(spec["candidates"]).read_text()), config["device"])
        out["eval_s"], out["eval_cpu_s"] = time.perf_counter() - t0, time.process_time() - cpu
        out["own_protocol"] = own_evaluation(trainer, test_data)
    except Exception as exc:  # the benchmark reports why RecBole-CDR could not run this model
        out["failed"] = stage
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = frames(exc)
        print(traceback.format_exc(), flush=True)
    out["peak_rss_mb"] = own_peak_rss_mb()
    versions = {}
    for name in ("recbole", "torch", "numpy", "scipy", "pandas"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    out["versions"] = versions
    Path(out_path).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(sys.argv[1], sys.argv[2])
