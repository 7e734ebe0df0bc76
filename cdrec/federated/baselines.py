"""The centralized / isolated baselines of the AAE and DMTCDR papers, on the same organizations.

* ``alone``: every organization trains a backbone on its own entries only.
* ``joint``: all organizations' entries pooled into one model (the centralized upper reference).
* ``mtcdr``: the CF backbones with the aligned (row) embeddings shared across organizations and one
  prediction head per organization, trained centrally (DMTCDR Section 5.1).

Backbones: ``base`` (F0), ``mf``, ``mlp``, ``ncf`` (pair models, Adam, early stopping on the validation
overarching loss) and ``ae`` (the autoencoder whose output columns are its input columns). Every
model is trained with the overarching loss (MSE on ratings / BCE-with-logits on labels).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

from cdrec.errors import require
from cdrec.federated.alignment import Entries, Federation, OrgHoldings
from cdrec.federated.backbones import LOCAL_BACKBONES, PAIR_MODELS, BackboneChoice
from cdrec.federated.organization import autoencoder_inputs, base_model, key_metrics, overarching, side_dims
from cdrec.models.assisted.aae import AAEParams, AE, fit_autoencoder, predict_autoencoder
from cdrec.models.assisted.blocks import fit_pairs, predict_pairs

BACKBONES = ("base", "mf", "mlp", "ncf", "ae")
MODES = ("joint", "alone", "mtcdr")


@dataclass
class BaselineConfig:
    epochs: int = 30
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 5e-4
    pair_weight_decay: float = 0.0
    patience: int = 3
    ae: AAEParams | None = None
    # output-layer bias of the Joint / Alone AE at the start: "zero" (the authors' ``src/models/ae.py``
    # zero-initializes every bias, so the network learns the rating level itself) or "f0" (the per-column
    # base model F0). Measured on ML-100K (report, 2026-12-01): "f0" overfits within ~10 epochs
    # (test RMSE 0.973 at the best validation epoch) where "zero" reaches 0.937.
    ae_bias_init: str = "zero"
    seed: int = 0
    device: str = "cpu"


@dataclass
class Block:
    """A pool of entries with one column space: ``cols`` are global within the block."""

    train: Entries
    valid: Entries
    test: Entries
    groups: dict[str, np.ndarray]
    n_cols: int
    row_side: np.ndarray | None
    col_side: np.ndarray | None


def _pool(fed: Federation, which: list[int]) -> Block:
    offs = np.concatenate([[0], np.cumsum([fed.orgs[k].n_cols for k in which])])
    parts, groups = {}, {}
    for part in ("train", "valid", "test"):
        ents, grp = [], []
        for j, k in enumerate(which):
            e = getattr(fed.orgs[k], part)
            ents.append(Entries(e.rows, e.cols + offs[j], e.y, e.users, e.items))
            grp.append(np.full(len(e), j))
        parts[part] = Entries.concat(ents)
        groups[part] = np.concatenate(grp)
    sides = [fed.orgs[k].col_side for k in which]
    col_side = np.concatenate(sides) if all(s is not None for s in sides) else None
    return Block(parts["train"], parts["valid"], parts["test"], groups, int(offs[-1]), fed.orgs[which[0]].row_side, col_side)


def block_rows(block: Block) -> np.ndarray:
    """The rows a block's entries are on, sorted: all its pair model keeps (initialized as in a table of all rows, so
    the same numbers; see PairModel.keep_rows)."""
    return np.unique(np.concatenate([block.train.rows, block.valid.rows, block.test.rows]))


class BlockFit(NamedTuple):
    """Scores of a fitted backbone on a block's validation and test entries, and the epochs of the state kept
    (the best validation epoch; 0 for the base model, which trains none)."""

    valid: np.ndarray
    test: np.ndarray
    epochs: int


def best_epoch(history: list[float]) -> int:
    """The epoch (from 1) of the lowest validation value of a fit's history: the state early stopping keeps."""
    return int(np.argmin(history)) + 1 if history else 0


def fit_block(block: Block, backbone: str, feedback: str, cfg: BaselineConfig, n_groups: int, n_rows: int) -> BlockFit:
    """Train ``backbone`` on the block; returns scores on its valid and test entries."""
    tr, va, te = block.train, block.valid, block.test
    if backbone == "base":
        base = base_model(tr, block.n_cols, feedback)
        return BlockFit(base.predict(va.cols), base.predict(te.cols), 0)
    torch.manual_seed(cfg.seed)
    if backbone == "ae":
        params = cfg.ae or AAEParams()
        data = autoencoder_inputs(tr, feedback, (n_rows, block.n_cols), block.row_side, block.col_side)
        targets = sp.csr_matrix((tr.y.astype(np.float32), (tr.rows, tr.cols)), shape=(n_rows, block.n_cols))
        model = AE(block.n_cols, block.n_cols, params, **side_dims(block.row_side, block.col_side))
        require(cfg.ae_bias_init in ("zero", "f0"), f"ae_bias_init: expected zero or f0, got {cfg.ae_bias_init!r}")
        if cfg.ae_bias_init == "f0":
            f0 = base_model(tr, block.n_cols, feedback)
            with torch.no_grad():  # start the output layer at the base model F0 (per-column mean / popularity)
                model.out_bias.copy_(torch.as_tensor(f0.values, dtype=torch.float32))
        validate = (lambda: overarching(feedback, predict_autoencoder(model, data, va.rows, va.cols, device=cfg.device), va.y)) if len(va) else None
        # a cosine schedule runs to its end, as the authors' 200-epoch AE baselines; the best validation epoch is kept
        history = fit_autoencoder(model, data, targets, loss="mse" if feedback == "explicit" else "bce", seed=cfg.seed, device=cfg.device,
                                  epochs=cfg.epochs, validate=validate, patience=cfg.epochs if params.lr_schedule == "cosine" else cfg.patience)
        return BlockFit(predict_autoencoder(model, data, va.rows, va.cols, device=cfg.device),
                        predict_autoencoder(model, data, te.rows, te.cols, device=cfg.device), best_epoch(history) if validate is not None else cfg.epochs)
    cls, pcls = PAIR_MODELS[backbone]
    model = cls(n_rows, block.n_cols, pcls(), n_groups=n_groups, **side_dims(block.row_side, block.col_side))
    mean = float(tr.y.mean())
    model.init_output_bias(mean if feedback == "explicit" else float(np.log(mean + 1e-6) - np.log1p(-mean + 1e-6)))
    g = block.groups if n_groups > 1 else {k: np.zeros_like(v) for k, v in block.groups.items()}
    used = block_rows(block)
    model.keep_rows(used)
    row_side = block.row_side[used] if block.row_side is not None else None

    def predict(e: Entries, grp: np.ndarray) -> np.ndarray:
        return predict_pairs(model, np.searchsorted(used, e.rows), e.cols, grp, row_side, block.col_side, device=cfg.device)

    validate = (lambda: overarching(feedback, predict(va, g["valid"]), va.y)) if len(va) else None
    history = fit_pairs(model, np.searchsorted(used, tr.rows), tr.cols, g["train"], tr.y, feedback=feedback, row_side=row_side,
                        col_side=block.col_side, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.pair_weight_decay,
                        seed=cfg.seed, validate=validate, patience=cfg.patience, device=cfg.device)
    return BlockFit(predict(va, g["valid"]), predict(te, g["test"]), best_epoch(history) if validate is not None else cfg.epochs)


def choose_backbone(h: OrgHoldings, feedback: str, candidates: tuple[str, ...], cfg: BaselineConfig,
                    clip: tuple[float, float] | None) -> BackboneChoice:
    """One organization's private choice of its MTAL local model: each candidate of :data:`LOCAL_BACKBONES` fitted
    on ``h``'s training entries exactly as its Alone baseline (:func:`fit_block`: the pair models with early stopping
    on the overarching loss at most ``cfg.epochs`` epochs, ``aae`` as the Alone autoencoder for ``cfg.ae.epochs``), and
    scored on ``h``'s own validation entries only (its test entries are not even handed over). The best metric wins
    (lowest RMSE / highest NDCG@10; a missing metric loses); ties go to the earlier candidate of
    :data:`LOCAL_BACKBONES`. Everything is seeded by ``cfg.seed``, so a rerun makes the same choice."""
    require(len(candidates) > 0 and all(c in LOCAL_BACKBONES for c in candidates),
            f"backbone candidates: expected some of {LOCAL_BACKBONES}, got {candidates}")
    no_test = h.test.take(np.zeros(len(h.test), dtype=bool))
    parts = {"train": h.train, "valid": h.valid, "test": no_test}
    block = Block(h.train, h.valid, no_test, {k: np.zeros(len(e), dtype=np.int64) for k, e in parts.items()}, h.n_cols, h.row_side, h.col_side)
    metric, lower = ("RMSE", True) if feedback == "explicit" else ("NDCG@10", False)
    valid, epochs = {}, {}
    for name in (c for c in LOCAL_BACKBONES if c in candidates):
        fit_cfg = dataclasses.replace(cfg, epochs=(cfg.ae or AAEParams()).epochs) if name == "aae" else cfg
        fit = fit_block(block, "ae" if name == "aae" else name, feedback, fit_cfg, 1, h.n_rows)
        valid[name] = float(key_metrics(feedback, h.valid, fit.valid, clip).get(metric, np.nan))
        epochs[name] = max(fit.epochs, 1)
    rank = {name: (np.inf if np.isnan(v) else v if lower else -v) for name, v in valid.items()}
    return BackboneChoice(min(rank, key=lambda name: rank[name]), valid, epochs)


def run_baseline(fed: Federation, mode: str, backbone: str, cfg: BaselineConfig, paper_batch: int | None = None) -> dict:
    """Metrics per organization and overall on valid and test for one baseline row (``paper_batch``: see
    :func:`federation_metrics`)."""
    require(mode in MODES, f"setting.mode: expected one of {MODES} for a baseline, got {mode!r}")
    require(backbone in BACKBONES, f"baseline backbone: expected one of {BACKBONES}, got {backbone!r}")
    require(mode != "mtcdr" or backbone in PAIR_MODELS, f"setting.mode=mtcdr: MTCDR is defined for the CF backbones assisted-mf, assisted-mlp, assisted-ncf, got assisted-{backbone}")
    K = len(fed.orgs)
    scores = {"valid": [None] * K, "test": [None] * K}
    if mode == "alone":
        for k in range(K):
            v, t, _ = fit_block(_pool(fed, [k]), backbone, fed.feedback, cfg, 1, fed.n_rows)
            scores["valid"][k], scores["test"][k] = v, t
    else:
        block = _pool(fed, list(range(K)))
        v, t, _ = fit_block(block, backbone, fed.feedback, cfg, K if mode == "mtcdr" else 1, fed.n_rows)
        for k in range(K):
            scores["valid"][k] = v[block.groups["valid"] == k]
            scores["test"][k] = t[block.groups["test"] == k]
    return {part: federation_metrics(fed, part, scores[part], paper_batch) for part in ("valid", "test")}


def rating_clip(fed: Federation) -> tuple[float, float] | None:
    """The range explicit predictions are clipped to when scored: the training ratings of all
    organizations (None for implicit feedback)."""
    if fed.feedback != "explicit":
        return None
    ys = np.concatenate([o.train.y for o in fed.orgs])
    return float(ys.min()), float(ys.max())


def federation_metrics(fed: Federation, part: str, scores: list[np.ndarray], paper_batch: int | None = None) -> dict[str, dict[str, float]]:
    """Per organization and ``overall`` (all organizations' entries pooled; rankings per user); ``paper_batch``
    adds the papers' scoring of implicit feedback (:func:`key_metrics`)."""
    clip = rating_clip(fed)
    out = {o.name: key_metrics(fed.feedback, getattr(o, part), s, clip, paper_batch) for o, s in zip(fed.orgs, scores)}
    out["overall"] = key_metrics(fed.feedback, Entries.concat([getattr(o, part) for o in fed.orgs]), np.concatenate(scores), clip, paper_batch)
    return out
