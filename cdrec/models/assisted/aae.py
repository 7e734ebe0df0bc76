"""Assisted AutoEncoder (AAE): Diao, Tarokh, Ding, "Privacy-Preserving Multi-Target Multi-Domain
Recommender Systems with Assisted AutoEncoders" (Section 4.1, Figure 2, Table 5) and DMTCDR Section 4.2.

A user-based AAE of organization k reads the sparse vector ``r_i^k`` of user i's ratings of the
organization's own ``n_k`` items and outputs over *all* ``n`` items of all organizations:

    z_i = E(r_i^k)                       encoder [n_k, 256, 128], tanh
    z_i <- z_i + E_u(s_u,i) + E_v(s_v,i)  optional side codes summed in (AAE_s)
    r_hat_i = D(Dropout(z_i))            decoder [128, 256, n], tanh on the hidden layer

``E_u`` / ``E_v`` are tanh stacks [d, 256, 128] like ``E`` (``side_encoder="stack"``, the authors' code).
Every linear layer starts from Xavier-uniform weights and zero biases (``init="xavier"``, the authors'
``src/models/ae.py`` in diaoenmao/Decentralized-Multi-Target-Cross-Domain-Recommendation-for-Multi-
Organization-Collaborations); the output bias thus starts at 0, not at the item means.

The item-based AAE is the transpose (rows = items, columns = users). ``E_v`` reads the attributes of
the observed columns; the paper sums them, we average them (the same direction, bounded scale for
heavy users — a documented deviation). The output layer is never evaluated densely: :meth:`score`
gathers only the (row, column) targets needed, so no ``rows x n`` matrix is built when n is large.
Without MTAL (the 'Alone' / 'Joint' AE baseline) the output columns are the input columns and the AAE
is a conventional AutoRec-style autoencoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from cdrec.config import ModelParams, bounded
from cdrec.errors import require
from cdrec.models.assisted.blocks import KeepBest, SideEncoder, batches
from cdrec.models.registry import register


DENSE_BLOCK = 1 << 22  # largest rows x n_out output block :meth:`AAE.score` computes densely (16 MiB float32)


@dataclass
class AAEParams(ModelParams):
    """Table 5 architecture and Table 6 local training (Adam 1e-3, weight decay 5e-4, 20 epochs)."""

    encoder: list[int] = bounded(lo=1, default_factory=lambda: [256, 128])
    decoder: list[int] = bounded(lo=1, default_factory=lambda: [128, 256])
    dropout: float = bounded(0.5, 0, 1, hi_open=True)
    lr: float = bounded(1e-3, 0, lo_open=True)
    weight_decay: float = bounded(5e-4, 0)
    epochs: int = bounded(20, 1)
    batch_size: int = bounded(100, 1)
    side_info: bool = False
    grad_clip: float = bounded(0.0, 0)  # max gradient norm per step (the authors' code clips at 1.0); 0 = off
    # weight initialization: "xavier" = Xavier-uniform weights and zero biases on every linear layer, as
    # the authors' ``src/models/ae.py`` (diaoenmao/Decentralized-Multi-Target-Cross-Domain-Recommendation-...,
    # ``Encoder/Decoder.reset_parameters``); "torch" = PyTorch's default Linear initialization
    init: str = "xavier"
    # Adam learning-rate schedule over the epochs of one fit: "none" (the papers' local MTAL training;
    # the authors' ``cfg['local']['scheduler_name'] = 'None'``) or "cosine" (CosineAnnealingLR to 0 over
    # the fit's epochs, the authors' schedule for their 200-epoch Joint / Alone baselines, ``src/utils.py``)
    lr_schedule: str = "none"
    # side-information encoders (AAE_s): "stack" = the rating encoder's Linear/tanh stack ([256, 128]),
    # as the authors' code; "linear" = one linear map to the code
    side_encoder: str = "stack"


@register("aae", family="assisted", params=AAEParams, min_domains=2,
          needs="MTAL assists each organization, one per domain, with the others")
class AAE(nn.Module):
    """Assisted AutoEncoder with a gather-style output layer over ``n_out`` columns."""

    task = "mtal"

    def __init__(self, n_in: int, n_out: int, params: AAEParams, *, d_row_side: int = 0, d_col_side: int = 0) -> None:
        super().__init__()
        self.params = params
        enc = [n_in, *params.encoder]
        layers: list[nn.Module] = []
        for a, b in zip(enc[:-1], enc[1:]):
            layers += [nn.Linear(a, b), nn.Tanh()]
        self.encoder = nn.Sequential(*layers)
        code = enc[-1]
        require(params.side_encoder in ("stack", "linear"), f"model_params.side_encoder: expected stack or linear, got {params.side_encoder!r}")
        side_hidden = params.encoder[:-1] if params.side_encoder == "stack" else []
        self.row_side = SideEncoder(d_row_side, code, side_hidden) if params.side_info and d_row_side else None
        self.col_side = SideEncoder(d_col_side, code, side_hidden) if params.side_info and d_col_side else None
        self.dropout = nn.Dropout(params.dropout)
        dec = [code, *params.decoder[1:]] if params.decoder and params.decoder[0] == code else [code, *params.decoder]
        layers = []
        for a, b in zip(dec[:-1], dec[1:]):
            layers += [nn.Linear(a, b), nn.Tanh()]
        self.decoder = nn.Sequential(*layers)
        self.out_weight = nn.Parameter(torch.empty(n_out, dec[-1]))
        self.out_bias = nn.Parameter(torch.zeros(n_out))
        require(params.init in ("xavier", "torch"), f"model_params.init: expected xavier or torch, got {params.init!r}")
        require(params.lr_schedule in ("none", "cosine"), f"model_params.lr_schedule: expected none or cosine, got {params.lr_schedule!r}")
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights and zero biases (``init="xavier"``, the authors' code) or PyTorch's
        default Linear initialization (``init="torch"``) on every layer, the output layer included."""
        linears = [m for m in self.modules() if isinstance(m, nn.Linear)]
        if self.params.init == "xavier":
            for m in linears:
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            nn.init.xavier_uniform_(self.out_weight)
            nn.init.zeros_(self.out_bias)
            return
        for m in linears:
            m.reset_parameters()
        fan_in = self.out_weight.shape[1]
        nn.init.kaiming_uniform_(self.out_weight, a=5**0.5)
        nn.init.uniform_(self.out_bias, -1 / fan_in**0.5, 1 / fan_in**0.5)

    def hidden(self, x: torch.Tensor, row_side: torch.Tensor | None = None, col_side: torch.Tensor | None = None) -> torch.Tensor:
        """Last decoder hidden layer for a batch of rows (the output layer is applied by :meth:`score`)."""
        z = self.encoder(x)
        if self.row_side is not None and row_side is not None:
            z = z + self.row_side(row_side)
        if self.col_side is not None and col_side is not None:
            z = z + self.col_side(col_side)
        return self.decoder(self.dropout(z))

    def score(self, h: torch.Tensor, pos: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Output units ``cols`` of rows ``h[pos]``, never the dense ``all rows x n_out`` output.

        A small block (``len(h) x n_out <= DENSE_BLOCK``, e.g. a mini-batch of 100 users over the
        1,682 ML-100K items) is one matrix product and a flat gather (cheapest forward and backward);
        a larger one computes only the columns the pairs touch (a ``len(h) x touched`` block)."""
        n_out = self.out_weight.shape[0]
        if h.shape[0] * n_out <= DENSE_BLOCK:
            block = torch.addmm(self.out_bias, h, self.out_weight.T)
            return block.reshape(-1).index_select(0, pos * n_out + cols)
        touched, inv = torch.unique(cols, return_inverse=True)
        block = h @ self.out_weight[touched].T + self.out_bias[touched]
        return block[pos, inv]


@register("assisted-ae", family="assisted", params=AAEParams)
class AE(AAE):
    """The conventional autoencoder baseline: an AAE whose output columns are its input columns."""


class AutoencoderData:
    """One side of an autoencoder's data: sparse inputs and side information by row.

    ``inputs`` is ``[n_rows, n_in]`` CSR (the organization's own train ratings), ``row_side``
    ``[n_rows, d_r]`` and ``col_side`` ``[n_in, d_c]`` dense side information (or ``None``).
    """

    def __init__(self, inputs: sp.csr_matrix, row_side: np.ndarray | None = None, col_side: np.ndarray | None = None) -> None:
        self.inputs = inputs.tocsr()
        self.inputs.sum_duplicates()
        # a dense copy of the own input block only while it is small: it grows with rows x own columns,
        # the CSR arrays with the entries (rows are then densified per batch by index arithmetic)
        self.dense_ok = inputs.shape[0] * inputs.shape[1] <= 4_000_000
        self._cache: dict[str, torch.Tensor] = {}
        self._csr: tuple[torch.Tensor, ...] = ()
        self.row_side = row_side
        self.col_side = col_side
        if col_side is not None:
            ind = self.inputs.copy()
            ind.data[:] = 1.0
            cnt = np.asarray(ind.sum(axis=1)).ravel()
            self.col_summary = np.asarray(ind @ col_side) / np.maximum(cnt, 1)[:, None]
        else:
            self.col_summary = None

    def _dense(self, device: torch.device) -> torch.Tensor:
        key = str(device)
        if key not in self._cache:
            self._cache[key] = torch.as_tensor(self.inputs.toarray(), dtype=torch.float32, device=device)
        return self._cache[key]

    def _rows(self, rows: np.ndarray, device: torch.device) -> torch.Tensor:
        """``inputs[rows]`` densified from the CSR arrays (the same values as ``toarray()``)."""
        if not self._csr:
            m = self.inputs
            self._csr = (torch.as_tensor(m.indptr.astype(np.int64)), torch.as_tensor(m.indices.astype(np.int64)), torch.as_tensor(m.data, dtype=torch.float32))
        indptr, indices, values = self._csr
        r = torch.as_tensor(rows, dtype=torch.int64)
        starts, lens = indptr[r], indptr[r + 1] - indptr[r]
        ent = torch.repeat_interleave(starts - (torch.cumsum(lens, 0) - lens), lens) + torch.arange(int(lens.sum()))
        x = torch.zeros((len(r), self.inputs.shape[1]), dtype=torch.float32)
        x[torch.repeat_interleave(torch.arange(len(r)), lens), indices[ent]] = values[ent]
        return x.to(device)

    def batch(self, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        x = self._dense(device)[torch.as_tensor(rows, device=device)] if self.dense_ok else self._rows(rows, device)
        rs = torch.as_tensor(self.row_side[rows], dtype=torch.float32, device=device) if self.row_side is not None else None
        cs = torch.as_tensor(self.col_summary[rows], dtype=torch.float32, device=device) if self.col_summary is not None else None
        return x, rs, cs


def fit_autoencoder(
    model: AAE,
    data: AutoencoderData,
    targets: sp.csr_matrix,
    *,
    loss: str = "mse",
    seed: int = 0,
    device: torch.device | str = "cpu",
    epochs: int | None = None,
    validate: Callable[[], float] | None = None,
    patience: int = 3,
) -> list[float]:
    """Fit ``model`` to the sparse ``targets`` ``[n_rows, n_out]`` (local l2 loss, Eq. 6), masked to the
    observed target entries; rows without any target are skipped. Returns the mean loss per epoch.

    The CSR arrays live in torch once; a batch gathers its entries by index arithmetic (no SciPy
    slicing in the loop) and the dense input of the batch comes from :class:`AutoencoderData`."""
    p = model.params
    device = torch.device(device)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=p.lr, weight_decay=p.weight_decay, fused=True)  # one kernel per step
    n_epochs = p.epochs if epochs is None else epochs
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(n_epochs, 1), eta_min=0.0) if p.lr_schedule == "cosine" else None
    targets = targets.tocsr()
    targets.sort_indices()
    indptr = targets.indptr.astype(np.int64)
    rows_with = np.flatnonzero(np.diff(indptr) > 0)
    cols_all = torch.as_tensor(targets.indices.astype(np.int64), device=device)
    y_all = torch.as_tensor(targets.data.astype(np.float32), device=device)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    crit = nn.MSELoss() if loss == "mse" else nn.BCEWithLogitsLoss()
    history, keep = [], KeepBest(model, patience)
    for _ in range(n_epochs):
        model.train()
        total, count = 0.0, 0
        for idx in batches(len(rows_with), p.batch_size, rng):
            rows = rows_with[idx]
            starts, lens = indptr[rows], indptr[rows + 1] - indptr[rows]
            first = np.cumsum(lens) - lens
            ent = torch.as_tensor(np.repeat(starts - first, lens) + np.arange(lens.sum()), device=device)
            pos = torch.as_tensor(np.repeat(np.arange(len(rows)), lens), device=device)
            x, rs, cs = data.batch(rows, device)
            out = model.score(model.hidden(x, rs, cs), pos, cols_all[ent])
            l = crit(out, y_all[ent])
            opt.zero_grad(set_to_none=True)
            l.backward()
            if p.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip, foreach=True)
            opt.step()
            total += float(l.detach()) * len(ent)
            count += len(ent)
        if sched is not None:
            sched.step()
        if validate is None:
            history.append(total / max(count, 1))
            continue
        model.eval()
        value = float(validate())
        history.append(value)
        if keep.update(value):
            break
    keep.restore()
    return history


@torch.no_grad()
def encode_rows(model: AAE, data: AutoencoderData, rows: np.ndarray, *, device: torch.device | str = "cpu", row_chunk: int = 2048) -> torch.Tensor:
    """Last hidden layer (eval mode) of ``rows``: ``[len(rows), hidden]``, computed once and reusable
    for any number of output columns (an organization scores all its peers' keys from one pass)."""
    device = torch.device(device)
    model.to(device).eval()
    hs = [model.hidden(*data.batch(rows[s : s + row_chunk], device)) for s in range(0, len(rows), row_chunk)]
    return torch.cat(hs) if hs else torch.zeros(0, model.out_weight.shape[1], device=device)


@torch.no_grad()
def score_pairs(model: AAE, h: torch.Tensor, pos: np.ndarray, cols: np.ndarray, *, pair_chunk: int = 4096) -> np.ndarray:
    """Outputs at pairs (``h[pos]``, ``cols``): one dot product per pair (inference needs no block,
    so the cost is ``pairs x hidden`` whatever ``len(h)`` and ``n_out``), in chunks of pairs. Each pair's
    value is its own dot product, so the chunk size changes no bit; 4,096 pairs keep the two gathered
    ``chunk x hidden`` operands in cache (half the time of 16,384 on ML-1M's peer predictions)."""
    out = np.empty(len(pos), dtype=np.float64)
    for start in range(0, len(pos), pair_chunk):
        sl = slice(start, start + pair_chunk)
        p = torch.as_tensor(np.asarray(pos[sl], dtype=np.int64), device=h.device)
        c = torch.as_tensor(np.asarray(cols[sl], dtype=np.int64), device=h.device)
        val = torch.einsum("ph,ph->p", h.index_select(0, p), model.out_weight.index_select(0, c)) + model.out_bias.index_select(0, c)
        out[sl] = val.double().cpu().numpy()
    return out


@torch.no_grad()
def predict_autoencoder(
    model: AAE,
    data: AutoencoderData,
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    device: torch.device | str = "cpu",
    row_chunk: int = 2048,
    pair_chunk: int = 4096,
) -> np.ndarray:
    """Outputs of ``model`` at the (row, col) pairs, computing hidden codes once per distinct row."""
    if len(rows) == 0:
        return np.empty(0, dtype=np.float64)
    uniq, inv = np.unique(rows, return_inverse=True)
    h = encode_rows(model, data, uniq, device=device, row_chunk=row_chunk)
    return score_pairs(model, h, inv, cols, pair_chunk=pair_chunk)
