"""M3oE (Zhang et al., SIGIR 2024): multi-domain multi-task mixture-of-experts.

Read top to bottom like the paper's section 2:

1. Domain representation extraction (Eqs. 1-2):
   ``f_DR(x_d) = (W_d (element-wise) W_sh)^T x_d + b_d + b_sh`` and
   ``h_d = W_c f_DR(x_d) + b_c + f_DA(x_d)`` with ``f_DA`` a domain-agnostic MLP.
2. Multi-view expert learning (Eqs. 3-7):
   * shared experts ``ReLU(LayerNorm(W_e h + b_e))`` (Eq. 3) fused by one softmax gate per
     (domain, task) (Eq. 4);
   * one expert per domain, fused with ``beta_d`` for the sample's own domain and
     ``(1 - beta_d) / (D - 1)`` for each other domain (Eq. 5);
   * one expert per task, fused with ``beta_t`` likewise (Eq. 6);
   * ``h_bar = S(h) + alpha_d * D(h) + alpha_t * T(h)`` (Eq. 7). The paper's Eq. 7 prints the two
     alphas swapped with respect to its own discussion ("alpha_d controls the overall weight of the
     domain expert module"); we follow the discussion: ``alpha_d`` (one per domain) weighs the
     domain module and ``alpha_t`` (one per task) the task module.
3. One tower per (domain, task) and a sigmoid (Eqs. 8-9).
4. AutoML (section 2.6, Eqs. 10-11): every fusion weight is ``sigmoid(e_w)`` of a learnable scalar
   (``beta_d``, ``alpha_d``: one per domain; ``beta_t``, ``alpha_t``: one per task). The weights
   are optimised by a first-order bi-level scheme: the model parameters ``W`` are updated on
   training batches with the fusion weights held fixed (detached), and every ``arch_every``
   training steps the fusion weights alone take a step of their own Adam optimizer
   (``arch_lr``) on a *held-out* batch (the validation part; never a training batch). This avoids
   the defects of the authors' public code, where the weights went to the main optimizer, the
   "validation" batch came from the training loader and the configured scheduler never ran.

Ablations of Table 3 (``ablation``): ``no_automl`` (all fusion weights fixed at 0.5),
``concat`` (concatenate the three module outputs instead of adding them), ``gated`` (one softmax
gate per (domain, task) over all shared, domain and task experts replaces the weighted fusion),
``no_domain``, ``no_task``, ``no_domain_task`` (drop the module(s)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cdrec.config import TrainConfig, bounded
from cdrec.errors import CdrecError
from cdrec.models.ctr.layers import CTRModel, CTRParams, CTRSchema, ExpertBank, Gates, Towers, _uniform_, mix, own_domain
from cdrec.models.registry import register
from cdrec.train.trainer import make_optimizer

if TYPE_CHECKING:
    from cdrec.train.ctr import HeldoutStream

ABLATIONS = ("none", "no_automl", "concat", "gated", "no_domain", "no_task", "no_domain_task")


@dataclass
class M3oEParams(CTRParams):
    """Section 3.3: embedding 16, one-layer experts, two-layer towers, N = 1 shared expert on
    MovieLens; ``arch_lr`` / ``arch_every`` drive the bi-level step (the paper gives no learning
    rate; 3e-2 and every 2nd step were chosen on ML-100K validation AUC against 1e-2 / every 5th),
    ``ablation`` picks a Table 3 row. ``arch_every = 0`` is section 2.6's literal schedule: "we first
    update the model framework W for one epoch, then we calculate loss based on one batch data and
    optimize the weights" — one upper-level step per epoch (the authors' code also steps once per
    epoch, with ``learning_rate_darts`` 1e-3). ``expert_layers`` stacks Eq. 3 (1 = the paper's
    one-layer experts; the authors' code uses 2)."""

    n_shared: int = bounded(1, 1)
    expert_layers: int = bounded(1, 1)
    arch_lr: float = bounded(3e-2, 0, lo_open=True)
    arch_every: int = bounded(2, 0)
    ablation: str = "none"


@register("m3oe", family="ctr", params=M3oEParams)
class M3oE(CTRModel):
    modes = ("mdmt",)

    def __init__(self, schema: CTRSchema, params: M3oEParams) -> None:
        if params.ablation not in ABLATIONS:
            raise CdrecError(f"model_params.ablation: expected one of {list(ABLATIONS)}, got {params.ablation!r}")
        super().__init__(schema, params)
        D, T, H = self.n_domains, self.n_tasks, params.hidden
        self.ablation = params.ablation
        # --- Eqs. 1-2: domain representation extraction
        self.w_sh = nn.Parameter(_uniform_(torch.empty(self.in_dim, H), self.in_dim))
        self.b_sh = nn.Parameter(torch.zeros(H))
        self.w_d = nn.Parameter(torch.ones(D, self.in_dim, H))
        self.b_d = nn.Parameter(torch.zeros(D, H))
        self.w_c = nn.Linear(H, H)
        self.f_da = nn.Sequential(nn.Linear(self.in_dim, H), nn.ReLU(), nn.Linear(H, H))
        # --- Eqs. 3-6: shared, domain and task experts in one bank: [shared N | domain D | task T]
        self.n_shared = params.n_shared
        n_experts = params.n_shared + D + T
        self.experts = ExpertBank(n_experts, H, H)
        self.deeper_experts = nn.Sequential(*(ExpertBank(n_experts, H, H) for _ in range(params.expert_layers - 1)))
        n_gated = params.n_shared + D + T if self.ablation == "gated" else params.n_shared
        self.gates = Gates(D * T, H, n_gated)
        # --- Eqs. 10-11: fusion weights sigmoid(e_w), e_w = 0 -> 0.5
        self.e_beta_d = nn.Parameter(torch.zeros(D))
        self.e_beta_t = nn.Parameter(torch.zeros(T))
        self.e_alpha_d = nn.Parameter(torch.zeros(D))
        self.e_alpha_t = nn.Parameter(torch.zeros(T))
        # --- Eqs. 8-9
        tower_in = 3 * H if self.ablation == "concat" else H
        self.towers = Towers(D, T, tower_in, params.tower_hidden)
        self.heldout: HeldoutStream | None = None
        self._arch_grad = False
        self._steps = 0
        self.steps_per_epoch = 1  # set by the CTR task; the period of the upper-level step when arch_every = 0

    # ------------------------------------------------------------------ AutoML weights
    def arch_parameters(self) -> list[nn.Parameter]:
        """The fusion-weight logits ``e_w`` (empty when the ablation fixes the weights)."""
        if self.ablation in ("no_automl", "gated"):
            return []
        return [self.e_beta_d, self.e_beta_t, self.e_alpha_d, self.e_alpha_t]

    def model_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in (self.e_beta_d, self.e_beta_t, self.e_alpha_d, self.e_alpha_t)}
        return [p for p in self.parameters() if id(p) not in arch]

    def fusion_weights(self) -> dict[str, torch.Tensor]:
        """``w = sigmoid(e_w)`` (Eq. 10); fixed 0.5 for ``no_automl``; detached outside the held-out step."""
        raw = {"beta_d": self.e_beta_d, "beta_t": self.e_beta_t, "alpha_d": self.e_alpha_d, "alpha_t": self.e_alpha_t}
        if self.ablation == "no_automl":
            return {k: torch.full_like(v, 0.5).detach() for k, v in raw.items()}
        out = {k: torch.sigmoid(v) for k, v in raw.items()}
        return out if self._arch_grad else {k: v.detach() for k, v in out.items()}

    # ------------------------------------------------------------------ forward (Eqs. 1-9)
    def represent(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """Eqs. 1-2: ``h_d = W_c ((W_d * W_sh)^T x + b_d + b_sh) + b_c + f_DA(x)``."""
        f_dr = own_domain(torch.einsum("bi,dih->bdh", x, self.w_d * self.w_sh), domain) + self.b_d[domain] + self.b_sh
        return self.w_c(f_dr) + self.f_da(x)

    def views(self, x: torch.Tensor, domain: torch.Tensor) -> dict[str, torch.Tensor]:
        """The expert outputs and the fused representation of every task, ``[B, T, H]`` each."""
        D, T, N = self.n_domains, self.n_tasks, self.n_shared
        b = x.shape[0]
        h = self.represent(x, domain)
        experts = self.deeper_experts(self.experts(h))  # [B, N + D + T, H]
        shared_e, dom_e, task_e = experts[:, :N], experts[:, N : N + D], experts[:, N + D :]
        out = {"domain_experts": dom_e, "task_experts": task_e}
        if self.ablation == "gated":
            fused = own_domain(mix(self.gates(h), experts).view(b, D, T, -1), domain)
            out["fused"] = fused
            return out
        w = self.fusion_weights()
        # Eq. 4: one gate per (domain, task) over the shared experts
        shared = own_domain(mix(self.gates(h), shared_e).view(b, D, T, -1), domain)  # [B, T, H]
        # Eq. 5: own domain expert with beta_d, the others share 1 - beta_d equally
        own = own_domain(dom_e, domain)
        beta_d = w["beta_d"][domain].unsqueeze(1)
        dom_view = beta_d * own + (1 - beta_d) * (dom_e.sum(1) - own) / (D - 1) if D > 1 else own
        # Eq. 6: own task expert with beta_t, the others share 1 - beta_t equally
        beta_t = w["beta_t"].view(1, T, 1)
        task_view = beta_t * task_e + (1 - beta_t) * (task_e.sum(1, keepdim=True) - task_e) / (T - 1) if T > 1 else task_e
        dom_view = dom_view.unsqueeze(1).expand(-1, T, -1)
        alpha_d = w["alpha_d"][domain].view(b, 1, 1)
        alpha_t = w["alpha_t"].view(1, T, 1)
        use_dom = self.ablation not in ("no_domain", "no_domain_task")
        use_task = self.ablation not in ("no_task", "no_domain_task")
        # Eq. 7 (or its concatenated ablation)
        if self.ablation == "concat":
            fused = torch.cat([shared, alpha_d * dom_view, alpha_t * task_view], dim=-1)
        else:
            fused = shared
            if use_dom:
                fused = fused + alpha_d * dom_view
            if use_task:
                fused = fused + alpha_t * task_view
        out.update(shared=shared, domain=dom_view, task=task_view, fused=fused)
        return out

    def logits(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        return self.towers(self.views(x, domain)["fused"], domain)  # Eqs. 8-9 (sigmoid in predict/loss)

    # ------------------------------------------------------------------ bi-level optimisation (2.6)
    def configure_optimizers(self, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
        opts = [make_optimizer(self.model_parameters(), cfg)]
        arch = self.arch_parameters()
        if arch:
            opts.append(torch.optim.Adam(arch, lr=self.params.arch_lr))
        return opts

    def train_step(self, batch: dict[str, torch.Tensor], optimizers: list[torch.optim.Optimizer]) -> float:
        """Lower level: update ``W`` on a training batch (fusion weights detached); every
        ``arch_every`` steps (every epoch when 0), upper level: update the fusion weights on a
        held-out batch."""
        main = optimizers[0]
        main.zero_grad(set_to_none=True)
        loss = self.loss(batch)
        loss.backward()
        main.step()
        self._steps += 1
        every = self.params.arch_every or max(self.steps_per_epoch, 1)
        if len(optimizers) > 1 and self.heldout is not None and self._steps % every == 0:
            self.arch_step(next(self.heldout), optimizers[1])
        return float(loss.detach())

    def arch_step(self, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> float:
        """Upper level: gradient of the held-out loss w.r.t. the fusion weights only."""
        params = self.arch_parameters()
        self._arch_grad = True
        try:
            loss = self.loss(batch)
        finally:
            self._arch_grad = False
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        optimizer.zero_grad(set_to_none=True)
        for p, g in zip(params, grads):
            p.grad = torch.zeros_like(p) if g is None else g
        optimizer.step()
        return float(loss.detach())

    def training_state(self) -> dict[str, Any]:
        """The lower-level step count and the held-out stream's position, kept for ``--resume``."""
        return {"steps": self._steps, "heldout_position": self.heldout.position if self.heldout is not None else 0}

    def load_training_state(self, state: dict[str, Any]) -> None:
        self._steps = int(state["steps"])
        if self.heldout is not None:
            self.heldout.position = int(state["heldout_position"])

    def weights_report(self) -> dict[str, list[float]]:
        with torch.no_grad():
            return {k: [round(float(x), 4) for x in v.flatten()] for k, v in self.fusion_weights().items()}
