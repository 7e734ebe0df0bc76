"""Multi-Target Assisted Learning rounds (Algorithm 1): the learning stage driven over a transport.

:func:`run_mtal` only moves messages between organizations and calls their phase methods; it never
reads an organization's data. Every round ``t``: residuals -> fit -> predictions -> update. After the
rounds each organization keeps the round that is best on *its own validation* entries.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from cdrec.federated.alignment import Federation
from cdrec.federated.organization import MTALConfig, Organization
from cdrec.federated.transport import InProcessTransport, Transport
from cdrec.train.progress import StepProgress

if TYPE_CHECKING:
    from cdrec.federated.flower.server_app import FlowerCohort


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


@dataclass(frozen=True)
class Step:
    """One step of Algorithm 1's schedule, the same for every organization: consume the delivered
    messages with phase ``consume`` (round ``t_consume``), then produce messages with phase
    ``produce`` (round ``t_produce``). A remote organization runs one step per network round trip."""

    consume: str | None
    t_consume: int
    produce: str | None
    t_produce: int


def schedule(rounds: int) -> list[Step]:
    """announce | on_alignment+start | on_queries+residuals(1) | fit(t)+predictions(t) |
    update(t)+residuals(t+1) ... | update(T)."""
    steps = [Step(None, 0, "announce", 0), Step("on_alignment", 0, "start", 0), Step("on_queries", 0, "residuals", 1)]
    for t in range(1, rounds + 1):
        steps.append(Step("fit", t, "predictions", t))
        steps.append(Step("update", t, "residuals", t + 1) if t < rounds else Step("update", t, None, t))
    return steps


def apply_step(org: Organization, step: Step, inbox: list) -> list:
    """Run ``step`` on one organization: the only place that calls an organization's phases."""
    if step.consume in ("on_alignment", "on_queries"):
        getattr(org, step.consume)(inbox)
    elif step.consume in ("fit", "update"):
        getattr(org, step.consume)(step.t_consume, inbox)
    if step.produce in ("announce", "start"):
        return list(getattr(org, step.produce)())
    if step.produce in ("residuals", "predictions"):
        return list(getattr(org, step.produce)(step.t_produce))
    return []


class LocalCohort:
    """Organizations as objects in this process (the simulation)."""

    def __init__(self, orgs: list[Organization]) -> None:
        self.orgs = orgs

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.orgs]

    def step(self, step: Step, inbox: dict[str, list]) -> dict[str, list]:
        # pop: an organization's delivered messages are freed as soon as it has consumed them
        return {o.name: apply_step(o, step, inbox.pop(o.name, [])) for o in self.orgs}


def drive(cohort: LocalCohort | FlowerCohort, transport: Transport, rounds: int, *, progress: bool = False,
          on_round: Callable[[int], None] | None = None) -> None:
    """Algorithm 1's learning stage over any cohort (``.names``, ``.step(step, inbox) -> outgoing``):
    every step, all organizations run it on their delivered messages, and what they send crosses
    ``transport``. ``cohort.names`` may shrink between steps (an organization dropped out)."""
    inbox: dict[str, list] = {}
    rounds_done = StepProgress(rounds, "MTAL round", enabled=progress)
    for step in schedule(rounds):
        outgoing = cohort.step(step, inbox)
        for name in cohort.names:
            for m in outgoing.pop(name, []):
                transport.send(m)
        del outgoing
        inbox = {name: transport.receive(name) for name in cohort.names}
        if step.consume == "update":
            rounds_done.step()
            if on_round is not None:
                on_round(step.t_consume)
    rounds_done.close()


def run_mtal(
    fed: Federation,
    cfg: MTALConfig,
    *,
    transport: Transport | None = None,
    progress: bool = False,
    on_round: Callable[[int, list[Organization]], None] | None = None,
) -> MTALRun:
    """Alignment, base model, then ``cfg.rounds`` assistance rounds; returns the organizations."""
    transport = transport or InProcessTransport()
    orgs = build_organizations(fed, cfg)
    t0 = time.perf_counter()
    drive(LocalCohort(orgs), transport, cfg.rounds, progress=progress,
          on_round=None if on_round is None else (lambda t: on_round(t, orgs)))
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
