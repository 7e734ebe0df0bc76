"""Train and evaluate one RecBole model; run by the RecBole virtualenv's python (never imports cdrec).

Usage: ``python recbole_driver.py spec.json out.json``. The spec names the model (``BPR`` or
``SASRec``), the atomic-file folder, sizes and epochs. The driver times every training epoch
(``Trainer._train_epoch``), the final test evaluation (RecBole's own 1+99 sampled protocol), and,
when the spec gives ``candidates`` (a JSON of raw user ids and raw candidate item ids, positive
first), ranks those exact candidates with the trained model, so both libraries are also measured on
identical test candidates. Peak memory is the process's ``ru_maxrss``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time


def own_peak_rss_mb() -> float:
    """Peak resident memory of this process (``VmHWM``; ``ru_maxrss`` survives fork + exec on Linux)."""
    try:
        for line in open("/proc/self/status").read().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(open(spec_path).read())
    import numpy as np
    import torch

    torch.set_num_threads(int(spec.get("threads", 1)))
    # RecBole 1.2 predates torch 2.6's weights_only default; nothing here loads untrusted files.
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import get_model, init_seed

    model_name = spec["model"]
    config_dict = {
        "data_path": spec["data_path"],
        "checkpoint_dir": spec["checkpoint_dir"],
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "epochs": spec["epochs"],
        "train_batch_size": spec["batch_size"],
        "eval_batch_size": 4096,
        "learning_rate": spec.get("lr", 0.001),
        "eval_step": spec["epochs"] + 1,
        "stopping_step": 10**6,
        "metrics": ["Hit", "NDCG"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "seed": spec.get("seed", 0),
        "reproducibility": True,
        "show_progress": False,
        "device": spec.get("device", "cpu"),
        "use_gpu": spec.get("device", "cpu") == "cuda",
        "worker": 0,
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "uni100"},
    }
    if spec.get("benchmark"):
        config_dict["benchmark_filename"] = ["train", "valid", "test"]
    if model_name == "BPR":
        config_dict.update({"embedding_size": spec["dim"], "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}})
    else:
        config_dict.update({
            "hidden_size": spec["dim"], "inner_size": spec["dim"] * 4, "n_layers": spec["layers"], "n_heads": spec.get("heads", 2),
            "hidden_dropout_prob": spec.get("dropout", 0.2), "attn_dropout_prob": spec.get("dropout", 0.2),
            "MAX_ITEM_LIST_LENGTH": spec.get("max_len", 50), "loss_type": "CE", "train_neg_sample_args": None,
        })
    config = Config(model=model_name, dataset=spec["dataset"], config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    t0 = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    prep_s = time.perf_counter() - t0
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = Trainer(config, model)
    clock = clock_epochs(trainer)
    trainer.fit(train_data, valid_data=None, saved=False, show_progress=False)
    t0, cpu = time.perf_counter(), time.process_time()
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    eval_s, eval_cpu_s = time.perf_counter() - t0, time.process_time() - cpu
    out = {
        "library": "recbole",
        "model": model_name,
        **clock,
        "prep_s": prep_s,
        "eval_s": eval_s,
        "eval_cpu_s": eval_cpu_s,
        "own_protocol": {k: float(v) for k, v in dict(result).items()},
    }
    if spec.get("candidates"):
        t0 = time.perf_counter()
        out["cdrec_candidates"] = score_candidates(model, test_data, spec["candidates"], config["device"])
        out["cdrec_candidates"]["eval_s"] = time.perf_counter() - t0
    out["peak_rss_mb"] = own_peak_rss_mb()
    out["versions"] = {"recbole": __import__("recbole").__version__, "torch": torch.__version__, "numpy": np.__version__}
    with open(out_path, "w") as fh:
        json.dump(out, fh, indent=2)


def score_candidates(model, test_data, cand_path: str, device: str) -> dict:
    """Rank cdrec's fixed test candidates (raw ids) with RecBole's trained model: HR@10, NDCG@10."""
    import numpy as np
    import torch

    cand = json.loads(open(cand_path).read())
    dataset = test_data._dataset
    uid_field, iid_field = dataset.uid_field, dataset.iid_field
    users = np.asarray([dataset.token2id(uid_field, str(u)) for u in cand["users"]])
    tok = {t: i for i, t in enumerate(dataset.field2id_token[iid_field])}
    items = np.asarray([[tok.get(str(i), 0) for i in row] for row in cand["items"]])
    inter = dataset.inter_feat
    row_of_user = {int(u): r for r, u in enumerate(inter[uid_field].numpy())}
    rows = np.asarray([row_of_user[int(u)] for u in users])
    model.eval()
    with torch.no_grad():
        batch = inter[torch.as_tensor(rows)].to(device)
        scores = model.full_sort_predict(batch).view(len(rows), -1).float().cpu().numpy()
    cs = np.take_along_axis(scores, items, axis=1)
    cs[items == 0] = -np.inf  # an item RecBole never saw cannot be ranked
    return hit_ndcg_at_10(cs)


def hit_ndcg_at_10(scores):
    """HR@10 and NDCG@10 of ``scores[n, 1 + negatives]`` (positive first; a tie counts against it)."""
    import numpy as np

    rank = 1 + (scores[:, 1:] >= scores[:, :1]).sum(axis=1)
    return {
        "hit@10": float(np.mean(rank <= 10)),
        "ndcg@10": float(np.mean(np.where(rank <= 10, 1.0 / np.log2(rank + 1.0), 0.0))),
        "n": int(len(rank)),
    }


def clock_epochs(trainer) -> dict[str, list[float]]:
    """Wrap ``trainer._train_epoch`` (RecBole's one training pass, no evaluation) to record the wall
    and CPU seconds and the loss of every epoch, printed as they come; the lists fill in place."""
    clock: dict[str, list[float]] = {"epoch_s": [], "epoch_cpu_s": [], "losses": []}
    original = trainer._train_epoch

    def timed(*args, **kwargs):
        start, cpu = time.perf_counter(), time.process_time()
        loss = original(*args, **kwargs)
        clock["epoch_s"].append(time.perf_counter() - start)
        clock["epoch_cpu_s"].append(time.process_time() - cpu)
        clock["losses"].append(float(sum(loss) if isinstance(loss, tuple) else loss))
        print(f"EPOCH {len(clock['epoch_s'])} wall_s={clock['epoch_s'][-1]:.3f} cpu_s={clock['epoch_cpu_s'][-1]:.3f} peak_rss_mb={own_peak_rss_mb():.0f}", flush=True)
        return loss

    trainer._train_epoch = timed
    return clock


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(sys.argv[1], sys.argv[2])
