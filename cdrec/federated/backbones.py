"""The local models an MTAL organization may fit each round (``setting.backbone``), and the record of its choice.

MTAL is backbone-agnostic (paper 001 Section 3, paper 002 Section 6): any local model that fits the pseudo-residuals
over the ``n`` columns can assist. Besides the papers' AAE, an organization may fit the pair models of the Alone
baselines (MF, NCF, MLP) on the (row, column) keys of its pseudo-targets, or choose among all four on its own
validation entries (``auto``; :func:`cdrec.federated.baselines.choose_backbone`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cdrec.models.assisted.mf import MF, MFParams
from cdrec.models.assisted.mlp import MLP, MLPParams
from cdrec.models.assisted.ncf import NCF, NCFParams

PAIR_MODELS = {"mf": (MF, MFParams), "mlp": (MLP, MLPParams), "ncf": (NCF, NCFParams)}
LOCAL_BACKBONES = ("mf", "ncf", "mlp", "aae")
"""The local models an organization may assist with, in the order that breaks ties of ``auto``."""
BACKBONE_SETTINGS = ("aae", "auto", "mf", "ncf", "mlp")
"""The values of ``setting.backbone`` / ``MTALConfig.backbone``."""


@dataclass
class BackboneChoice:
    """An organization's local model: the chosen one, and per candidate its validation metric (RMSE explicit,
    NDCG@10 implicit) and the epochs of its best validation state (the epochs of its round fits)."""

    chosen: str
    valid: dict[str, float] = field(default_factory=dict)
    epochs: dict[str, int] = field(default_factory=dict)

    def record(self) -> dict:
        """What ``results.json`` keeps of it (``data_stats.backbones``)."""
        return {"chosen": self.chosen, "valid": dict(self.valid), "epochs": dict(self.epochs)}
