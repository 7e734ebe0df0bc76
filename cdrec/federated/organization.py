"""An organization of Multi-Target Assisted Learning (Algorithm 1 of the AAE paper / DMTCDR).

An :class:`Organization` holds its own rating entries, side information, local model and losses,
and nothing of anyone else's. It talks to peers only through messages (:mod:`.messages`); each
phase method takes the messages delivered to it and returns the messages it sends:

=====================  ===========================================================================
``announce``           ids it may align on -> :class:`AlignmentMessage` to every peer
``on_alignment``       aligned sets ``U^k ∩ U^l`` and peers' column counts (output layout)
``start``              base model ``F_0^k`` (per-column mean / popularity); :class:`QueryMessage` of
                       its evaluation keys on aligned rows (mixed with decoy keys if configured)
``residuals(t)``       pseudo-residuals ``r_t^{k,k} = -dL_k/dF_{t-1}`` (Eq. 5); the aligned part,
                       privacy-enhanced if configured, as :class:`ResidualMessage` to each peer
``fit(t, inbox)``      pseudo-targets over all n columns from own + received residuals; local model
                       ``f_t^k = argmin l2`` (Eq. 6): the AAE, or the organization's own choice of
                       backbone (``MTALConfig.backbone``, made in ``start`` on its validation entries)
``predictions(t)``     ``r_hat_t^{k,l}`` on each peer's residual keys and query keys (Eq. 7)
``update(t, inbox)``   weights ``w_t^k`` on the simplex (Eq. 8, L-BFGS, optional), learning rate
                       ``eta_t^k`` (constant or line search, Eq. 9) and ``F_t = F_{t-1} + eta sum_j w_j
                       r_hat^{j,k}`` (Eq. 10) on its training and evaluation keys
=====================  ===========================================================================

Keys a peer cannot predict (row not aligned with it) are combined with the weights renormalized
over the peers that did predict them (the organization's own model always does).
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

from cdrec.errors import require
from cdrec.federated import shared_fits
from cdrec.federated.alignment import Entries, OrgHoldings
from cdrec.federated.backbones import BACKBONE_SETTINGS, LOCAL_BACKBONES, PAIR_MODELS, BackboneChoice
from cdrec.federated.messages import AlignmentMessage, PredictionMessage, QueryMessage, ResidualMessage
from cdrec.federated.privacy import interval_release, laplace_dp
from cdrec.metrics.ranking import mean_over_ranked, paper_list_metrics, ranked_list_metrics
from cdrec.models.assisted.aae import AAE, AAEParams, AutoencoderData, encode_rows, fit_autoencoder, score_pairs
from cdrec.models.assisted.base import BaseModel
from cdrec.models.assisted.blocks import PairModel, fit_pairs, predict_pairs


def base_model(train: Entries, n_cols: int, feedback: str) -> BaseModel:
    """F0 fitted on training entries (for implicit feedback B counts their distinct rows)."""
    return BaseModel(n_cols, feedback).fit(train.cols, train.y, n_rows=len(np.unique(train.rows)))


def autoencoder_inputs(train: Entries, feedback: str, shape: tuple[int, int], row_side: np.ndarray | None, col_side: np.ndarray | None) -> AutoencoderData:
    """An autoencoder's input: the training ratings (explicit) or +1 / -1 labels (implicit) as a sparse matrix."""
    x = train.y if feedback == "explicit" else np.where(train.y > 0, 1.0, -1.0)
    return AutoencoderData(sp.csr_matrix((x.astype(np.float32), (train.rows, train.cols)), shape=shape), row_side, col_side)


def side_dims(row_side: np.ndarray | None, col_side: np.ndarray | None) -> dict[str, int]:
    """The side-information widths a model is built with (0 without)."""
    return {"d_row_side": 0 if row_side is None else row_side.shape[1], "d_col_side": 0 if col_side is None else col_side.shape[1]}


@dataclass
class MTALConfig:
    """Assistance settings (Tables 6-7): T rounds, eta constant or ``"optimize"``, w optimized or uniform."""

    rounds: int = 10
    eta: float | str = 0.3
    optimize_w: bool = False
    lbfgs_iters: int = 10
    # entries that w (Eq. 8) and an optimized eta (Eq. 9) are fitted on: "train" (as written), "valid" (the
    # validation entries, which also select the round), or "valid-split" (half of the users' validation entries fit
    # w / eta, the other half selects the round, so the round is not chosen on the data the weights were fitted to)
    assist_fit: str = "train"
    privacy: str = "none"
    privacy_alpha: float = 10.0
    ip_thresholds: int = 10
    feedback: str = "explicit"
    model: AAEParams = field(default_factory=AAEParams)
    keep_models: bool = False
    # F_0^k: "mean" = the papers' unbiased base model (per-item mean rating / popularity logit, Section 4.2
    # and Algorithm 1 line 1); "zero" = F_0 = 0, so round 1 fits the ratings themselves (a diagnostic,
    # not the papers' algorithm: the Joint AE generalizes far better from a zero output bias than from
    # an item-mean one, report 2026-12-01). Its round-1 residuals are 2 x the ratings: in-process only,
    # the Flower deployment refuses it)
    base: str = "mean"
    # decoy keys per held-out key in each query message (0: the query carries exactly the held-out keys),
    # drawn among the row's columns the organization holds no entry at; see draw_decoys
    query_decoys: int = 0
    # the local model every round fits to the pseudo-targets (Eq. 6): "aae" (the papers'), "mf" / "ncf" / "mlp" (the
    # pair models of the Alone baselines over (row, column) keys of all n columns), or "auto": each organization
    # chooses among all four on its own validation entries (cdrec.federated.baselines.choose_backbone)
    backbone: str = "aae"
    # the pair models' Alone fits (the choice; early stopping, at most pair_epochs epochs) and round fits (the
    # epochs its Alone fit kept, Adam pair_lr, mini-batches of pair_batch_size keys)
    pair_epochs: int = 10
    pair_batch_size: int = 1024
    pair_lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"


def overarching(feedback: str, f: np.ndarray, y: np.ndarray) -> float:
    """The overarching loss at output ``f``: mean squared error (explicit) or BCE-with-logits (implicit)."""
    if feedback == "explicit":
        return float(np.mean((f - y) ** 2))
    return float(np.mean(np.logaddexp(0, f) - y * f))


def negative_gradient(feedback: str, f: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pseudo-residuals per entry: ``2 (y - f)`` for the squared error ``(f - y)^2``, ``y - sigmoid(f)``
    for BCE-with-logits (the negative gradient of the summed loss, as the authors' code computes it)."""
    if feedback == "explicit":
        return 2.0 * (y - f)
    return y - 1.0 / (1.0 + np.exp(-f))


def combine(preds: np.ndarray, mask: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``sum_j w_j p_j`` over the predictors present for each key, weights renormalized."""
    wm = w[:, None] * mask
    return (wm * preds).sum(0) / np.maximum(wm.sum(0), 1e-12)


def lbfgs(fun: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, iters: int) -> torch.Tensor:
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = fun(x)
        loss.backward()
        return loss

    opt.step(closure)
    return x.detach()


def key_metrics(feedback: str, ent: Entries, score: np.ndarray, clip: tuple[float, float] | None = None,
                paper_batch: int | None = None) -> dict[str, float]:
    """RMSE (explicit, predictions clipped to the rating range) or NDCG@10 / MAP@10 over each user's
    held-out rated items (implicit). With ``paper_batch``, implicit feedback also gets ``MAP@10[paper]`` and
    ``NDCG@10[paper]``: the same predictions scored the way the papers' code scores them
    (:func:`~cdrec.metrics.ranking.paper_list_metrics`, lists per aligned id, batches of ``paper_batch``)."""
    if len(ent) == 0:
        return {"n": 0}
    if feedback == "explicit":
        s = np.clip(score, *clip) if clip else score
        return {"RMSE": float(np.sqrt(np.mean((s - ent.y) ** 2))), "n": int(len(ent))}
    m = ranked_list_metrics(ent.users, score, ent.y, 10)
    out = {name: mean_over_ranked(m[name]) for name in ("NDCG@10", "MAP@10")}
    if paper_batch:
        out.update({f"{name}[paper]": v for name, v in paper_list_metrics(ent.rows, score, ent.y, 10, paper_batch).items()})
    return {**out, "n": int(len(ent))}


def draw_decoys(query_rows: np.ndarray, held: Entries, n_cols: int, per_key: int, rng: np.random.Generator,
                *, block_cells: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """Decoy keys for the query keys on ``query_rows``: for a row with ``m`` query keys, ``per_key * m``
    distinct columns (fewer if the row has fewer free columns) drawn uniformly without replacement among
    the columns the organization holds no entry at for that row (``held``: its training, validation and
    test entries). So a decoy is never a held-out key, nor a training key, which a peer sees in the
    residual messages. Rows are sampled in blocks of ``block_cells`` (row, column) cells: random scores,
    held cells pushed last, each row's first ``k`` columns taken. Returns (rows, cols) grouped by row."""
    rows, n_keys = np.unique(query_rows, return_counts=True)
    held_in = np.isin(held.rows, rows)
    held_rows, held_cols = held.rows[held_in], held.cols[held_in]
    step = max(1, block_cells // max(n_cols, 1))
    out_rows, out_cols = [], []
    for start in range(0, len(rows), step):
        block = rows[start : start + step]
        taken = np.zeros((len(block), n_cols), dtype=bool)
        in_block = (held_rows >= block[0]) & (held_rows <= block[-1])
        taken[np.searchsorted(block, held_rows[in_block]), held_cols[in_block]] = True
        k = np.minimum(per_key * n_keys[start : start + step], n_cols - taken.sum(1))
        scores = rng.random(taken.shape)
        scores[taken] = 2.0  # after every free column (scores are < 1)
        order = np.argsort(scores, axis=1, kind="stable")
        out_rows.append(np.repeat(block, k))
        out_cols.append(order[np.arange(n_cols)[None, :] < k[:, None]])
    return (np.concatenate(out_rows).astype(query_rows.dtype, copy=False),
            np.concatenate(out_cols).astype(held.cols.dtype, copy=False)) if out_rows else (query_rows[:0], held.cols[:0])


class Organization:
    """One organization's learner (see the module docstring for the phases)."""

    def __init__(self, holdings: OrgHoldings, peers: list[str], cfg: MTALConfig) -> None:
        require(cfg.base in ("mean", "zero"), f"MTALConfig.base: expected mean or zero, got {cfg.base!r}")
        require(cfg.backbone in BACKBONE_SETTINGS, f"MTALConfig.backbone: expected one of {BACKBONE_SETTINGS}, got {cfg.backbone!r}")
        self.h = holdings
        self.name = holdings.name
        self.peers = [p for p in peers if p != self.name]
        self.cfg = cfg
        self.rng = np.random.default_rng([cfg.seed, zlib.crc32(self.name.encode())])
        self.aligned: dict[str, np.ndarray] = {}
        self.n_cols: dict[str, int] = {self.name: holdings.n_cols}
        self.query = Entries.concat([holdings.valid, holdings.test])
        self.n_valid = len(holdings.valid)
        self.fit_valid, self.select_valid = self._validation_parts()
        # with valid-split, the two halves' entries (scored every round): "fit" for w / eta, "select" for the round
        self.valid_halves = ({part: (m, holdings.valid.take(m)) for part, m in (("fit", self.fit_valid), ("select", self.select_valid))}
                             if cfg.assist_fit == "valid-split" else {})
        self.models: list[dict] = []
        self.history: list[dict] = []
        self.weights: list[np.ndarray] = []
        self.etas: list[float] = []
        self._codes: torch.Tensor | None = None
        self.reused_fits = 0  # local fits taken from an equal earlier fit (shared_fits.sharing_fits)
        self.backbone_choice: BackboneChoice | None = None  # made in start() unless the backbone is the AAE
        tr = holdings.train
        self.inputs = autoencoder_inputs(tr, cfg.feedback, (holdings.n_rows, holdings.n_cols), holdings.row_side, holdings.col_side)
        self.clip = (float(tr.y.min()), float(tr.y.max())) if cfg.feedback == "explicit" and len(tr) else None

    def _validation_parts(self) -> tuple[np.ndarray, np.ndarray]:
        """Masks over the validation entries: those w / eta are fitted on, and those the round is selected on.
        ``valid-split`` halves the validation *users* (whole ranked lists stay together) by a seeded draw; with
        fewer than two validation users the fit half is empty and w / eta fall back to the training entries."""
        everything = np.ones(self.n_valid, dtype=bool)
        if self.cfg.assist_fit != "valid-split":
            return everything, everything
        users = np.unique(self.h.valid.users)
        rng = np.random.default_rng([self.cfg.seed, zlib.crc32(self.name.encode()), 1])
        fit = np.isin(self.h.valid.users, rng.choice(users, size=len(users) // 2, replace=False))
        return fit, ~fit

    # ----------------------------------------------------------------------------- alignment
    def announce(self) -> list[AlignmentMessage]:
        self.offered = np.intersect1d(self.h.known_rows, self.h.shareable)
        return [AlignmentMessage(self.name, p, self.offered, self.h.n_cols) for p in self.peers]

    def on_alignment(self, inbox: list[AlignmentMessage]) -> None:
        for m in inbox:
            self.aligned[m.sender] = np.intersect1d(self.offered, m.ids)
            self.n_cols[m.sender] = int(m.n_cols)
        order = sorted(self.n_cols)
        sizes = [self.n_cols[o] for o in order]
        self.offset = dict(zip(order, np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)))
        self.n_out = int(sum(sizes))

    # ----------------------------------------------------------------------------- base model
    def start(self) -> list[QueryMessage]:
        tr = self.h.train
        if self.cfg.backbone != "aae":
            self.backbone_choice = self._choose_backbone()
        self.base = base_model(tr, self.h.n_cols, self.cfg.feedback)
        if self.cfg.base == "zero":
            self.base.values[:] = 0.0
        self.f_train = self.base.predict(tr.cols)
        self.f_query = self.base.predict(self.query.cols)
        self.query_mask = {p: np.isin(self.query.rows, self.aligned[p]) for p in self.peers}
        self.peer_queries: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._record(0, None, None)
        return self._query_messages()

    @property
    def backbone(self) -> str:
        """The local model of the rounds: ``cfg.backbone``, or this organization's choice under ``auto``."""
        return self.cfg.backbone if self.backbone_choice is None else self.backbone_choice.chosen

    def _choose_backbone(self) -> BackboneChoice:
        """Alone fits of the candidates (all of :data:`LOCAL_BACKBONES` under ``auto``, else ``cfg.backbone``, whose fit
        gives the round fits' epochs) on this organization's own entries, scored on its own validation entries; nothing
        is sent (only the choice and its scores are recorded in ``results.json``)."""
        from cdrec.federated.baselines import BaselineConfig, choose_backbone  # baselines imports this module

        candidates = LOCAL_BACKBONES if self.cfg.backbone == "auto" else (self.cfg.backbone,)
        fits = BaselineConfig(epochs=self.cfg.pair_epochs, batch_size=self.cfg.pair_batch_size, lr=self.cfg.pair_lr, ae=self.cfg.model,
                              seed=self.cfg.seed, device=self.cfg.device)
        return choose_backbone(self.h, self.cfg.feedback, candidates, fits, self.clip)

    def _query_messages(self) -> list[QueryMessage]:
        """One query per peer: the held-out keys on rows aligned with it, plus (``cfg.query_decoys > 0``) the
        decoys of those rows, drawn once for all peers (colluding peers cannot intersect them away) from this
        organization's own stream, and sorted with the real keys by (row, column). ``query_pick[p]`` locates the
        real keys' answers in ``p``'s reply, in the order of ``self.query``'s masked keys."""
        q = self.query
        if self.cfg.query_decoys == 0:
            self.query_pick = {p: np.arange(int(mk.sum())) for p, mk in self.query_mask.items()}
            return [QueryMessage(self.name, p, q.rows[mk], q.cols[mk]) for p, mk in self.query_mask.items()]
        held = Entries.concat([self.h.train, q])
        rng = np.random.default_rng([self.cfg.seed, zlib.crc32(self.name.encode()), 2])
        decoy_rows, decoy_cols = draw_decoys(q.rows, held, self.h.n_cols, self.cfg.query_decoys, rng)
        out, self.query_pick = [], {}
        for p, mk in self.query_mask.items():
            dk = np.isin(decoy_rows, self.aligned[p])
            rows, cols = np.concatenate([q.rows[mk], decoy_rows[dk]]), np.concatenate([q.cols[mk], decoy_cols[dk]])
            order = np.lexsort((cols, rows))
            position = np.empty_like(order)
            position[order] = np.arange(len(order))
            self.query_pick[p] = position[: int(mk.sum())]
            out.append(QueryMessage(self.name, p, rows[order], cols[order]))
        return out

    def on_queries(self, inbox: list[QueryMessage]) -> None:
        for m in inbox:
            self.peer_queries[m.sender] = (m.rows, m.cols)

    # ----------------------------------------------------------------------------- a round
    def residuals(self, t: int) -> list[ResidualMessage]:
        tr = self.h.train
        self.own_residual = negative_gradient(self.cfg.feedback, self.f_train, tr.y)
        out, self.sent_mask = [], {}
        for p in self.peers:
            mk = np.isin(tr.rows, self.aligned[p])
            self.sent_mask[p] = mk
            vals = self.own_residual[mk]
            if self.cfg.privacy == "dp":
                payload = {"values": laplace_dp(vals, self.cfg.privacy_alpha, self.rng)}
            elif self.cfg.privacy == "ip":
                payload = {"interval": interval_release(vals, self.cfg.ip_thresholds, self.rng)}
            else:
                payload = {"values": vals}
            out.append(ResidualMessage(self.name, p, t, tr.rows[mk], tr.cols[mk], **payload))
        return out

    def fit(self, t: int, inbox: list[ResidualMessage]) -> list[float]:
        tr = self.h.train
        rows = [tr.rows]
        cols = [self.offset[self.name] + tr.cols]
        vals = [self.own_residual]
        self.peer_train_keys = {}
        for m in inbox:
            rows.append(m.rows)
            cols.append(self.offset[m.sender] + m.cols)
            vals.append(m.decoded())
            self.peer_train_keys[m.sender] = (m.rows, m.cols)
        targets = sp.csr_matrix(
            (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
            shape=(self.h.n_rows, self.n_out),
        )
        seed = int(self.rng.integers(2**31))
        torch.manual_seed(seed)
        if self.backbone != "aae":
            return self._fit_pair_model(targets.tocoo(), seed)
        self.model = AAE(self.h.n_cols, self.n_out, self.cfg.model, **side_dims(self.h.row_side, self.h.col_side))
        store = shared_fits.active() if t in shared_fits.SHARED_ROUNDS else None
        key = self._fit_digest(targets, seed) if store is not None else ""
        earlier = store.get(key) if store is not None else None
        if earlier is None:
            losses = fit_autoencoder(self.model, self.inputs, targets, loss="mse", seed=seed, device=self.cfg.device)
            if store is not None:
                store.put(key, self.model.state_dict(), losses)
        else:  # the same computation as an earlier fit of this process (see shared_fits): its parameters
            self.model.load_state_dict(earlier[0])
            self.model.to(self.cfg.device).eval()
            losses = earlier[1]
            self.reused_fits += 1
        return self._fitted(losses)

    def _fitted(self, losses: list[float]) -> list[float]:
        """Bookkeeping after this round's fit: its hidden codes are computed once on first use; with ``keep_models``
        its parameters are kept for the prediction stage."""
        self._codes = None
        if self.cfg.keep_models:
            self.models.append({k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()})
        return losses

    def _fit_pair_model(self, targets: sp.coo_matrix, seed: int) -> list[float]:
        """The chosen pair model (MF / NCF / MLP, as its Alone baseline builds it) fitted to the pseudo-targets over all
        ``n`` columns by the l2 loss (Eq. 6) for the epochs its Alone fit kept; its output bias starts at their mean."""
        cls, params = PAIR_MODELS[self.backbone]
        self.model = cls(self.h.n_rows, self.n_out, params())
        self.model.init_output_bias(float(targets.data.mean()) if targets.nnz else 0.0)
        rows, cols = targets.row.astype(np.int64), targets.col.astype(np.int64)
        losses = fit_pairs(self.model, rows, cols, np.zeros_like(rows), targets.data, feedback="explicit", row_side=None, col_side=None,
                           epochs=self.backbone_choice.epochs[self.backbone], batch_size=self.cfg.pair_batch_size, lr=self.cfg.pair_lr,
                           weight_decay=0.0, seed=seed, device=self.cfg.device, fused=True)
        return self._fitted(losses)

    def _fit_digest(self, targets: sp.csr_matrix, seed: int) -> str:
        """What :func:`fit_autoencoder` reads for this fit (:func:`shared_fits.fit_digest`)."""
        targets.sort_indices()  # as fit_autoencoder orders them
        x = self.inputs
        return shared_fits.fit_digest([x.inputs.indptr, x.inputs.indices, x.inputs.data, x.row_side, x.col_summary,
                                       targets.indptr, targets.indices, targets.data], self.cfg.model,
                                      shape=[x.inputs.shape, targets.shape], seed=seed, device=self.cfg.device, loss="mse")

    def _codes_of(self, model: AAE | PairModel) -> torch.Tensor | None:
        """Hidden codes of every row under an AAE ``model`` (one encoder pass serves all peers' keys); None for a pair
        model, which scores keys directly."""
        if isinstance(model, PairModel):
            return None
        return encode_rows(model, self.inputs, np.arange(self.h.n_rows), device=self.cfg.device)

    def _predict(self, owner: str, rows: np.ndarray, cols: np.ndarray, model: AAE | PairModel | None = None,
                 codes: torch.Tensor | None = None) -> np.ndarray:
        """Outputs of this round's model (or ``model`` with its ``codes``) at ``owner``'s (row, col) keys."""
        if model is None:
            if self._codes is None:
                self._codes = self._codes_of(self.model)
            model, codes = self.model, self._codes
        elif codes is None:
            codes = self._codes_of(model)
        if isinstance(model, PairModel):
            rows = np.asarray(rows, dtype=np.int64)
            return predict_pairs(model, rows, self.offset[owner] + np.asarray(cols, dtype=np.int64), np.zeros_like(rows), None, None,
                                 device=self.cfg.device)
        return score_pairs(model, codes, rows, self.offset[owner] + cols)

    def predictions(self, t: int) -> list[PredictionMessage]:
        out = []
        for p in self.peers:
            if p in self.peer_train_keys:
                r, c = self.peer_train_keys[p]
                out.append(PredictionMessage(self.name, p, t, "train", r, c, self._predict(p, r, c)))
            if p in self.peer_queries:
                r, c = self.peer_queries[p]
                out.append(PredictionMessage(self.name, p, t, "query", r, c, self._predict(p, r, c)))
        return out

    def _stack(self, t: int, inbox: list[PredictionMessage], part: str) -> tuple[np.ndarray, np.ndarray]:
        keys = self.h.train if part == "train" else self.query
        masks = self.sent_mask if part == "train" else self.query_mask
        members = [self.name, *self.peers]
        preds = np.zeros((len(members), len(keys)))
        present = np.zeros((len(members), len(keys)))
        preds[0] = self._predict(self.name, keys.rows, keys.cols)
        present[0] = 1.0
        by_sender = {m.sender: m for m in inbox if m.part == part and m.round == t}
        for j, p in enumerate(members[1:], start=1):
            if p in by_sender:
                mk = masks[p]
                values = by_sender[p].values
                preds[j, mk] = values if part == "train" else values[self.query_pick[p]]  # query: decoys' answers dropped
                present[j, mk] = 1.0
        return preds, present

    def update(self, t: int, inbox: list[PredictionMessage]) -> dict:
        p_train, m_train = self._stack(t, inbox, "train")
        p_query, m_query = self._stack(t, inbox, "query")
        n_members = len(p_train)
        nv = self.n_valid
        if self.cfg.assist_fit in ("valid", "valid-split") and self.fit_valid.any():
            # Fit w / eta on held-out validation entries: on training entries every model has already
            # fitted the residuals (the own model reads those very ratings), so in-sample outputs
            # reward memorization (the paper: "a more reliable solution ... is to use a validation set").
            fv = self.fit_valid
            p_fit, m_fit, f_fit, y_fit = p_query[:, :nv][:, fv], m_query[:, :nv][:, fv], self.f_query[:nv][fv], self.h.valid.y[fv]
            r_fit = negative_gradient(self.cfg.feedback, f_fit, y_fit)
        else:
            p_fit, m_fit, f_fit, y_fit, r_fit = p_train, m_train, self.f_train, self.h.train.y, self.own_residual
        w = np.full(n_members, 1.0 / n_members)
        if self.cfg.optimize_w and n_members > 1:
            P, M = torch.as_tensor(p_fit), torch.as_tensor(m_fit)
            r = torch.as_tensor(r_fit)

            def wloss(theta: torch.Tensor) -> torch.Tensor:
                wm = torch.softmax(theta, 0)[:, None] * M
                g = (wm * P).sum(0) / wm.sum(0).clamp_min(1e-12)
                return ((g - r) ** 2).mean()

            w = torch.softmax(lbfgs(wloss, torch.zeros(n_members, dtype=torch.float64), self.cfg.lbfgs_iters), 0).numpy()
        g_train = combine(p_train, m_train, w)
        g_query = combine(p_query, m_query, w)
        if self.cfg.eta == "optimize":
            f0 = torch.as_tensor(f_fit)
            g = torch.as_tensor(combine(p_fit, m_fit, w))
            y = torch.as_tensor(y_fit)
            if self.cfg.feedback == "explicit":
                fun = lambda e: ((f0 + e * g - y) ** 2).mean()  # noqa: E731
            else:
                fun = lambda e: torch.nn.functional.binary_cross_entropy_with_logits(f0 + e * g, y)  # noqa: E731
            eta = float(lbfgs(fun, torch.ones(1, dtype=torch.float64), self.cfg.lbfgs_iters)[0])
        else:
            eta = float(self.cfg.eta)
        self.f_train = self.f_train + eta * g_train
        self.f_query = self.f_query + eta * g_query
        self.weights.append(w)
        self.etas.append(eta)
        return self._record(t, w, eta)

    # ----------------------------------------------------------------------------- evaluation
    def _record(self, t: int, w: np.ndarray | None, eta: float | None) -> dict:
        valid = key_metrics(self.cfg.feedback, self.h.valid, self.f_query[: self.n_valid], self.clip)
        test = key_metrics(self.cfg.feedback, self.h.test, self.f_query[self.n_valid :], self.clip)
        rec = {
            "round": t,
            "train_loss": overarching(self.cfg.feedback, self.f_train, self.h.train.y),
            "valid": valid, "test": test,
            "eta": eta, "w": None if w is None else [round(float(x), 4) for x in w],
            "f_test": self.f_query[self.n_valid :].copy(),
        }
        for part, (m, entries) in self.valid_halves.items():
            rec[part] = key_metrics(self.cfg.feedback, entries, self.f_query[: self.n_valid][m], self.clip)
        self.history.append(rec)
        return rec

    def best_round(self) -> int:
        """Round with the best metric on the selection part of validation (RMSE down, NDCG@10 up; all of it
        unless ``assist_fit="valid-split"``); round 0 is the base model."""
        key = "RMSE" if self.cfg.feedback == "explicit" else "NDCG@10"
        part = "select" if self.cfg.assist_fit == "valid-split" else "valid"
        vals = [h[part].get(key, np.nan) for h in self.history]
        if all(np.isnan(v) for v in vals):
            return len(self.history) - 1
        vals = np.asarray(vals, dtype=float)
        return int(np.nanargmin(vals) if key == "RMSE" else np.nanargmax(vals))

    def test_scores(self, t: int | None = None) -> np.ndarray:
        return self.history[self.best_round() if t is None else t]["f_test"]

    # ----------------------------------------------------------------------------- prediction stage
    def answer_replay(self, inbox: list[QueryMessage]) -> list[PredictionMessage]:
        """Prediction stage: outputs of every stored round model at a peer's keys (needs keep_models)."""
        out = []
        model = copy.deepcopy(self.model)
        for t, state in enumerate(self.models, start=1):
            model.load_state_dict(state)
            codes = self._codes_of(model)
            for m in inbox:
                out.append(PredictionMessage(self.name, m.sender, t, "replay", m.rows, m.cols, self._predict(m.sender, m.rows, m.cols, model, codes)))
        return out

    def replay_queries(self, rows: np.ndarray, cols: np.ndarray) -> list[QueryMessage]:
        self.replay_keys = (rows, cols)
        self.replay_mask = {p: np.isin(rows, self.aligned[p]) for p in self.peers}
        return [QueryMessage(self.name, p, rows[mk], cols[mk]) for p, mk in self.replay_mask.items()]

    def replay_predict(self, inbox: list[PredictionMessage], own: list[PredictionMessage], upto: int | None = None) -> np.ndarray:
        """``F^T = F_0 + sum_t eta_t sum_j w_t^j r_hat_t^{j,k}`` at the replay keys."""
        rows, cols = self.replay_keys
        members = [self.name, *self.peers]
        f = self.base.predict(cols)
        T = len(self.etas) if upto is None else upto
        for t in range(1, T + 1):
            preds = np.zeros((len(members), len(rows)))
            present = np.zeros_like(preds)
            for j, p in enumerate(members):
                src = own if p == self.name else inbox
                msg = next((m for m in src if m.sender == p and m.round == t), None)
                if msg is None:
                    continue
                mk = np.ones(len(rows), dtype=bool) if p == self.name else self.replay_mask[p]
                preds[j, mk] = msg.values
                present[j, mk] = 1.0
            f = f + self.etas[t - 1] * combine(preds, present, self.weights[t - 1])
        return f
