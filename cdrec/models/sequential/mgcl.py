"""MGCL (Xu, Pan, Ming: "A Multi-view Graph Contrastive Learning Framework for Cross-Domain Sequential
Recommendation", RecSys 2023, 491-501; MERIT's reference [48]): an ST-CDSR baseline of MERIT's
Table 2. "A multi-view framework that harnesses contrastive learning to integrate graphical and
sequential information across cross-domain and specific-domain views" (MERIT 5.2).

The paper's full text and code were not at hand (its abstract was): the model below follows the
abstract's two views; the concrete layers are our choices, named here, the open ones as options.

Scope: as CD-SASRec (:mod:`cdrec.models.sequential.cdsasrec`): one model per target domain D on
the mixed sequence, the loss on the positions whose next event lies in D, evaluated on D's rows;
exactly two domains.

* Cross-domain global graph (static collaborative information): C2DSR's item transition graph of
  the mixed sequences, built from the *training* events only
  (:func:`~cdrec.models.sequential.c2dsr.training_transitions`, no validation or test transition),
  row-normalized (``graph``: ``undirected`` by default, a collaborative graph; ``directed`` =
  C2DSR's). The graph item vector ``g_i`` is the mean of ``E, A E, .., A^K E`` (parameter-free
  propagation of the shared item table ``E``, ``gnn_layers`` = K, LightGCN-style: our choice).
* Specific-domain view (dynamic sequential information): the target SASRec over D's stream with
  inputs ``E``; ``s_i`` its output at the latest D event at or before mixed position i (zero
  before the first).
* Cross-domain view: a second causal SASRec over the whole mixed sequence with inputs ``g``;
  ``c_i`` its output at position i (zero before the first event).
* Prediction ``h_i = s_i + c_i``; an item's score is ``<h_i, e_item>`` and the recommendation loss
  is SASRec's (sampled InfoNCE with negatives from D, or ``loss: full``).
* Contrastive objectives (InfoNCE, cosine similarity over temperature ``cl_temperature``, in-batch
  negatives), weighted by ``cl_weight``:
  (a) intra-domain item representation view: ``e_i`` against ``g_i`` for the batch's distinct D
  target items (the paper contrasts a per-user sequence graph with the global graph; we take the
  item table trained through the sequences as the sequential side: our choice);
  (b) inter-domain user preference view: ``s`` against ``c`` at each row's latest position with a
  D target (rows with a D event there).
The two views are recomputed for (b) (twice the encoder work per step in training).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cdrec.config import bounded, require_choice
from cdrec.errors import require
from cdrec.models.registry import register
from cdrec.models.sequential.abxi import latest_at_or_before
from cdrec.models.sequential.base import gather_positions, last_valid_index
from cdrec.models.sequential.c2dsr import GRAPHS, training_transitions, transition_graph
from cdrec.models.sequential.cdsasrec import TargetDomainModel
from cdrec.models.sequential.sasrec import SASRecParams, SequenceEncoder


@dataclass
class MGCLParams(SASRecParams):
    """SASRec's sizes, loss and schedule, plus:

    * ``gnn_layers``: propagation steps K over the global graph (0 = ``g = E``);
    * ``graph``: ``undirected`` (default) or ``directed`` (C2DSR's) transition graph;
    * ``cl_weight``: weight of the two contrastive losses (0 = none);
    * ``cl_temperature``: their InfoNCE temperature.
    """

    gnn_layers: int = bounded(2, 0)
    graph: str = "undirected"
    cl_weight: float = bounded(0.1, 0)
    cl_temperature: float = bounded(0.2, 0, lo_open=True)


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean InfoNCE of row i of ``anchors`` against row i of ``positives`` (cosine / temperature,
    the other rows as negatives)."""
    logits = F.normalize(anchors, dim=-1) @ F.normalize(positives, dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(anchors), device=anchors.device))


@register("mgcl", family="sequential", params=MGCLParams, min_domains=2, max_domains=2,
          needs="a cross-domain item graph and view contrasted with the target domain's sequence")
class MGCL(TargetDomainModel):
    """Specific-domain sequence view + cross-domain global-graph view, fused and contrasted."""

    def __init__(self, n_items: int, item_offsets: np.ndarray, params: MGCLParams) -> None:
        require_choice(params, "graph", GRAPHS)
        super().__init__(n_items, item_offsets, params)
        # its inputs are the graph vectors of the shared table, so its own table holds padding only
        self.mixed_encoder = SequenceEncoder(1, params, causal=True)
        self.register_buffer("graph", None, persistent=False)

    def attach_training(self, split) -> None:
        self.set_graph(training_transitions(split)[0])

    def set_graph(self, edges: np.ndarray) -> None:
        """The global graph from ``[2, E]`` cross-domain transitions (global item indices; not saved
        with the weights: rebuilt from the split, which the seed fixes)."""
        adj = transition_graph(edges, self.n_items, directed=self.params.graph == "directed")
        self.register_buffer("graph", adj.to(self.offsets.device), persistent=False)

    def graph_items(self) -> torch.Tensor:
        """``g [n_items + 1, d]``: mean of the item table and its ``gnn_layers`` propagations."""
        require(self.graph is not None, "mgcl: no item graph; build the model through the sequential task (attach_training)")
        h = self.encoder.item_emb.weight
        layers = [h]
        for _ in range(self.params.gnn_layers):
            h = torch.sparse.mm(self.graph, h)
            layers.append(h)
        return torch.stack(layers).mean(0)

    def views(self, items: torch.Tensor, domains: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``s`` (specific-domain view, zero before the first ``target`` event), ``c`` (cross-domain
        view) at every mixed position (``[B, L, d]`` each) and whether a ``target`` event is seen."""
        s, has_own = self.target_stream(items, domains, target)
        valid = items > 0
        c = latest_at_or_before(self.mixed_encoder.encode(self.graph_items()[items], valid), valid)
        return s * has_own[..., None], c, has_own

    def represent(self, items: torch.Tensor, domains: torch.Tensor, target: int) -> torch.Tensor:
        """``h = s + c`` at every mixed position for predicting an item of domain ``target``."""
        s, c, _ = self.views(items, domains, target)
        return s + c

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """SASRec's loss + ``cl_weight`` (item-view + user-preference-view InfoNCE) per target domain."""
        total = super().loss(batch)
        if self.params.cl_weight == 0:
            return total
        items, domains, targets = batch["items"], batch["domains"], batch["targets"]
        tdom = self.item_domain(targets)
        tau = self.params.cl_temperature
        table, g = self.encoder.item_emb.weight, self.graph_items()
        for d in range(self.n_domains):
            mine = tdom == d
            if not bool(mine.any()):
                continue
            distinct = targets[mine].unique()
            cl = info_nce(table[distinct], g[distinct], tau)
            s, c, has_own = self.views(items, domains, d)
            idx, has = last_valid_index(mine)
            rows = has & has_own.gather(1, idx[:, None])[:, 0]
            if int(rows.sum()) > 1:
                cl = cl + info_nce(gather_positions(s, idx)[rows], gather_positions(c, idx)[rows], tau)
            total = total + self.params.cl_weight * cl
        return total


__all__ = ["MGCL", "MGCLParams", "info_nce"]
