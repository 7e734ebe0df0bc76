"""C2DSR (Cao, Cong, Sheng, Liu, Wang: "Contrastive Cross-Domain Sequential Recommendation", CIKM
2022; the issue named WSDM 2022: the paper, its arXiv version 2304.03891, the authors' README and
MERIT's reference [7] all say CIKM 2022), a DT-CDSR baseline of MERIT's Table 2 (section 5.2).
Reads top to bottom like the paper's method: (1) graphical and (2) attentive encoder, (3) single-
and cross-domain sequential objectives, (4) contrastive cross-domain infomax, (5) their weighted
sum. The paper's full text was not at hand here (its abstract and the authors' code were), so the
docstrings name these parts, not the paper's equation numbers.

Three streams as in MERIT: the mixed sequence (M) and the two domain sequences aligned to it
(A, B: the mixed one with the other domain's slots padded), each with its own item table.

(1) Graphical encoder (inter-sequence item relations). Item graphs from the *training* events of
all users (:func:`training_transitions`; no validation or test transition): the cross-domain graph
links each event to the user's next event (any domain), the single-domain graph to the user's next
event of the same domain (one block-diagonal graph serves A and B, each on its own item table, as
in the authors' ``adj_single``). Adjacency row-normalized (``D^-1 A``); a layer is ``H^l = A
Dropout(H^{l-1}) + b^l`` and the item vectors are the mean of ``H^0 .. H^K`` (:meth:`graph_items`).

(2) Attentive encoder (intra-sequence relations). Causal self-attention (SASRec,
:class:`~cdrec.models.sequential.sasrec.SequenceEncoder`) on ``(g_i + e_i) sqrt(d)`` plus a
position embedding (counted within the stream from the window's start), with ``g`` the graph
vector and ``e`` the stream's own item embedding: ``H_M`` on the mixed sequence, ``H_A``,
``H_B`` on the aligned domain sequences.

(3) Sequential objectives (:meth:`next_item_losses`). Cross-domain: ``H_M`` at each slot predicts
the next event of the mixed sequence, with a softmax over the items of that event's domain.
Single-domain: ``H_M + H_X`` at each slot of domain X predicts the user's next event of X. Scores
are a linear layer (``W_i . h + b_i``, not tied to the input embeddings).

(4) Contrastive cross-domain infomax (:meth:`infomax_loss`). For domain X: the single-domain
representation ``r_X`` (mean of ``H_X`` over X's slots) and the cross-domain representation at the
*other* domain's slots (mean of ``H_M`` there) are a positive pair for a bilinear discriminator
``D_X``; the negative replaces every X event of the mixed sequence by a random X item ("domain-based
random replacement") and encodes it again. Binary cross-entropy on both.

(5) ``L = lambda (L_M^A + L_M^B + L_A + L_B) + (1 - lambda) (L_cl^A + L_cl^B)`` (``rec_weight``).
At evaluation a target of domain X is scored with ``H_M`` at the latest slot plus ``H_X`` at the
latest slot of X.

The details and defaults follow the authors' code (github.com/cjx96/C2DSR, ``model/*.py``,
``utils/*.py``), each with the other choice as an option: 1 GNN layer whose weight matrix is never
used (only the propagation and a bias; ``gnn_weight=true`` applies one, a GCN layer), directed
transitions (``graph=undirected``), positions counted from the window's start
(``positions=reversed``), 1 head, 2 blocks, dropout 0.2, lambda 0.7, next-item losses on the last 10
slots only (``loss_window``), each summed and divided by the slots of that window (batch x 10).
Different on purpose: the shared cdrec encoder is post-norm with key-padding masks (theirs
pre-norm, padding visible as keys); no extra "padding" class in the softmax (the authors'
``lin_PAD``); corrupted sequences drawn afresh at every step (the authors draw them once when
loading the data); their duplicate-edge check never fires (its set is never filled), so repeated
transitions weigh more, as here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cdrec.config import bounded, require_choice
from cdrec.data.sequences import next_events
from cdrec.errors import require
from cdrec.models import registry
from cdrec.models.registry import register
from cdrec.models.sequential.base import SequentialModel, gather_positions, last_valid_index
from cdrec.models.sequential.blocks import forward_positions, reversed_positions
from cdrec.models.sequential.sasrec import EncoderParams, SequenceEncoder

GRAPHS = ("directed", "undirected")
POSITIONS = ("forward", "reversed")
STREAMS = "MAB"


@dataclass
class C2DSRParams(EncoderParams):
    """Defaults of the authors' ``train_rec.py``: d=256, 2 blocks, 1 head, dropout 0.2, 1 GNN layer,
    lambda 0.7 (their ``maxlen`` 15 fits their data; 50 here is MERIT's L).

    * ``gnn_layers``: propagation layers of the item graphs (0 = no graph, plain SASRec inputs).
    * ``gnn_weight``: a ``d x d`` weight in each layer (``A H W + b``, a GCN as the paper writes
      it); off = the authors' code, whose ``GraphConvolution`` never applies its weight.
    * ``graph``: ``directed`` = row ``i`` averages the items that followed ``i`` (authors' code);
      ``undirected`` = also the items that preceded it.
    * ``rec_weight``: lambda, the share of the next-item losses (the infomax gets ``1 - lambda``).
    * ``positions``: ``forward`` = counted from the window's first event of the stream (authors'
      code; a slot's input never depends on later events); ``reversed`` = from the latest event
      (MERIT's and cdrec's SASRec), which in the domain streams makes a slot's position depend on
      how many events of its domain follow it in the training window.
    * ``loss_window``: the next-item losses use the last this many slots (authors: 10); 0 = all
      (``max_len``). Each loss is divided by batch x window slots (the authors' masked mean).
    """

    n_heads: int = bounded(1, 1)
    dropout: float = bounded(0.2, 0, 1, hi_open=True)
    warmup_epochs: int = bounded(0, 0)
    gnn_layers: int = bounded(1, 0)
    gnn_weight: bool = False
    graph: str = "directed"
    rec_weight: float = bounded(0.7, 0, 1)
    loss_window: int = bounded(10, 0)
    positions: str = "forward"


def training_transitions(split) -> tuple[np.ndarray, np.ndarray]:
    """``[2, E]`` edges (global item indices, one per transition, repeated ones repeated) of the
    cross-domain graph (each training event -> the user's next training event) and of the
    single-domain graph (-> the user's next training event of the same domain). Only
    ``split.train_rows`` are read, so no validation or test event enters a graph."""
    _, items, _, nxt, nxt_dom = next_events(split.data, split.train_rows)
    mixed = np.stack([items[nxt > 0], nxt[nxt > 0]]) - 1
    single = np.stack([items[nxt_dom > 0], nxt_dom[nxt_dom > 0]]) - 1
    return mixed, single


def transition_graph(edges: np.ndarray, n_items: int, *, directed: bool) -> torch.Tensor:
    """Row-normalized ``[n_items + 1, n_items + 1]`` sparse adjacency over +1 shifted ids (row 0,
    padding, empty) from ``edges [2, E]`` of global item indices (duplicates add up)."""
    src, dst = np.asarray(edges, dtype=np.int64) + 1
    if not directed:
        src, dst = np.r_[src, dst], np.r_[dst, src]
    n = n_items + 1
    deg = np.bincount(src, minlength=n).astype(np.float64)
    values = 1.0 / deg[src]
    adj = torch.sparse_coo_tensor(torch.as_tensor(np.stack([src, dst])), torch.as_tensor(values, dtype=torch.float32), (n, n), check_invariants=True)
    return adj.coalesce()


@register("c2dsr", family="sequential", params=C2DSRParams, min_domains=2, max_domains=2,
          needs="the mixed sequence and one single-domain stream per domain, contrasted with each other")
class C2DSR(SequentialModel):
    """Graph-enhanced M / A / B encoders, next-item losses and the cross-domain infomax."""

    def __init__(self, n_items: int, item_offsets: np.ndarray, params: C2DSRParams) -> None:
        registry.get("c2dsr").require_domains(len(item_offsets) - 1)
        require_choice(params, "graph", GRAPHS)
        require_choice(params, "positions", POSITIONS)
        require(params.dim % params.n_heads == 0, f"model_params.dim ({params.dim}) must be divisible by n_heads ({params.n_heads})")
        super().__init__(n_items, item_offsets, params)
        d, k = params.dim, params.gnn_layers
        # (1)-(2): one item table + causal encoder per stream, one GNN (bias per layer, optional weight)
        self.encoders = nn.ModuleDict({s: SequenceEncoder(n_items + 1, params, causal=True) for s in STREAMS})
        bound = 1.0 / math.sqrt(d)  # the authors' GraphConvolution init
        self.gnn_bias = nn.ParameterDict({s: nn.Parameter(torch.empty(k, d).uniform_(-bound, bound)) for s in STREAMS})
        self.gnn_weight = nn.ParameterDict(
            {s: nn.Parameter(torch.empty(k, d, d).uniform_(-bound, bound)) for s in STREAMS} if params.gnn_weight else {}
        )
        self.gnn_drop = nn.Dropout(params.dropout)
        # (3): item scores W_i . h + b_i; (4): one bilinear discriminator per domain
        self.out = nn.Linear(d, n_items + 1)
        self.discriminators = nn.ModuleList(nn.Bilinear(d, d, 1) for _ in range(2))
        for disc in self.discriminators:
            nn.init.xavier_uniform_(disc.weight)
            nn.init.zeros_(disc.bias)
        self.register_buffer("graph_mixed", None, persistent=False)
        self.register_buffer("graph_single", None, persistent=False)

    # ------------------------------------------------------------------ (1)-(2) graphs and encoders
    def attach_training(self, split) -> None:
        self.set_graphs(*training_transitions(split))

    def set_graphs(self, mixed: np.ndarray, single: np.ndarray) -> None:
        """The cross-domain and single-domain graphs from ``[2, E]`` edge lists (not saved with the
        weights: rebuilt from the split, which is fixed by the seed)."""
        directed = self.params.graph == "directed"
        device = self.offsets.device
        self.register_buffer("graph_mixed", transition_graph(mixed, self.n_items, directed=directed).to(device), persistent=False)
        self.register_buffer("graph_single", transition_graph(single, self.n_items, directed=directed).to(device), persistent=False)

    def graph_items(self) -> dict[str, torch.Tensor]:
        """Per stream ``[n_items + 1, d]``: mean of the item table and its ``gnn_layers``
        propagations over the stream's graph (M: cross-domain, A/B: single-domain)."""
        require(self.graph_mixed is not None, "c2dsr: no item graphs; build the model through the sequential task (attach_training)")
        out = {}
        for s in STREAMS:
            graph = self.graph_mixed if s == "M" else self.graph_single
            h = self.encoders[s].item_emb.weight
            layers = [h]
            for layer in range(self.params.gnn_layers):
                h = torch.sparse.mm(graph, self.gnn_drop(h))
                if self.params.gnn_weight:
                    h = h @ self.gnn_weight[s][layer]
                h = h + self.gnn_bias[s][layer]
                layers.append(h)
            out[s] = torch.stack(layers).mean(0)
        return out

    def encode(self, stream: str, items: torch.Tensor, graph_vectors: dict[str, torch.Tensor]) -> torch.Tensor:
        """``H_stream [B, L, d]`` of the stream's ``items`` (+1 shifted, 0 = empty slot)."""
        enc = self.encoders[stream]
        e = (graph_vectors[stream][items] + enc.item_emb(items)) * math.sqrt(self.params.dim)
        valid = items > 0
        return enc.encode(e, valid, forward_positions(valid) if self.params.positions == "forward" else reversed_positions(valid))

    @staticmethod
    def stream_items(stream: str, items: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        return items if stream == "M" else torch.where(domains == STREAMS.index(stream) - 1, items, torch.zeros_like(items))

    def forward(self, items: torch.Tensor, domains: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"M": H_M, "A": H_A, "B": H_B}`` (``[B, L, d]``, zero at empty slots)."""
        g = self.graph_items()
        return {s: self.encode(s, self.stream_items(s, items, domains), g) for s in STREAMS}

    # ------------------------------------------------------------------ (3)-(5) training
    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        terms = self.loss_terms(batch)
        lam = self.params.rec_weight
        return lam * terms["rec"] + (1 - lam) * terms["infomax"]

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"rec": L_M^A + L_M^B + L_A + L_B, "infomax": L_cl^A + L_cl^B}``."""
        items, domains = batch["items"], batch["domains"]
        g = self.graph_items()
        h = {s: self.encode(s, self.stream_items(s, items, domains), g) for s in STREAMS}
        return {"rec": self.next_item_losses(h, batch), "infomax": self.infomax_loss(h, items, domains, batch["domain_targets"], g)}

    def next_item_losses(self, h: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(3): ``H_M`` predicts the next mixed event in its domain (L_M^A, L_M^B); ``H_M + H_X`` at
        X's slots the next X event (L_A, L_B); softmax over the domain's items, last
        ``loss_window`` slots, each loss averaged over all slots of that window."""
        w = self.params.loss_window or self.params.max_len
        domains, targets, dom_targets = (batch[k][:, -w:] for k in ("domains", "targets", "domain_targets"))
        h_m = h["M"][:, -w:]
        tdom = self.item_domain(targets)
        slots = len(h_m) * w  # left padding (windows shorter than w) changes nothing
        total = h_m.new_zeros(())
        for d, s in enumerate("AB"):
            total = total + self.domain_cross_entropy(h_m, targets, tdom == d, d) / slots
            total = total + self.domain_cross_entropy(h_m + h[s][:, -w:], dom_targets, (domains == d) & (dom_targets > 0), d) / slots
        return total

    def domain_cross_entropy(self, h: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, domain: int) -> torch.Tensor:
        """Summed cross-entropy over domain ``domain``'s items at the ``weight``ed slots."""
        lo, hi = self.item_ranges[domain]
        logits = F.linear(h[weight], self.out.weight[lo + 1 : hi + 1], self.out.bias[lo + 1 : hi + 1])
        return F.cross_entropy(logits, targets[weight] - 1 - lo, reduction="sum")

    def infomax_loss(
        self, h: dict[str, torch.Tensor], items: torch.Tensor, domains: torch.Tensor, dom_targets: torch.Tensor, g: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """(4): for X in (A, B), ``D_X(r_X, c_X)`` against ``D_X(r_X, c~_X)``, where ``r_X`` pools
        ``H_X`` over X's slots, ``c_X`` pools ``H_M`` over the other domain's slots, and ``c~_X``
        the same on the mixed sequence whose X events are replaced by random X items. Slots are
        those with a next event of their domain (the authors' masks); sequences without slots of
        both domains are left out."""
        total = h["M"].new_zeros(())
        for d, s in enumerate("AB"):
            own = (domains == d) & (dom_targets > 0)
            other = (domains == 1 - d) & (dom_targets > 0)
            keep = own.any(1) & other.any(1)
            if not bool(keep.any()):
                continue
            lo, hi = self.item_ranges[d]
            corrupted = items.clone()
            replaced = domains == d
            corrupted[replaced] = torch.randint(lo + 1, hi + 1, (int(replaced.sum()),), device=items.device)
            r = masked_mean(h[s], own)[keep]
            real = masked_mean(h["M"], other)[keep]
            fake = masked_mean(self.encode("M", corrupted, g), other)[keep]
            disc = self.discriminators[d]
            pos, neg = disc(real, r).squeeze(-1), disc(fake, r).squeeze(-1)
            total = total + F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))
        return total

    # ------------------------------------------------------------------ evaluation
    def final_for_target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``H_M`` at the latest slot plus ``H_X`` at the latest slot of the target's domain X."""
        items, domains = batch["items"], batch["domains"]
        h = self.forward(items, domains)
        out = h["M"][:, -1]
        for d, s in enumerate("AB"):
            idx, has = last_valid_index(domains == d)
            out = out + gather_positions(h[s], idx) * (has & (batch["target_domain"] == d))[:, None]
        return out

    def score(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.final_for_target(batch)
        cands = batch["candidates"]
        return torch.einsum("nd,ncd->nc", h, self.out.weight[cands]) + self.out.bias[cands]


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``h [B, L, d]`` over each row's ``mask``ed slots (zero for a row without any)."""
    m = mask.to(h.dtype)[..., None]
    return (h * m).sum(1) / m.sum(1).clamp(min=1)
