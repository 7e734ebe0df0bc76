"""Building blocks shared by the assisted family (AAE/MTAL papers, Table 5 / Table 6).

* :func:`mlp` — fully connected stack (``[128, 64, 32, 16]`` for MLP and NCF).
* :class:`SideEncoder` — linear encoder of a dense side-information vector (user profile one-hot or
  a sum of item-attribute one-hots), whose code is *summed* into the main code (AAE_s, Figure 2).
* :func:`fit_pairs` — mini-batch Adam over (row, col, target) triples for the pair models.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class KeepBest:
    """Early stopping on a lower-is-better validation value: remembers the best state and says when
    ``patience`` epochs in a row did not improve on it; :meth:`restore` loads the best state back."""

    def __init__(self, model: nn.Module, patience: int) -> None:
        self.model, self.patience = model, patience
        self.best, self.state, self.bad = np.inf, None, 0

    def update(self, value: float) -> bool:
        """Record one epoch's value; True when training should stop."""
        if value < self.best - 1e-6:
            self.best, self.bad = value, 0
            self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return False
        self.bad += 1
        return self.bad >= self.patience

    def restore(self) -> None:
        if self.state is not None:
            self.model.load_state_dict(self.state)
        self.model.eval()


def mlp(sizes: Sequence[int], *, act: type[nn.Module] = nn.ReLU, last_act: bool = True) -> nn.Sequential:
    """``sizes = [in, h1, h2, ...]`` -> Linear/act layers (activation after the last layer if asked)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if last_act or i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


class SideEncoder(nn.Module):
    """Side information -> code of the main code's size (added to it).

    ``hidden=()`` is one linear map; ``hidden=(256,)`` with ``dim_out=128`` is the authors' side
    encoder, the same ``Linear -> tanh`` stack as the rating encoder (``src/models/ae.py``:
    ``self.user_profile = Encoder(info_size['user_profile'], encoder_hidden_size)``)."""

    def __init__(self, dim_in: int, dim_out: int, hidden: Sequence[int] = ()) -> None:
        super().__init__()
        sizes = [dim_in, *hidden, dim_out]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers.append(nn.Linear(a, b))
            if hidden:
                layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def overarching_loss(feedback: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """MSE for explicit ratings, BCE-with-logits for implicit labels (both means over entries)."""
    if feedback == "explicit":
        return lambda pred, y: F.mse_loss(pred, y)
    return lambda pred, y: F.binary_cross_entropy_with_logits(pred, y)


def batches(n: int, batch_size: int, rng: np.random.Generator, shuffle: bool = True) -> Iterator[np.ndarray]:
    order = rng.permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


class PairModel(nn.Module):
    """Collaborative filtering on (row, col) pairs with optional side information and per-group heads.

    ``n_groups > 1`` gives each organization its own prediction head while the row embeddings stay
    shared: the MTCDR baseline (embeddings of the aligned users / items shared across organizations,
    trained centrally). Subclasses build ``self.head`` from the two embeddings.
    """

    task = "mtal"
    row_tables: tuple[str, ...] = ("row_emb",)
    """The embedding tables indexed by row (:meth:`keep_rows` cuts them)."""

    def __init__(self, n_rows: int, n_cols: int, dim: int, *, d_row_side: int = 0, d_col_side: int = 0) -> None:
        super().__init__()
        self.row_emb = nn.Embedding(n_rows, dim)
        self.col_emb = nn.Embedding(n_cols, dim)
        nn.init.normal_(self.row_emb.weight, std=0.01)
        nn.init.normal_(self.col_emb.weight, std=0.01)
        self.row_side = nn.Linear(d_row_side, dim, bias=False) if d_row_side else None
        self.col_side = nn.Linear(d_col_side, dim, bias=False) if d_col_side else None

    def keep_rows(self, rows: np.ndarray) -> None:
        """Keep only the ``rows`` (sorted ids) of every row table, row ``rows[j]`` becoming row ``j``, with the values
        they were initialized to. Rows outside a block never receive a gradient, so Adam never moves them (no weight
        decay on the pair models) and nothing scores them: cutting them leaves every other value bit-identical and
        spares Adam and the dense embedding gradients a table of all rows per organization (Alone baselines)."""
        index = torch.as_tensor(rows, dtype=torch.int64)
        for name in self.row_tables:
            table = getattr(self, name).weight.detach()
            setattr(self, name, nn.Embedding.from_pretrained(table.index_select(0, index.to(table.device)).clone(), freeze=False))

    def embed(
        self, rows: torch.Tensor, cols: torch.Tensor, row_side: torch.Tensor | None, col_side: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        u, v = self.row_emb(rows), self.col_emb(cols)
        if self.row_side is not None and row_side is not None:
            u = u + self.row_side(row_side)
        if self.col_side is not None and col_side is not None:
            v = v + self.col_side(col_side)
        return u, v


def fit_pairs(
    model: PairModel,
    rows: np.ndarray,
    cols: np.ndarray,
    groups: np.ndarray,
    targets: np.ndarray,
    *,
    feedback: str,
    row_side: np.ndarray | None,
    col_side: np.ndarray | None,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    validate: Callable[[], float] | None = None,
    patience: int = 3,
    device: torch.device | str = "cpu",
    fused: bool = False,
) -> list[float]:
    """Adam on the overarching loss over observed pairs; keeps the epoch with the best ``validate()``
    (lower is better) when given. Returns the per-epoch validation values (or train losses). ``fused`` asks Adam for
    its fused kernel (the same update in one pass per tensor: a quarter of the step's time on an MF of ML-100K's
    size); the Alone baselines keep the plain one their committed runs were trained with."""
    device = torch.device(device)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, **({"fused": True} if fused and device.type in ("cpu", "cuda") else {}))
    crit = overarching_loss(feedback)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    t = {k: torch.as_tensor(v, device=device) for k, v in dict(rows=rows, cols=cols, groups=groups).items()}
    y = torch.as_tensor(targets, dtype=torch.float32, device=device)
    rs = torch.as_tensor(row_side, dtype=torch.float32, device=device) if row_side is not None else None
    cs = torch.as_tensor(col_side, dtype=torch.float32, device=device) if col_side is not None else None
    keep, history = KeepBest(model, patience), []
    for _ in range(epochs):
        model.train()
        total = 0.0
        for idx in batches(len(rows), batch_size, rng):
            i = torch.as_tensor(idx, device=device)
            r, c = t["rows"][i], t["cols"][i]
            pred = model(r, c, t["groups"][i], rs[r] if rs is not None else None, cs[c] if cs is not None else None)
            loss = crit(pred, y[i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        model.eval()
        value = validate() if validate is not None else total / len(rows)
        history.append(value)
        if validate is not None and keep.update(value):
            break
    keep.restore()
    return history


@torch.no_grad()
def predict_pairs(
    model: PairModel,
    rows: np.ndarray,
    cols: np.ndarray,
    groups: np.ndarray,
    row_side: np.ndarray | None,
    col_side: np.ndarray | None,
    device: torch.device | str = "cpu",
    chunk: int = 65536,
) -> np.ndarray:
    device = torch.device(device)
    model.eval()
    rs = torch.as_tensor(row_side, dtype=torch.float32, device=device) if row_side is not None else None
    cs = torch.as_tensor(col_side, dtype=torch.float32, device=device) if col_side is not None else None
    out = np.empty(len(rows))
    for s in range(0, len(rows), chunk):
        r = torch.as_tensor(rows[s : s + chunk], device=device)
        c = torch.as_tensor(cols[s : s + chunk], device=device)
        g = torch.as_tensor(groups[s : s + chunk], device=device)
        out[s : s + chunk] = model(r, c, g, rs[r] if rs is not None else None, cs[c] if cs is not None else None).double().cpu().numpy()
    return out
