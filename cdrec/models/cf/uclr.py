"""UCLR: user-aware contrastive learning for robust multi-target cross-domain recommendation
(Yang et al., WWW 2024), section 3, and the ablation ladder of its Tables 4-5.

Reading order follows the paper:

1. **Pretrained global embedding** (PGE, section 3.3, Eq. 2): BPR-MF over the union of all
   domains' items; user table ``E``, item table ``I``, ``r_ij = E_i^T I_j``. With
   ``backbone="lightgcn"`` the pretraining is a joint :class:`~cdrec.models.cf.lightgcn.LightGCN`
   over every domain's training graph instead (the same module, loss and optimizer as the
   ``lightgcn`` model, so ``pge-lightgcn`` is a plain joint LightGCN run), and ``E``, ``I`` become
   its propagated (layer-mean) user and item embeddings, the ones it scores with.
2. **Contrastive dual-stream collaborative autoencoder** (section 3.4, :class:`ContrastiveAE`):
   the reconstruction stream encodes ``E``, the generation stream encodes "randomly masked user
   embeddings" ``E'`` (the contrastive view, ``mask_mode`` below); both streams share the
   weights (MLP ``m -> 128 -> 32`` and back); the user-aware contrastive loss (Eq. 3) has one
   learnable temperature per user, clipped to ``[1e-5, 1]``; the reconstruction loss (Eq. 4)
   asks both decoded streams for the original ``E_i``; the combined loss is Eq. 5 with
   ``alpha = 1e-3``. Temperatures move by the gradient of the contrastive loss (Algorithm 1,
   step 6; their own learning rate ``tau_lr``); the network by the combined loss (step 9).
3. **Domain-aware LoRA finetune** (section 3.5, :class:`DomainHead`): for each domain ``d`` the
   user table becomes ``W = W0 + B A`` with ``W0 = E`` frozen and ``B = 0`` at the start; the
   domain's copy of the autoencoder and temperatures is finetuned with it on
   ``L_ft^d = L_ft-bpr^d + L_combined`` (Eqs. 6-7).

Choices the paper leaves open (each has an option):

* **Which embedding scores items** (``score_with``; the same vector is the user side of Eq. 6
  while finetuning, and what ``cdrec evaluate``, ``recommend`` and ``serve`` score with):
  ``"decoded"`` (default) scores the reconstruction-stream output ``E_hat_i = dec(enc(W_i))``
  against the item embeddings — the autoencoder's "better and more equal" embedding is what the
  paper says it produces, and it is the only reading under which the ablation rows PGE+AE ...
  PGE+UCL-AE differ from PGE; ``"finetuned"`` scores the LoRA-finetuned row ``W_i = (W0 + B A)_i``
  of section 3.5 itself (Eq. 6 as written), the autoencoder acting only as a regulariser through
  Eq. 7; ``"original"`` scores the pretrained ``E_i = W0_i`` (finetuning then moves only the items
  and the autoencoder). Without LoRA (the ladder rungs below ``uclr``) ``W = E``, so
  ``finetuned`` and ``original`` coincide there.
* **Whether item embeddings are finetuned** (``finetune_items``): ``True`` (default) finetunes
  the domain's rows of ``I`` in Eq. 6 (Eq. 6 regularises ``I_j, j in V_d``, so they are
  parameters of the domain's loss); domains own disjoint item ranges, so one table holds every
  domain's finetuned items. ``False`` keeps the pretrained items frozen.
* **Temperature objective** (``rho``): Eq. 3 alone has a temperature gradient equal to the
  entropy of the softmax over negatives (never negative), so every temperature would sink to the
  lower clip. ``rho`` adds the KL-constraint term of Qiu et al. (2023), the paper's reference
  [43] for automatic temperature individualisation (see
  :func:`~cdrec.models.cf.blocks.user_aware_contrastive_loss`); ``rho=None`` is Eq. 3 verbatim.
* **Contrastive view** (``mask_mode``; how ``E'``, the "randomly masked user embeddings" of
  section 3.4, is drawn): ``"row"`` replaces a share ``mask_ratio`` of the batch's users
  by zero vectors, as section 3.4 describes — the unmasked users' two streams are then identical
  and every masked user has the same positive ``enc(0)``; ``"element"`` (default) zeroes each
  coordinate of each user's embedding with probability ``mask_ratio`` (a 0-1 mask as appendix B.2
  puts it), so every user's view differs; it won on validation MRR@10 on each of the four datasets
  of ``cdrec reproduce uclr --section choices`` (issue #32; the figures are in that report), and
  became the default then; ``"element+dropout"`` adds dropout of rate ``encoder_dropout``
  (default 0.1) to the encoder's hidden layers, so both streams are perturbed independently while
  training (the encoder is deterministic at evaluation). Masks and dropout draw from torch's
  generator, which the Trainer seeds per epoch: a fresh mask per user and per step, the same
  masks on a seeded rerun.

Training runs in stages from :meth:`UCLR.fit` (the ranking task calls it): PGE with the caller's
trainer settings and early stopping on validation MRR@10 (cached in ``pge_cache`` when given, so
every rung of the ladder in one dataset and seed reuses one pretraining; a relative ``pge_cache`` is
resolved against the run folder, :func:`pge_cache_path`), the autoencoder for
``ae_epochs`` (x ``ae_passes`` passes over the users, early stopping on validation MRR@10), then
per-domain LoRA finetuning for ``ft_epochs`` with early stopping on the domain's validation
MRR@10 (the un-finetuned state counts as epoch 0, so a domain keeps ``W0`` when finetuning never
helps on validation). Learned temperatures are kept in the state dict (``ae.tau``,
``heads.<d>.ae.tau``) and written to ``temperatures.npz`` in the run directory.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator

import numpy as np
import torch
from torch import nn

from cdrec.config import ModelParams, TrainConfig, bounded
from cdrec.data.samplers import BPRSampler, epoch_rng
from cdrec.data.splits import Split
from cdrec.errors import require
from cdrec.models.base import RankingModel
from cdrec.models.cf.blocks import MLP, LoRAEmbedding, bpr_loss, clip_temperatures, user_aware_contrastive_loss
from cdrec.models.cf.lightgcn import LightGCN, LightGCNParams
from cdrec.models.registry import register
from cdrec.results.schema import atomic_path

if TYPE_CHECKING:
    from cdrec.train.trainer import FitResult, Trainer


@dataclass
class UCLRParams(ModelParams):
    """UCLR hyper-parameters (section 4.2 values as defaults) and the ladder switches."""

    dim: int = bounded(128, 1)
    reg: float = bounded(1e-5, 0)
    init_std: float = bounded(0.1, 0, lo_open=True)
    # ladder switches: autoencoder none | single (PGE+AE) | dual; temperature global | user
    autoencoder: str = "dual"
    temperature: str = "user"
    lora: bool = True
    # pretraining backbone (section 3.3): bprmf (Eq. 2) | lightgcn; layers: LightGCN's K (default 3)
    backbone: str = "bprmf"
    layers: int | None = bounded(None, 0)
    # contrastive dual-stream collaborative autoencoder (section 3.4); view: row | element | element+dropout
    hidden: list[int] = bounded(lo=1, default_factory=lambda: [128, 32])
    mask_ratio: float = bounded(0.3, 0, 1, hi_open=True)
    mask_mode: str = "element"
    encoder_dropout: float | None = bounded(None, 0, 1, hi_open=True)
    alpha: float = bounded(1e-3, 0)
    tau_init: float = bounded(0.1, 0, lo_open=True)
    tau_min: float = bounded(1e-5, 0, lo_open=True)
    tau_max: float = bounded(1.0, 0, lo_open=True)
    tau_lr: float = bounded(1e-2, 0)
    rho: float | None = bounded(0.5, 0, lo_open=True)
    ae_lr: float = bounded(1e-3, 0, lo_open=True)
    ae_batch: int = bounded(2048, 1)
    ae_epochs: int = bounded(20, 0)
    ae_passes: int = bounded(10, 1)
    # domain-aware LoRA finetune (section 3.5)
    lora_rank: int = bounded(8, 1)
    lora_init_std: float = bounded(0.01, 0)
    ft_epochs: int = bounded(10, 0)
    finetune_items: bool = True
    # the user embedding that scores items: decoded | original | finetuned
    score_with: str = "decoded"
    # reuse of one PGE pretraining across the ladder: a cache file, relative to the run folder unless
    # absolute (`cdrec reproduce uclr` writes ../../../../cache/pge-<dataset>-seed<k>.pt), or None
    pge_cache: str | None = None

    fixed_backbone: ClassVar[str | None] = None
    """The backbone a registered variant always uses (``uclr-lightgcn``, ``pge-lightgcn``), or ``None``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self)


BACKBONES = ("bprmf", "lightgcn")
MASK_MODES = ("row", "element", "element+dropout")
SCORE_WITH = ("decoded", "original", "finetuned")
DEFAULT_ENCODER_DROPOUT = 0.1


def _check(p: UCLRParams) -> None:
    require(p.fixed_backbone in (None, p.backbone),
            f"model_params.backbone: this variant always uses {p.fixed_backbone}, got {p.backbone!r} (the plain rungs take any backbone)")
    require(p.autoencoder in ("none", "single", "dual"), f"model_params.autoencoder: expected none, single or dual, got {p.autoencoder!r}")
    require(p.temperature in ("global", "user"), f"model_params.temperature: expected global or user, got {p.temperature!r}")
    require(p.backbone in BACKBONES, f"model_params.backbone: expected bprmf or lightgcn, got {p.backbone!r}")
    require(p.layers is None or p.backbone == "lightgcn", f"model_params.layers: only used with backbone=lightgcn, got backbone={p.backbone}")
    require(p.mask_mode in MASK_MODES, f"model_params.mask_mode: expected row, element or element+dropout, got {p.mask_mode!r}")
    require(p.encoder_dropout is None or p.mask_mode == "element+dropout",
            f"model_params.encoder_dropout: only used with mask_mode=element+dropout, got mask_mode={p.mask_mode}")
    require(p.mask_mode != "element+dropout" or len(p.hidden) >= 2,
            f"model_params.hidden: mask_mode=element+dropout drops hidden encoder units, so it needs at least two layer sizes, got {p.hidden}")
    renamed = "; 'embedding' is now called 'finetuned'" if p.score_with == "embedding" else ""
    require(p.score_with in SCORE_WITH, f"model_params.score_with: expected decoded, original or finetuned, got {p.score_with!r}{renamed}")
    require(not (p.lora and p.score_with == "original" and p.autoencoder == "none" and not p.finetune_items),
            "model_params.score_with: original scores the pretrained E, so with autoencoder=none and finetune_items=false the LoRA finetune has nothing to train")
    require(0 < p.tau_min <= p.tau_init <= p.tau_max, f"model_params: expected 0 < tau_min <= tau_init <= tau_max, got {p.tau_min}, {p.tau_init}, {p.tau_max}")
    require(len(p.hidden) >= 1, f"model_params.hidden: expected at least one layer size, got {p.hidden}")


def encoder_dropout(p: UCLRParams) -> float:
    """Dropout rate of the encoder's hidden layers: ``encoder_dropout`` (default 0.1) under
    ``mask_mode=element+dropout``, none otherwise."""
    if p.mask_mode != "element+dropout":
        return 0.0
    return DEFAULT_ENCODER_DROPOUT if p.encoder_dropout is None else p.encoder_dropout


def graph_params(p: UCLRParams) -> LightGCNParams:
    """The LightGCN settings of the ``lightgcn`` backbone (UCLR's ``dim``, ``reg``, ``init_std``)."""
    layers = LightGCNParams.layers if p.layers is None else p.layers
    return LightGCNParams(dim=p.dim, layers=layers, reg=p.reg, init_std=p.init_std)


# ------------------------------------------------------------------------------ scoring helpers
UserVectors = Callable[[torch.Tensor, int], torch.Tensor]
"""``user_vectors(users, domain)``: the user representation that scores domain ``domain``'s items."""


def score_by_domain(user_vectors: UserVectors, item_emb: nn.Embedding, item_offsets: torch.Tensor, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """``scores[n, c] = user_vectors(users[n], d) . I[items[n, c]]`` with ``d`` the domain owning the
    row's candidates (one pass per domain, not per user); shared by models with per-domain user vectors."""
    doms = torch.searchsorted(item_offsets, items[:, 0].contiguous(), right=True) - 1
    out = torch.empty(items.shape, device=items.device)
    for d in torch.unique(doms).tolist():
        rows = doms == d
        out[rows] = torch.einsum("nd,ncd->nc", user_vectors(users[rows], d), item_emb(items[rows]))
    return out


def score_item_range(user_vectors: UserVectors, item_emb: nn.Embedding, item_offsets: torch.Tensor, users: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Scores of ``users`` over the item range ``[start, stop)`` of one domain."""
    d = int(torch.searchsorted(item_offsets, torch.tensor([start], device=item_offsets.device), right=True)[0]) - 1
    return user_vectors(users, d) @ item_emb.weight[start:stop].T


# ------------------------------------------------------------------------------ section 3.4
class ContrastiveAE(nn.Module):
    """Dual-stream collaborative autoencoder with shared weights and learnable temperatures."""

    def __init__(self, dim: int, n_users: int, p: UCLRParams) -> None:
        super().__init__()
        self.p = p
        self.encoder = MLP([dim, *p.hidden], dropout=encoder_dropout(p))
        self.decoder = MLP([p.hidden[-1], *reversed(p.hidden[:-1]), dim])
        shape = (n_users,) if p.temperature == "user" else ()
        self.tau = nn.Parameter(torch.full(shape, float(p.tau_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction stream: ``E_hat = dec(enc(E))``."""
        return self.decoder(self.encoder(x))

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """``E'``: a share ``mask_ratio`` of the users (rows) replaced by zero vectors (``row``), or
        of each user's coordinates (``element``, ``element+dropout``); a fresh draw per call."""
        shape = (x.shape[0], 1) if self.p.mask_mode == "row" else x.shape
        keep = torch.rand(shape, device=x.device) >= self.p.mask_ratio
        return x * keep

    def temperatures(self, users: torch.Tensor) -> torch.Tensor:
        return self.tau[users] if self.tau.dim() == 1 else self.tau

    def loss(self, x: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """Eq. 5 averaged over the batch (``single``: Eq. 4's reconstruction term alone, PGE+AE)."""
        if self.p.autoencoder == "single":
            return (self(x) - x).pow(2).sum(-1).mean()
        z, z_masked = self.encoder(x), self.encoder(self.mask(x))
        rec = (self.decoder(z) - x).pow(2).sum(-1) + (self.decoder(z_masked) - x).pow(2).sum(-1)  # Eq. 4
        if x.shape[0] < 2:
            return self.p.alpha * rec.mean()
        con = user_aware_contrastive_loss(z, z_masked, self.temperatures(users), self.p.rho)  # Eq. 3
        return (con + self.p.alpha * rec).mean()  # Eq. 5

    def optimizer_groups(self) -> list[dict[str, Any]]:
        net = [p for n, p in self.named_parameters() if n != "tau"]
        return [{"params": net, "lr": self.p.ae_lr}, {"params": [self.tau], "lr": self.p.tau_lr}]

    def clip(self) -> None:
        clip_temperatures(self.tau, self.p.tau_min, self.p.tau_max)


# ------------------------------------------------------------------------------ section 3.5
class DomainHead(nn.Module):
    """One domain's finetuned framework: LoRA user table ``W0 + B A`` and its copy of the AE."""

    def __init__(self, n_users: int, dim: int, p: UCLRParams) -> None:
        super().__init__()
        self.lora = LoRAEmbedding(torch.zeros(n_users, dim), p.lora_rank, init_std=p.lora_init_std)
        self.ae = ContrastiveAE(dim, n_users, p) if p.autoencoder != "none" else None

    def start_from(self, user_weight: torch.Tensor, ae: ContrastiveAE | None) -> None:
        """Reset to the pretrained state: ``W0 = E``, ``B = 0`` and the global autoencoder."""
        with torch.no_grad():
            self.lora.weight0.copy_(user_weight)
            self.lora.lora_B.zero_()
        if ae is not None and self.ae is not None:
            self.ae.load_state_dict(ae.state_dict())


class UCLR(RankingModel):
    """PGE -> contrastive dual-stream autoencoder -> per-domain LoRA (the ``uclr`` rung).

    ``graph`` is the LightGCN of the ``lightgcn`` backbone (built by :meth:`from_split` before
    anything else, so it starts from the same draws as a plain ``lightgcn`` run), else ``None``."""

    def __init__(self, n_users: int, n_items: int, item_offsets: np.ndarray, params: UCLRParams, graph: LightGCN | None = None) -> None:
        super().__init__()
        require((graph is not None) == (params.backbone == "lightgcn"), "UCLR: backbone=lightgcn needs its graph (build the model with UCLR.from_split)")
        self.params = params
        self.graph = graph
        self.n_users, self.n_items = n_users, n_items
        self.user_emb = nn.Embedding(n_users, params.dim)  # E (Eq. 2)
        self.item_emb = nn.Embedding(n_items, params.dim)  # I (Eq. 2)
        nn.init.normal_(self.user_emb.weight, std=params.init_std)
        nn.init.normal_(self.item_emb.weight, std=params.init_std)
        self.register_buffer("item_offsets", torch.as_tensor(np.asarray(item_offsets), dtype=torch.long))
        self.ae = ContrastiveAE(params.dim, n_users, params) if params.autoencoder != "none" else None
        n_domains = len(item_offsets) - 1
        self.heads = nn.ModuleList([DomainHead(n_users, params.dim, params) for _ in range(n_domains)]) if params.lora else None
        self.stage = self.final_stage
        self._split: Split | None = None

    @classmethod
    def from_split(cls, split: Split, params: UCLRParams) -> "UCLR":
        data = split.data
        require(data.item_offsets is not None, f"{data.name}: UCLR needs items owned by domains")
        graph = LightGCN.from_split(split, graph_params(params)) if params.backbone == "lightgcn" else None
        model = cls(data.n_users, data.n_items, data.item_offsets, params, graph)
        model._split = split
        return model

    @property
    def final_stage(self) -> str:
        if self.params.lora:
            return "finetune"
        return "ae" if self.params.autoencoder != "none" else "pge"

    # -------------------------------------------------------------------- scoring
    def _decode(self, ae: ContrastiveAE | None, x: torch.Tensor) -> torch.Tensor:
        return ae(x) if ae is not None and self.params.score_with == "decoded" else x

    def head_vectors(self, domain: int, users: torch.Tensor) -> torch.Tensor:
        """Domain ``domain``'s finetuned user representation chosen by ``score_with``: ``W0_i``
        (original), ``W_i = (W0 + B A)_i`` (finetuned) or ``dec(enc(W_i))`` (decoded)."""
        head = self.heads[domain]
        w = head.lora.weight0[users] if self.params.score_with == "original" else head.lora(users)
        return self._decode(head.ae, w)

    def user_vectors(self, users: torch.Tensor, domain: int) -> torch.Tensor:
        """The user representation that scores domain ``domain``'s items in the current stage."""
        if self.stage == "pge":
            return self.user_emb(users)
        if self.stage == "ae":
            return self._decode(self.ae, self.user_emb(users))
        return self.head_vectors(domain, users)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        if self.stage == "pge" and self.graph is not None:
            return self.graph.score(users, items)
        return score_by_domain(self.user_vectors, self.item_emb, self.item_offsets, users, items)

    def score_all(self, users: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        if self.stage == "pge" and self.graph is not None:
            return self.graph.score_all(users, start, stop)
        return score_item_range(self.user_vectors, self.item_emb, self.item_offsets, users, start, stop)

    # -------------------------------------------------------------------- training stages
    def fit(
        self, trainer: Trainer, sampler: BPRSampler, validate: Callable[[], dict[str, float]], *, resume: bool = False,
        validate_split: Callable[[Split], dict[str, float]],
    ) -> FitResult:
        """Algorithm 1: PGE (step 1), autoencoder (steps 2-9), per-domain LoRA (step 10).

        ``trainer`` supplies the settings (``cfg``, ``seed``, ``device``, checkpoint folder); each
        stage trains with a trainer of the same class. ``validate`` scores the whole split and
        ``validate_split`` one domain's (the run's protocol and ``eval.ks`` for both). Returns the
        last stage's fit result with the whole history (``stage`` marks each epoch). Each stage keeps
        its checkpoint (``pge``, ``ae``, ``finetune-<d>``: :func:`stage_checkpoint`), so ``resume``
        loads the finished stages and continues the one that was cut off.
        """
        split = self._split
        require(split is not None, "UCLR.fit needs a model built with UCLR.from_split")
        make, cfg, seed, device, run_dir = trainer_settings(trainer)
        history: list[dict] = []
        train_s = 0.0

        # Step 1: pretrained global embedding (Eq. 2), cached across the ladder.
        self.stage = "pge"
        fit = self._pretrain(make, cfg, seed, device, sampler, validate, run_dir, resume)
        history += [{**h, "stage": "pge"} for h in fit.history]
        train_s += fit.train_s
        last = fit

        # Steps 2-9: contrastive dual-stream collaborative autoencoder (Eqs. 3-5).
        if self.ae is not None:
            self.stage = "ae"
            stage = _AEStage(self.ae, self.user_emb.weight.detach())
            ae_cfg = dataclasses.replace(cfg, epochs=self.params.ae_epochs)
            users = np.unique(split.data.users[split.train_rows]).astype(np.int64)
            last = make(stage, ae_cfg, seed=seed, device=device, checkpoint=stage_checkpoint(run_dir, "ae"), desc="uclr:ae").fit(
                lambda epoch: user_batches(users, self.params.ae_batch, self.params.ae_passes, seed, epoch), validate,
                n_batches=self.params.ae_passes * -(-len(users) // self.params.ae_batch), resume=resume,
            )
            history += [{**h, "stage": "ae"} for h in last.history]
            train_s += last.train_s

        # Step 10: domain-aware LoRA finetune (Eqs. 6-7), one head per domain.
        if self.heads is not None:
            self.stage = "finetune"
            for d, head in enumerate(self.heads):
                head.start_from(self.user_emb.weight.detach(), self.ae)
            for d, head in enumerate(self.heads):
                dsplit = split.restrict(d)
                if len(dsplit.train_rows) == 0:
                    continue
                last = self._finetune(make, cfg, seed, device, d, dsplit, validate_split, stage_checkpoint(run_dir, f"finetune-{d}"), resume)
                history += [{**h, "stage": f"finetune:{d}"} for h in last.history]
                train_s += last.train_s
        self.stage = self.final_stage
        if run_dir is not None:
            self.save_temperatures(run_dir / "temperatures.npz", split)
        return dataclasses.replace(last, history=history, train_s=round(train_s, 3))

    def _pretrain(
        self,
        make: type[Trainer],
        cfg: TrainConfig,
        seed: int,
        device: torch.device,
        sampler: BPRSampler,
        validate: Callable[[], dict[str, float]],
        run_dir: Path | None,
        resume: bool,
    ) -> FitResult:
        cache = pge_cache_path(self.params.pge_cache, run_dir)
        key = self._cache_key(cfg, seed)
        if cache is not None and cache.exists():
            state = torch.load(cache, map_location=device, weights_only=False)
            if state.get("key") == key:
                if self.graph is not None:
                    self.graph.load_state_dict(state["graph"])
                self.user_emb.weight.data.copy_(state["user"])
                self.item_emb.weight.data.copy_(state["item"])
                return dataclasses.replace(state["fit"], train_s=0.0)
        stage = self.graph if self.graph is not None else _PGEStage(self)
        fit = make(stage, cfg, seed=seed, device=device, checkpoint=stage_checkpoint(run_dir, "pge"), desc="uclr:pge").fit(
            sampler.epoch, validate, n_batches=len(sampler), resume=resume
        )
        if self.graph is not None:  # E and I of the later stages: LightGCN's propagated embeddings
            self.graph.eval()
            with torch.no_grad():
                users, items = self.graph.propagate()
            self.user_emb.weight.data.copy_(users)
            self.item_emb.weight.data.copy_(items)
        if cache is not None:
            from cdrec.train.trainer import atomic_torch_save

            state = {"key": key, "user": self.user_emb.weight.detach().cpu(), "item": self.item_emb.weight.detach().cpu(), "fit": fit}
            if self.graph is not None:
                state["graph"] = {k: v.detach().cpu() for k, v in self.graph.state_dict().items()}
            atomic_torch_save(state, cache)
        return fit

    def _cache_key(self, cfg: TrainConfig, seed: int) -> str:
        """What the PGE pretraining depends on: the data, its training rows and validation candidates (early
        stopping reads them), the seed, the embedding settings and every trainer setting that changes the fit."""
        split = self._split
        p = self.params
        return json.dumps([
            split.data.name, self.n_users, self.n_items, *_fingerprint(split.train_rows), *_fingerprint(split.valid_rows),
            *_fingerprint(split.candidates.get("valid")),
            seed, p.dim, p.reg, p.init_std, cfg.epochs, cfg.lr, cfg.batch_size, cfg.patience, cfg.metric, cfg.max_batches,
            cfg.weight_decay, cfg.optimizer,
            *([p.backbone, graph_params(p).layers] if self.graph is not None else []),
        ])

    def _finetune(
        self, make: type[Trainer], cfg: TrainConfig, seed: int, device: torch.device, d: int, dsplit: Split,
        validate_split: Callable[[Split], dict[str, float]], checkpoint: Path | None, resume: bool,
    ) -> FitResult:
        head = self.heads[d]
        start = {"head": copy.deepcopy(head.state_dict()), "items": self.item_emb.weight.detach().clone()}

        def restore() -> None:
            head.load_state_dict(start["head"])
            self.item_emb.weight.data.copy_(start["items"])

        ft_cfg = dataclasses.replace(cfg, epochs=self.params.ft_epochs)
        return fit_domain_stage(make, self, _FinetuneStage(self, d), ft_cfg, seed, device, d, dsplit, validate_split, restore, desc=f"uclr:finetune:{d}",
                                checkpoint=checkpoint, resume=resume)

    # -------------------------------------------------------------------- temperatures
    def temperature_table(self, split: Split) -> dict[str, np.ndarray]:
        """Learned temperatures with each user's training activity (overall and per domain)."""
        counts = split.train_counts()
        out: dict[str, np.ndarray] = {"train_counts": counts, "total_count": counts.sum(axis=1)}
        if self.ae is not None:
            out["tau_ae"] = self.ae.tau.detach().cpu().numpy()
        if self.heads is not None:
            for d, head in enumerate(self.heads):
                if head.ae is not None:
                    out[f"tau_finetune_{d}"] = head.ae.tau.detach().cpu().numpy()
        return out

    def save_temperatures(self, path: Path, split: Split) -> None:
        table = self.temperature_table(split)
        if "tau_ae" not in table:
            return
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, domains=np.asarray(split.data.domains), **table)


# ------------------------------------------------------------------------------ stage modules
class _PGEStage(nn.Module):
    """BPR over all domains on the global tables (Eq. 2)."""

    def __init__(self, model: UCLR) -> None:
        super().__init__()
        self.user_emb, self.item_emb, self.reg = model.user_emb, model.item_emb, model.params.reg

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return bpr_loss(self.user_emb(batch["user"]), self.item_emb(batch["pos"]), self.item_emb(batch["neg"]), self.reg)


class _AEStage(nn.Module):
    """Combined loss (Eq. 5) on batches of users over the frozen pretrained embeddings."""

    def __init__(self, ae: ContrastiveAE, user_weight: torch.Tensor) -> None:
        super().__init__()
        self.ae = ae
        self.register_buffer("user_weight", user_weight, persistent=False)

    def configure_optimizers(self, cfg: TrainConfig) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.ae.optimizer_groups())

    def train_step(self, batch: dict[str, torch.Tensor], optimizers: list[torch.optim.Optimizer]) -> float:
        opt = optimizers[0]
        opt.zero_grad(set_to_none=True)
        users = batch["user"]
        loss = self.ae.loss(self.user_weight[users], users)
        loss.backward()
        opt.step()
        self.ae.clip()
        return float(loss.detach())


class _FinetuneStage(nn.Module):
    """Domain ``d``'s finetune loss (Eq. 7): BPR on the domain (Eq. 6, with the ``score_with``
    user representation) + combined loss (Eq. 5) on ``W``."""

    def __init__(self, model: UCLR, d: int) -> None:
        super().__init__()
        self.head = model.heads[d]
        self.item_emb = model.item_emb
        self.p = model.params
        self.user_vectors = functools.partial(model.head_vectors, d)

    def configure_optimizers(self, cfg: TrainConfig) -> torch.optim.Optimizer:
        groups: list[dict[str, Any]] = [{"params": [self.head.lora.lora_A, self.head.lora.lora_B], "lr": cfg.lr}]
        if self.head.ae is not None:
            groups += self.head.ae.optimizer_groups()
        if self.p.finetune_items:
            groups.append({"params": [self.item_emb.weight], "lr": cfg.lr})
        return torch.optim.Adam(groups)

    def train_step(self, batch: dict[str, torch.Tensor], optimizers: list[torch.optim.Optimizer]) -> float:
        opt = optimizers[0]
        opt.zero_grad(set_to_none=True)
        users = batch["user"]
        u = self.user_vectors(users)  # the representation that scores (score_with)
        item_emb = self.item_emb if self.p.finetune_items else (lambda idx: self.item_emb(idx).detach())
        loss = bpr_loss(u, item_emb(batch["pos"]), item_emb(batch["neg"]), self.p.reg)  # Eq. 6
        if self.head.ae is not None:
            uniq = torch.unique(users)
            loss = loss + self.head.ae.loss(self.head.lora(uniq), uniq)  # Eq. 7
        loss.backward()
        opt.step()
        if self.head.ae is not None:
            self.head.ae.clip()
        return float(loss.detach())


def trainer_settings(trainer: Trainer) -> tuple[type[Trainer], TrainConfig, int, torch.device, Path | None]:
    """The caller's trainer class (every stage trains with one of it), settings, seed, device and run folder."""
    run_dir = trainer.checkpoint.parent if trainer.checkpoint is not None else None
    return type(trainer), trainer.cfg, trainer.seed, trainer.device, run_dir


def _fingerprint(values: np.ndarray | None) -> list[int]:
    """A cheap fingerprint of an integer array (size, sum, sum of squares mod a prime) for cache keys."""
    if values is None:
        return [0, 0, 0]
    values = np.asarray(values, dtype=np.int64).ravel()
    return [int(values.size), int(values.sum()), int((values * values % 1_000_003).sum())]


def pge_cache_path(pge_cache: str | None, run_dir: Path | None) -> Path | None:
    """The PGE cache file of ``model_params.pge_cache``: an absolute path as it is, a relative one
    against the run folder ``run_dir`` (so a committed ``config.yaml`` names no machine's folder), or
    against the working folder when the model trains without one; ``None`` when not cached."""
    if not pge_cache:
        return None
    path = Path(pge_cache).expanduser()
    return (run_dir / path).resolve() if run_dir is not None and not path.is_absolute() else path


def stage_checkpoint(run_dir: Path | None, stage: str) -> Path | None:
    """``checkpoint-<stage>.pt`` of one training stage of a multi-stage model (UCLR, CAT-ART), or
    ``None`` without a run folder. The Trainer writes it after every epoch and it stays after the stage
    ends, until the run's ``model.pt`` is written (:func:`~cdrec.train.tasks.save_trained`): on
    ``--resume`` a finished stage's trainer loads it and trains no further epoch, an interrupted
    stage continues from it, and Ctrl-C names it (:mod:`cdrec.cli.out_dir`)."""
    return run_dir / f"checkpoint-{stage}.pt" if run_dir is not None else None


def fit_domain_stage(
    make: type[Trainer], model: nn.Module, stage: nn.Module, cfg: TrainConfig, seed: int, device: torch.device, d: int,
    dsplit: Split, validate_split: Callable[[Split], dict[str, float]], restore: Callable[[], None], *, desc: str,
    checkpoint: Path | None = None, resume: bool = False,
) -> FitResult:
    """Train domain ``d``'s ``stage`` module (a part of ``model``) for ``cfg.epochs`` on BPR batches of
    ``dsplit`` with early stopping on the domain's validation ``cfg.metric``. The state before training
    counts as epoch 0: when training never beats it on validation, ``restore()`` puts it back (UCLR's
    LoRA finetune, CAT-ART's ART stage). The sampler draws with the run's ``seed``, the trainer with
    ``seed + 7919 (d + 1)``; ``checkpoint`` and ``resume`` are the trainer's (:func:`stage_checkpoint`)."""
    dsampler = BPRSampler(dsplit.train, cfg.batch_size, seed=seed)
    has_valid = len(dsplit.valid_rows) > 0

    def validate() -> dict[str, float]:
        return validate_split(dsplit) if has_valid else {}

    model.eval()
    before = validate().get(cfg.metric, float("nan"))
    fit = make(stage, cfg, seed=seed + 7919 * (d + 1), device=device, checkpoint=checkpoint, desc=desc).fit(
        dsampler.epoch, validate, n_batches=len(dsampler), resume=resume
    )
    if np.isfinite(before) and not (fit.best_metric > before):
        restore()  # training never beat the starting state on validation
        fit = dataclasses.replace(fit, best_epoch=0, best_metric=before)
    fit.history.insert(0, {"epoch": 0, "loss": float("nan"), "valid": {cfg.metric: before}})
    return fit


def user_batches(users: np.ndarray, batch: int, passes: int, seed: int, epoch: int) -> Iterator[dict[str, np.ndarray]]:
    """Algorithm 1 step 2: shuffled batches of users, ``passes`` passes per epoch."""
    rng = epoch_rng(seed + 1, epoch)
    for _ in range(passes):
        perm = users[rng.permutation(len(users))]
        for start in range(0, len(perm), batch):
            yield {"user": perm[start : start + batch]}


# ------------------------------------------------------------------------------ ablation ladder
CROSS_DOMAIN = {"min_domains": 2, "needs": "every rung of the UCLR ladder learns one user embedding over several domains' items"}
"""What every rung declares to the registry: one domain (or ``scope: single``) is refused."""


@register("uclr", family="cf", params=UCLRParams, **CROSS_DOMAIN)
class UCLRModel(UCLR):
    """UCLR: PGE + UCL-AE + domain-aware LoRA finetune (Tables 2-5, last rung)."""


@dataclass
class PGEParams(UCLRParams):
    autoencoder: str = "none"
    lora: bool = False


@register("pge", family="cf", params=PGEParams, **CROSS_DOMAIN)
class PGE(UCLR):
    """PGE: the pretrained global embedding alone (joint BPR-MF over all domains)."""


@dataclass
class PGEAEParams(UCLRParams):
    autoencoder: str = "single"
    lora: bool = False


@register("pge+ae", family="cf", params=PGEAEParams, **CROSS_DOMAIN)
class PGEAE(UCLR):
    """PGE + AE: a single-stream autoencoder with the reconstruction loss only."""


@dataclass
class PGECLAEParams(UCLRParams):
    temperature: str = "global"
    lora: bool = False


@register("pge+cl-ae", family="cf", params=PGECLAEParams, **CROSS_DOMAIN)
class PGECLAE(UCLR):
    """PGE + CL-AE: dual-stream autoencoder, contrastive loss with one global temperature."""


@dataclass
class PGEUCLAEParams(UCLRParams):
    lora: bool = False


@register("pge+ucl-ae", family="cf", params=PGEUCLAEParams, **CROSS_DOMAIN)
class PGEUCLAE(UCLR):
    """PGE + UCL-AE: dual-stream autoencoder with one learnable temperature per user."""


LADDER = ["pge", "pge+ae", "pge+cl-ae", "pge+ucl-ae", "uclr"]
"""The rungs of Tables 4-5 in order."""


@dataclass
class _OnLightGCN:
    """Mixin of the variants whose pretraining is always LightGCN (listed first among the bases)."""

    backbone: str = "lightgcn"
    fixed_backbone: ClassVar[str | None] = "lightgcn"


@dataclass
class PGELightGCNParams(_OnLightGCN, PGEParams):
    pass


@register("pge-lightgcn", family="cf", params=PGELightGCNParams, **CROSS_DOMAIN)
class PGELightGCN(UCLR):
    """PGE with the LightGCN backbone: a joint LightGCN over all domains (the first stage of ``uclr-lightgcn``)."""


@dataclass
class UCLRLightGCNParams(_OnLightGCN, UCLRParams):
    pass


@register("uclr-lightgcn", family="cf", params=UCLRLightGCNParams, **CROSS_DOMAIN)
class UCLRLightGCN(UCLR):
    """UCLR with a joint LightGCN as the pretrained global embedding, then the same UCL-AE and LoRA stages."""


LIGHTGCN_BACKBONE = ["pge-lightgcn", "uclr-lightgcn"]
"""PGE and UCLR on the LightGCN backbone (Table 2 beside ``lightgcn``)."""
