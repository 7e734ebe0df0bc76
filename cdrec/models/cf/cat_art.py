"""CAT-ART: Li, Xie, Yu, Hu, Li, Shu, Qie and Niu, "One for All, All for One: Learning and
Transferring User Embeddings for Cross-Domain Recommendation", WSDM 2023 (pp. 366-374; UCLR's
reference [32] — a WSDM paper, not SIGIR), the multi-target cross-domain baseline of UCLR's Table 2.

Three stages, run by :meth:`CATART.fit` (the ranking task calls it):

1. **Per-domain embeddings**: one BPR-MF per domain (user table ``E_d``, the domain's item rows of
   ``I``). The ``D`` models are trained together as one :class:`~cdrec.models.cf.bprmf.BPRMF` over
   ``D x n_users`` user rows (row ``d * n_users + u`` is ``E_d[u]``; the domains own disjoint items),
   which is ``D`` independent BPR-MF models in one pass with the caller's trainer settings and early
   stopping on the whole split's validation MRR@10.
2. **CAT, contrastive autoencoder** (:class:`ContrastiveDomainAE`): the encoder reads the user's
   concatenated per-domain embeddings ``[E_1[u], ..., E_D[u]]`` and outputs the global embedding
   ``e_u`` (size ``dim``); the decoder maps it back. The contrastive view replaces ``mask_domains``
   randomly chosen domains of each user by a learned padding vector; the loss is
   ``con_weight * InfoNCE(enc(x), enc(x')) + rec_weight * (MSE(dec(enc x), x) + MSE(dec(enc x'), x))``
   (symmetric in-batch InfoNCE, cosine similarity over ``tau``). Trained on batches of users with
   early stopping on that loss over every user with a fixed seeded mask.
3. **ART, attention-based representation transfer** (:class:`ARTHead`, one per target domain ``d``):
   ``u_d = E_d[u] + Attn(q = E_d[u], k = v = {W_k E_k[u] : k != d}) + G_d(e_u)``, with ``W_k`` one
   linear adapter per source domain, single-head scaled dot-product attention (``heads``) and ``G_d``
   a linear adapter of the frozen CAT encoder's output; scored by ``u_d . I_j`` and trained with BPR
   on domain ``d`` (``art_epochs``, early stopping on the domain's validation MRR@10; the untrained
   head counts as epoch 0 and is kept when training never beats it).

Choices (the WSDM text was not at hand in full: the structure follows its abstract and Fig. 1 and the
authors' public code, ``Chain123/CAT-ART``, ``MultiRecommendBase4`` and its training script; each
open detail has an option):

* **Mask** (``mask_domains``, default 1): the public code masks exactly one random domain per user
  by a learned padding embedding; more domains is the other choice.
* **Loss weights and temperature**: 0.2 contrastive, 0.4 per reconstruction stream, ``tau = 0.1``
  (the public code). The encoder / decoder are ReLU MLPs (:class:`~cdrec.models.cf.blocks.MLP`,
  the code uses PReLU) with hidden sizes ``hidden`` (default ``[640, 384]``: the code's ``5m, 3m``
  at ``m = 128``).
* **Missing domains** (``pad_missing``, default on): a user without training interactions in a
  domain has an untrained ``E_d`` row; its place in CAT's input and among ART's sources is taken by
  the padding vector (the code's treatment of "sparse users"). ``false`` feeds the raw rows.
* **What is transferred** (``transfer``): ``both`` (default, CAT-ART) adds the attention over the
  other domains and the global embedding; ``global`` (CAT only) and ``domains`` (ART over the other
  domains only) are the code's ``d_in`` / ``d_sp`` variants.
* **Starting state** (``zero_init``, default on): the output layers of the attention and of ``G_d``
  start at zero, so each head starts exactly at the domain's BPR-MF and the epoch-0 state is that
  model; ``false`` uses PyTorch's default initialisation.
* **What ART trains** (``finetune_user``, ``finetune_items``, both on as in the code): the target
  domain's user embedding and item embeddings move with the adapters and the attention; the
  source embeddings and the CAT encoder stay frozen (the code also updates the source tables of
  each target model: here every head shares the frozen pretrained tables, which saves one copy of
  every table per domain).
* **Regularisation**: ``reg`` (1e-5, UCLR's value for every baseline) on the batch's user vectors
  and items in every BPR loss; the code omits it in the ART stage (``reg=0`` does the same).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cdrec.config import ModelParams, TrainConfig, bounded
from cdrec.data.samplers import BPRSampler
from cdrec.data.splits import Split
from cdrec.errors import require
from cdrec.models.base import RankingModel
from cdrec.models.cf.blocks import MLP, bpr_loss, info_nce_loss
from cdrec.models.cf.bprmf import BPRMF, BPRMFParams
from cdrec.models.cf.uclr import fit_domain_stage, score_by_domain, score_item_range, stage_checkpoint, trainer_settings, user_batches
from cdrec.models.registry import register
from cdrec.train.trainer import make_optimizer

if TYPE_CHECKING:
    from cdrec.train.trainer import FitResult, Trainer

TRANSFERS = ("both", "global", "domains")


@dataclass
class CATARTParams(ModelParams):
    """CAT-ART hyper-parameters (UCLR section 4.2: m = 128, lambda = 1e-5; the rest from the public code)."""

    dim: int = bounded(128, 1)
    reg: float = bounded(1e-5, 0)
    init_std: float = bounded(0.1, 0, lo_open=True)
    # CAT: contrastive autoencoder over the concatenated per-domain embeddings
    hidden: list[int] = bounded(lo=1, default_factory=lambda: [640, 384])
    mask_domains: int = bounded(1, 1)
    pad_missing: bool = True
    tau: float = bounded(0.1, 0, lo_open=True)
    con_weight: float = bounded(0.2, 0)
    rec_weight: float = bounded(0.4, 0)
    cat_lr: float = bounded(1e-3, 0, lo_open=True)
    cat_batch: int = bounded(2048, 2)
    cat_epochs: int = bounded(20, 0)
    cat_passes: int = bounded(10, 1)
    # ART: per target domain; transfer both | global | domains
    transfer: str = "both"
    heads: int = bounded(1, 1)
    attn_dropout: float = bounded(0.1, 0, 1, hi_open=True)
    zero_init: bool = True
    finetune_user: bool = True
    finetune_items: bool = True
    art_epochs: int = bounded(10, 0)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.transfer in TRANSFERS, f"model_params.transfer: expected both, global or domains, got {self.transfer!r}")
        require(self.dim % self.heads == 0, f"model_params.heads: must divide model_params.dim ({self.dim}), got {self.heads}")

    @property
    def uses_global(self) -> bool:
        return self.transfer in ("both", "global")

    @property
    def uses_domains(self) -> bool:
        return self.transfer in ("both", "domains")


# ------------------------------------------------------------------------------ CAT
class ContrastiveDomainAE(nn.Module):
    """CAT: ``[E_1[u], ..., E_D[u]] -> e_u -> reconstruction``, with a learned padding vector for
    masked (and, with ``pad_missing``, missing) domains."""

    def __init__(self, n_domains: int, p: CATARTParams) -> None:
        super().__init__()
        self.p = p
        self.encoder = MLP([n_domains * p.dim, *p.hidden, p.dim])
        self.decoder = MLP([p.dim, *reversed(p.hidden), n_domains * p.dim])
        self.pad = nn.Parameter(torch.randn(p.dim) * p.init_std)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``e_u`` from ``x [B, D, dim]``."""
        return self.encoder(x.flatten(1))

    def mask(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``x'``: ``mask_domains`` random domains of each user replaced by the padding vector (fresh
        draws from torch's generator, or from ``generator`` for the fixed validation view)."""
        shape = x.shape[:2]
        noise = torch.rand(shape, device=x.device) if generator is None else torch.rand(shape, generator=generator).to(x.device)
        picked = noise.argsort(dim=1)[:, : self.p.mask_domains]
        hide = torch.zeros(shape, dtype=torch.bool, device=x.device).scatter_(1, picked, True)
        return torch.where(hide[..., None], self.pad, x)

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Weighted InfoNCE between the two views' codes + both streams' reconstruction of ``x``."""
        z, z_masked = self.encode(x), self.encode(self.mask(x, generator))
        target = x.flatten(1).detach()
        rec = F.mse_loss(self.decoder(z), target) + F.mse_loss(self.decoder(z_masked), target)
        con = info_nce_loss(z, z_masked, self.p.tau) if x.shape[0] > 1 else z.new_zeros(())
        return self.p.con_weight * con + self.p.rec_weight * rec


# ------------------------------------------------------------------------------ ART
class ARTHead(nn.Module):
    """Target domain ``d``'s user representation ``E_d[u] + Attn(E_d[u], W_k E_k[u]) + G_d(e_u)``."""

    def __init__(self, n_users: int, n_domains: int, p: CATARTParams) -> None:
        super().__init__()
        self.user = nn.Parameter(torch.zeros(n_users, p.dim), requires_grad=p.finetune_user)  # E_d, set by start_from
        self.adapt = nn.ModuleList([nn.Linear(p.dim, p.dim) for _ in range(n_domains - 1)]) if p.uses_domains else None
        self.attn = nn.MultiheadAttention(p.dim, p.heads, dropout=p.attn_dropout, batch_first=True) if p.uses_domains else None
        self.glob = nn.Linear(p.dim, p.dim) if p.uses_global else None
        if p.zero_init:
            for layer in (self.attn.out_proj if self.attn is not None else None, self.glob):
                if layer is not None:
                    nn.init.zeros_(layer.weight)
                    nn.init.zeros_(layer.bias)

    def start_from(self, user_weight: torch.Tensor) -> None:
        with torch.no_grad():
            self.user.copy_(user_weight)

    def forward(self, users: torch.Tensor, sources: torch.Tensor | None, global_emb: torch.Tensor | None) -> torch.Tensor:
        """``users [B]``, ``sources [B, D-1, dim]`` (the other domains' embeddings), ``global_emb [B, dim]``."""
        out = target = self.user[users]
        if self.attn is not None:
            keys = torch.stack([adapt(sources[:, k]) for k, adapt in enumerate(self.adapt)], dim=1)
            transferred, _ = self.attn(target[:, None], keys, keys, need_weights=False)
            out = out + transferred[:, 0]
        if self.glob is not None:
            out = out + self.glob(global_emb)
        return out


# ------------------------------------------------------------------------------ model
@register("cat-art", family="cf", params=CATARTParams, min_domains=2,
          needs="its global user embedding and attention transfer combine several domains")
class CATART(RankingModel):
    """Per-domain BPR-MF -> CAT global user embeddings -> ART per target domain (the ``art`` stage scores)."""

    def __init__(self, n_users: int, n_items: int, item_offsets: np.ndarray, params: CATARTParams) -> None:
        super().__init__()
        self.n_domains = len(item_offsets) - 1
        require(self.n_domains >= 2, f"cat-art: a cross-domain model needs at least two domains, got {self.n_domains}")
        require(params.mask_domains < self.n_domains,
                f"model_params.mask_domains: expected fewer than the {self.n_domains} domains, got {params.mask_domains}")
        self.params = params
        self.n_users, self.n_items = n_users, n_items
        self.mf = BPRMF(self.n_domains * n_users, n_items, BPRMFParams(dim=params.dim, reg=params.reg, init_std=params.init_std))
        self.cat = ContrastiveDomainAE(self.n_domains, params)
        self.heads = nn.ModuleList([ARTHead(n_users, self.n_domains, params) for _ in range(self.n_domains)])
        self.register_buffer("item_offsets", torch.as_tensor(np.asarray(item_offsets), dtype=torch.long))
        self.register_buffer("present", torch.ones(self.n_domains, n_users, dtype=torch.bool))  # trained in domain d
        self.register_buffer("global_emb", torch.zeros(n_users, params.dim))  # e_u of the trained CAT (frozen in ART)
        self.stage = "art"
        self._split: Split | None = None

    @classmethod
    def from_split(cls, split: Split, params: CATARTParams) -> "CATART":
        data = split.data
        require(data.item_offsets is not None, f"{data.name}: CAT-ART needs items owned by domains")
        model = cls(data.n_users, data.n_items, data.item_offsets, params)
        model.present.copy_(torch.as_tensor(split.train_counts().T > 0))
        model._split = split
        return model

    # -------------------------------------------------------------------- representations
    def domain_tables(self) -> torch.Tensor:
        """The pretrained per-domain user tables ``E [D, n_users, dim]``."""
        return self.mf.user_emb.weight.view(self.n_domains, self.n_users, -1)

    def domain_inputs(self, users: torch.Tensor) -> torch.Tensor:
        """``[B, D, dim]``: each user's per-domain embeddings (frozen), the padding vector where the
        user has no training interaction in a domain (``pad_missing``)."""
        x = self.domain_tables().detach()[:, users].transpose(0, 1)
        if self.params.pad_missing:
            x = torch.where(self.present[:, users].T[..., None], x, self.cat.pad)
        return x

    def encode_users(self, batch: int) -> None:
        """Store every user's global embedding ``e_u = enc(x_u)`` (CAT is frozen from here on, so ART
        reads it instead of running the encoder per step; it is saved with the model)."""
        with torch.no_grad():
            for start in range(0, self.n_users, batch):
                users = torch.arange(start, min(start + batch, self.n_users), device=self.global_emb.device)
                self.global_emb[users] = self.cat.encode(self.domain_inputs(users))

    def head_vectors(self, domain: int, users: torch.Tensor) -> torch.Tensor:
        """ART's user representation for target domain ``domain``."""
        head = self.heads[domain]
        sources = None
        if head.attn is not None:
            sources = self.domain_inputs(users).detach()[:, [k for k in range(self.n_domains) if k != domain]]
        return head(users, sources, self.global_emb[users])

    def user_vectors(self, users: torch.Tensor, domain: int) -> torch.Tensor:
        """The representation that scores domain ``domain`` in the current stage (``E_d`` before ART)."""
        if self.stage == "art":
            return self.head_vectors(domain, users)
        return self.domain_tables()[domain, users]

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return score_by_domain(self.user_vectors, self.mf.item_emb, self.item_offsets, users, items)

    def score_all(self, users: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return score_item_range(self.user_vectors, self.mf.item_emb, self.item_offsets, users, start, stop)

    # -------------------------------------------------------------------- training stages
    def fit(
        self, trainer: Trainer, sampler: BPRSampler, validate: Callable[[], dict[str, float]], *, resume: bool = False,
        validate_split: Callable[[Split], dict[str, float]],
    ) -> FitResult:
        """Per-domain BPR-MF, then CAT, then one ART head per domain (module docstring); returns the
        last stage's fit result with the whole history (``stage`` marks each epoch). Each stage keeps
        its checkpoint (``mf``, ``cat``, ``art-<d>``: :func:`~cdrec.models.cf.uclr.stage_checkpoint`),
        so ``resume`` loads the finished stages and continues the one that was cut off."""
        split = self._split
        require(split is not None, "CATART.fit needs a model built with CATART.from_split")
        p = self.params
        make, cfg, seed, device, run_dir = trainer_settings(trainer)
        history: list[dict] = []
        train_s = 0.0

        self.stage = "mf"
        last = make(_DomainMFStage(self), cfg, seed=seed, device=device, checkpoint=stage_checkpoint(run_dir, "mf"), desc="cat-art:mf").fit(
            sampler.epoch, validate, n_batches=len(sampler), resume=resume
        )
        history += [{**h, "stage": "mf"} for h in last.history]
        train_s += last.train_s

        if p.cat_epochs > 0:
            self.stage = "cat"
            users = np.unique(split.data.users[split.train_rows]).astype(np.int64)
            stage = _CATStage(self)
            held_out = torch.as_tensor(users, device=device)
            last = make(stage, dataclasses.replace(cfg, epochs=p.cat_epochs), seed=seed, device=device, metric="cat_loss", minimize=True,
                        checkpoint=stage_checkpoint(run_dir, "cat"), desc="cat-art:cat").fit(
                lambda epoch: user_batches(users, p.cat_batch, p.cat_passes, seed, epoch),
                lambda: {"cat_loss": stage.fixed_view_loss(held_out, seed)},
                n_batches=p.cat_passes * -(-len(users) // p.cat_batch), resume=resume,
            )
            history += [{**h, "stage": "cat"} for h in last.history]
            train_s += last.train_s

        self.stage = "art"
        self.cat.eval()
        self.encode_users(p.cat_batch)
        tables = self.domain_tables().detach()
        for d, head in enumerate(self.heads):
            head.start_from(tables[d])
        art_cfg = dataclasses.replace(cfg, epochs=p.art_epochs)
        for d, head in enumerate(self.heads):
            dsplit = split.restrict(d)
            if len(dsplit.train_rows) == 0 or p.art_epochs == 0:
                continue
            start = {"head": copy.deepcopy(head.state_dict()), "items": self.mf.item_emb.weight.detach().clone()}

            def restore(head: ARTHead = head, start: dict = start) -> None:
                head.load_state_dict(start["head"])
                self.mf.item_emb.weight.data.copy_(start["items"])

            last = fit_domain_stage(make, self, _ARTStage(self, d), art_cfg, seed, device, d, dsplit, validate_split, restore, desc=f"cat-art:art:{d}",
                                    checkpoint=stage_checkpoint(run_dir, f"art-{d}"), resume=resume)
            history += [{**h, "stage": f"art:{d}"} for h in last.history]
            train_s += last.train_s
        return dataclasses.replace(last, history=history, train_s=round(train_s, 3))


# ------------------------------------------------------------------------------ stage modules
class _DomainMFStage(nn.Module):
    """The ``D`` per-domain BPR-MF models as one BPR-MF over ``(domain, user)`` rows (closed-form steps)."""

    def __init__(self, model: CATART) -> None:
        super().__init__()
        self.mf = model.mf
        self.n_users = model.n_users

    def configure_optimizers(self, cfg: TrainConfig) -> torch.optim.Optimizer:
        return self.mf.configure_optimizers(cfg)

    def train_step(self, batch: dict[str, torch.Tensor], optimizers: list[torch.optim.Optimizer]) -> float:
        rows = batch["domain"].long() * self.n_users + batch["user"]
        return self.mf.closed_form_step({**batch, "user": rows}, optimizers)


class _CATStage(nn.Module):
    """CAT's loss on batches of users over the frozen per-domain embeddings."""

    def __init__(self, model: CATART) -> None:
        super().__init__()
        self.cat = model.cat
        self.inputs = model.domain_inputs  # a bound method: the model is not registered twice
        self.batch = model.params.cat_batch

    def configure_optimizers(self, cfg: TrainConfig) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.cat.parameters(), lr=self.cat.p.cat_lr)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.cat.loss(self.inputs(batch["user"]))

    def fixed_view_loss(self, users: torch.Tensor, seed: int) -> float:
        """CAT's loss over ``users`` in batches, with masks drawn from a generator seeded by ``seed``
        (the same view every epoch: the early-stopping criterion)."""
        generator = torch.Generator().manual_seed(seed)
        total = 0.0
        for start in range(0, len(users), self.batch):
            chunk = users[start : start + self.batch]
            total += float(self.cat.loss(self.inputs(chunk), generator)) * len(chunk)
        return total / max(len(users), 1)


class _ARTStage(nn.Module):
    """Target domain ``d``'s BPR loss on ART's user representation (the head, and the domain's items)."""

    def __init__(self, model: CATART, d: int) -> None:
        super().__init__()
        self.head = model.heads[d]
        self.item_emb = model.mf.item_emb
        self.p = model.params
        self.user_vectors = functools.partial(model.head_vectors, d)

    def configure_optimizers(self, cfg: TrainConfig) -> torch.optim.Optimizer:
        params = [w for w in self.head.parameters() if w.requires_grad]
        if self.p.finetune_items:
            params.append(self.item_emb.weight)
        return make_optimizer(params, dataclasses.replace(cfg, optimizer="adam", weight_decay=0.0), fused=True)  # Adam at the run's lr, fused kernel

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items = self.item_emb if self.p.finetune_items else (lambda idx: self.item_emb(idx).detach())
        return bpr_loss(self.user_vectors(batch["user"]), items(batch["pos"]), items(batch["neg"]), self.p.reg)
