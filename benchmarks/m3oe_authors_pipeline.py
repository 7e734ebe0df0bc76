"""Diagnostic (not part of the package): the M3oE authors' ML-1M pipeline, re-expressed compactly.

Written from reading Applied-Machine-Learning-Lab/M3oE (``examples/run_movielens.py``,
``MDMTRec/models/multi_domain/model.py``, ``MDMTRec/trainers/ctr_trainer.py``, commits 90c05db /
dd666fb) to answer one question: does the authors' own pipeline, on the authors' own file, reach the
paper's ML-1M mean AUC (77.02)? It reproduces, independently of ``cdrec``:

* the file: ``pd.merge(pd.merge(ratings, movies), users)`` as pandas < 2.2 ordered it (rows grouped
  by first-seen movie, then by first-seen user; its first 500 rows equal the authors' published
  ``ml-1m-sample.csv``, checked here and in ``tests/data/test_splits.py``);
* preprocessing: ``cate_id`` = first genre, domain from age {1,18}/{25}/{35,45,50,56}, ``age``
  min-max scaled as the one dense feature, LabelEncoder over the full file for user_id, movie_id,
  gender, occupation, zip, cate_id, domain_indicator (7 sparse fields, embedding 16, N(0, 1e-4));
* the split: first 80 % / next 10 % / last 10 % of the rows, no shuffling (``--order random``
  shuffles the file first, for comparison);
* the model: MDMTRec with ``fcn_dims=[512, 256, 256, 64]`` (STAR-style representation 113 -> 512
  -> 256 plus a skip layer; shared, domain and task experts 256 -> 256 -> 64, each
  Linear+LayerNorm+ReLU; 4 shared experts, the code's default; gates on the detached
  representation; towers 64 -> 64 -> 1; fusion logits initialised to 1);
* training: Adam lr 1e-2, weight decay 1e-5, batch 40,960, loss = sum over the 6 (domain, task)
  heads of the mean BCE; every parameter in the main optimizer (as in the public code, whose
  ``~`` filter keeps the fusion weights there too); mean AUC of the 6 heads on validation and test
  printed after every epoch (select on validation).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/m3oe_authors_pipeline.py --order merge --epochs 6``.
"""

from __future__ import annotations

import argparse
import lzma
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn


def grouped_merge(left: pd.DataFrame, right: pd.DataFrame, key: str) -> pd.DataFrame:
    """Inner merge whose rows are grouped by ``key`` in order of first appearance in ``left``
    (pandas < 2.2 behaviour), rows of one key keeping their order."""
    _, first, inverse = np.unique(left[key].to_numpy(), return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    grouped = left.iloc[np.argsort(rank[inverse], kind="stable")].reset_index(drop=True)
    return grouped.merge(right, on=key, how="inner", sort=False)


def authors_file(root: Path) -> pd.DataFrame:
    ratings = pd.read_csv(lzma.open(root / "ml-1m" / "ratings.dat.xz"), sep="::", engine="python",
                          names=["user_id", "movie_id", "rating", "timestamp"])
    movies = pd.read_csv(root / "ml-1m" / "movies.dat", sep="::", engine="python", names=["movie_id", "title", "genres"], encoding="latin-1")
    users = pd.read_csv(root / "ml-1m" / "users.dat", sep="::", engine="python", names=["user_id", "gender", "age", "occupation", "zip"], dtype={"zip": str})
    data = grouped_merge(grouped_merge(ratings, movies, "movie_id"), users, "user_id")
    sample = pd.read_csv(root / "mdmt-samples" / "ml-1m-sample_M3oE.csv")
    cols = ["user_id", "movie_id", "rating", "timestamp"]
    assert (data[cols].head(len(sample)).to_numpy() == sample[cols].to_numpy()).all(), "file order differs from the authors' sample"
    return data


SPARSE = ["user_id", "movie_id", "gender", "occupation", "zip", "cate_id", "domain_indicator"]


def features(data: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    data = data.copy()
    data["cate_id"] = data["genres"].str.split("|").str[0]
    data["domain_indicator"] = data["age"].map({1: 0, 18: 0, 25: 1, 35: 2, 45: 2, 50: 2, 56: 2})
    age = data["age"].to_numpy(np.float32)
    dense = torch.from_numpy(((age - age.min()) / (age.max() - age.min()))[:, None])
    codes = np.stack([pd.factorize(data[f], sort=True)[0] for f in SPARSE], axis=1)  # = LabelEncoder
    labels = torch.from_numpy(np.stack([data["rating"] > 3, data["rating"] > 4], axis=1).astype(np.float32))
    return torch.from_numpy(codes), dense, labels, [int(codes[:, i].max()) + 1 for i in range(len(SPARSE))]


def block(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.LayerNorm(b), nn.ReLU()]
    return nn.Sequential(*layers)


class Embed(nn.Module):
    def __init__(self, vocab: list[int]) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(v, 16) for v in vocab)
        for t in self.tables:
            nn.init.normal_(t.weight, 0.0, 1e-4)
        self.out_dim = 16 * len(vocab) + 1

    def forward(self, x: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        return torch.cat([t(x[:, i]) for i, t in enumerate(self.tables)] + [dense], dim=1)


class AuthorsM3oE(nn.Module):
    """MDMTRec as in the public code; returns ``[B, T]`` probabilities of each sample's own domain."""

    def __init__(self, vocab: list[int], n_domains: int = 3, n_tasks: int = 2, n_shared: int = 4) -> None:
        super().__init__()
        self.embed = Embed(vocab)
        d_in, d_star, d_h, d_out = self.embed.out_dim, 512, 256, 64
        self.D, self.T = n_domains, n_tasks
        self.skip = block([d_in, d_h])
        self.w_sh = nn.Parameter(nn.init.xavier_uniform_(torch.empty(d_in, d_star)))
        self.b_sh = nn.Parameter(torch.zeros(d_star))
        self.w_d = nn.Parameter(torch.stack([nn.init.xavier_uniform_(torch.empty(d_in, d_star)) for _ in range(n_domains)]))
        self.b_d = nn.Parameter(torch.zeros(n_domains, d_star))
        self.star_mlp = block([d_star, d_h])
        self.shared = nn.ModuleList(block([d_h, d_h, d_out]) for _ in range(n_shared))
        self.dom = nn.ModuleList(block([d_h, d_h, d_out]) for _ in range(n_domains))
        self.task = nn.ModuleList(block([d_h, d_h, d_out]) for _ in range(n_tasks))
        self.gates = nn.Linear(d_h, n_domains * n_tasks * n_shared)
        self.towers = nn.ModuleList(nn.Sequential(nn.Linear(d_out, d_out), nn.LayerNorm(d_out), nn.ReLU(), nn.Linear(d_out, 1))
                                    for _ in range(n_domains * n_tasks))
        self.logit = nn.Parameter(torch.ones(4))  # exp_d, exp_t, bal_d, bal_t

    def forward(self, x: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        d = x[:, -1]
        inp = self.embed(x, dense)
        own = torch.einsum("bi,dih->bdh", inp, self.w_d * self.w_sh)[torch.arange(len(d)), d] + self.b_d[d] + self.b_sh
        h = self.star_mlp(own) + self.skip(inp)
        gate = self.gates(h.detach()).view(-1, self.D * self.T, len(self.shared)).softmax(-1)
        shared = torch.einsum("bge,beh->bgh", gate, torch.stack([e(h) for e in self.shared], 1))
        dom = torch.stack([e(h) for e in self.dom], 1)
        task = torch.stack([e(h) for e in self.task], 1)
        exp_d, exp_t, bal_d, bal_t = torch.sigmoid(self.logit)
        dom_mix = bal_d * dom + (1 - bal_d) / (self.D - 1) * (dom.sum(1, keepdim=True) - dom)
        task_mix = bal_t * task + (1 - bal_t) / (self.T - 1) * (task.sum(1, keepdim=True) - task)
        probs = []
        for t in range(self.T):
            for k in range(self.D):
                g = t * self.D + k
                probs.append(torch.sigmoid(self.towers[g](shared[:, g] + exp_d * dom_mix[:, k] + exp_t * task_mix[:, t]).squeeze(1)))
        p = torch.stack(probs, 1).view(-1, self.T, self.D)
        return p.gather(2, d.view(-1, 1, 1).expand(-1, self.T, 1)).squeeze(2)


def mean_auc(model: nn.Module, x, dense, y, lo: int, hi: int, D: int = 3) -> tuple[float, list[float]]:
    model.eval()
    with torch.no_grad():
        p = torch.cat([model(x[s : min(s + 40960, hi)], dense[s : min(s + 40960, hi)]) for s in range(lo, hi, 40960)]).numpy()
    model.train()
    yy, dd = y[lo:hi].numpy(), x[lo:hi, -1].numpy()
    heads = [roc_auc_score(yy[dd == k, t], p[dd == k, t]) * 100 for k in range(D) for t in range(yy.shape[1])]
    return float(np.mean(heads)), [round(a, 2) for a in heads]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("CDREC_DATA_DIR", "../shared/data"))
    ap.add_argument("--order", choices=["merge", "random"], default="merge")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=40960)
    ap.add_argument("--seed", type=int, default=2022)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    data = authors_file(Path(args.data_dir))
    if args.order == "random":
        data = data.sample(frac=1.0, random_state=args.seed).reset_index(drop=True)
    x, dense, y, vocab = features(data)
    n = len(y)
    tr, va = int(n * 0.8), int(n * 0.9)
    model = AuthorsM3oE(vocab)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-5)
    bce = nn.BCELoss()
    best = (-1.0, -1, -1.0)
    for epoch in range(args.epochs):
        t0 = time.time()
        for idx in torch.randperm(tr).split(args.batch_size):
            p, yb, db = model(x[idx], dense[idx]), y[idx], x[idx, -1]
            loss = sum(bce(p[db == k, t], yb[db == k, t]) for t in range(2) for k in range(3))
            opt.zero_grad()
            loss.backward()
            opt.step()
        val, _ = mean_auc(model, x, dense, y, tr, va)
        test, heads = mean_auc(model, x, dense, y, va, n)
        best = max(best, (val, epoch, test))
        print(f"order={args.order} epoch {epoch}: val mean AUC {val:.2f}, test {test:.2f} (d1c d1l d2c d2l d3c d3l: {heads}) {time.time() - t0:.0f}s", flush=True)
    print(f"best validation epoch {best[1]}: val {best[0]:.2f}, test {best[2]:.2f} (paper M3oE 77.02)")


if __name__ == "__main__":
    main()
