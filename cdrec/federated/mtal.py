"""Multi-Target Assisted Learning rounds (Algorithm 1): the learning stage driven over a transport.

:func:`run_mtal` only moves messages between organizations and calls their phase methods; it never
reads an organization's data. Every round ``t``: residuals -> fit -> predictions -> update. After the
rounds each organization keeps the round that is best on *its own validation* entries.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from cdrec.federated.alignment import Federation
from cdrec.federated.organization import MTALConfig, Organization
from cdrec.federated.transport import InProcessTransport, Transport


@dataclass
class MTALRun:
    orgs: list[Organization]
    transport: Transport
    seconds: float
    curves: list[dict] = field(default_factory=list)


def build_organizations(fed: Federation, cfg: MTALConfig) -> list[Organization]:
    """One :class:`Organization` per holding; the overarching loss follows the federation's feedback."""
    cfg = dataclasses.replace(cfg, feedback=fed.feedback)
    names = [o.name for o in fed.orgs]
    return [Organization(h, names, cfg) for h in fed.orgs]


def _exchange(transport: Transport, orgs: list[Organization], outgoing: list) -> dict[str, list]:
    for m in outgoing:
        transport.send(m)
    return {o.name: transport.receive(o.name) for o in orgs}


def run_mtal(
    fed: Federation,
    cfg: MTALConfig,
    *,
    transport: Transport | None = None,
    progress: bool = False,
    on_round=None,
) -> MTALRun:
    """Alignment, base model, then ``cfg.rounds`` assistance rounds; returns the organizations."""
    transport = transport or InProcessTransport()
    orgs = build_organizations(fed, cfg)
    t0 = time.perf_counter()
    inbox = _exchange(transport, orgs, [m for o in orgs for m in o.announce()])
    for o in orgs:
        o.on_alignment(inbox[o.name])
    inbox = _exchange(transport, orgs, [m for o in orgs for m in o.start()])
    for o in orgs:
        o.on_queries(inbox[o.name])
    for t in tqdm(range(1, cfg.rounds + 1), desc="MTAL rounds", disable=not progress):
        inbox = _exchange(transport, orgs, [m for o in orgs for m in o.residuals(t)])
        for o in orgs:
            o.fit(t, inbox[o.name])
        inbox = _exchange(transport, orgs, [m for o in orgs for m in o.predictions(t)])
        for o in orgs:
            o.update(t, inbox[o.name])
        if on_round is not None:
            on_round(t, orgs)
    return MTALRun(orgs, transport, time.perf_counter() - t0)


def replay(orgs: list[Organization], transport: Transport, keys: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Prediction stage: each organization queries peers for all rounds' outputs at ``keys[name]``
    and aggregates them with its stored ``w_{1:T}``, ``eta_{1:T}`` (peers need ``keep_models``)."""
    inbox = _exchange(transport, orgs, [m for o in orgs for m in o.replay_queries(*keys[o.name])])
    answers = _exchange(transport, orgs, [m for o in orgs for m in o.answer_replay(inbox[o.name])])
    out = {}
    for o in orgs:
        from cdrec.federated.messages import QueryMessage

        own = o.answer_replay([QueryMessage(o.name, o.name, *keys[o.name])])
        out[o.name] = o.replay_predict(answers[o.name], own)
    return out
