"""The ServerApp: drives Algorithm 1's steps over Flower and routes MTAL messages between organizations.

It runs :func:`cdrec.federated.mtal.drive` — the same driver as the in-process simulation — with a
:class:`FlowerCohort` whose ``step`` sends every live organization one Flower message (the MTAL
messages delivered to it + the step to run) and collects their replies (the MTAL messages they send),
and an :class:`~cdrec.federated.transport.InProcessTransport` at the server that routes them. The
ServerApp never holds ratings, models or losses: it sees exactly the wire traffic (pseudo-residuals
and predictions keyed by aligned ids, alignment ids, query keys) and, at the end, each organization's
evaluation metrics.

Run config (``[tool.flwr.app.config]``, override with ``flwr run --run-config``):
``num-orgs`` (wait for this many SuperNodes), ``rounds``, ``connect-timeout`` / ``step-timeout``
(seconds; a SuperNode that does not answer a step in time, or that Flower reports unavailable, is a
failure), ``on-failure`` (``error``: stop with an error naming the organization; ``continue``: drop it
and go on with the others), ``audit-dir`` (write every Flower message's content there, ``""`` = off),
``result-path`` (JSON summary, ``""`` = off).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from logging import INFO, WARNING
from pathlib import Path
from typing import Mapping

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from cdrec.federated.flower import wire
from cdrec.federated.mtal import Step, drive
from cdrec.federated.transport import InProcessTransport
from cdrec.results.schema import atomic_path, atomic_write_text, strict_json

MESSAGE_TYPE = "query.mtal"
DOWN = ("offline", "unregistered")
app = ServerApp()


class OrganizationFailed(RuntimeError):
    """An organization (its SuperNode) failed or went silent during a step."""

    def __init__(self, failures: dict[str, str], what: str) -> None:
        self.failures = failures
        names = ", ".join(f"organization {n!r}: {r}" for n, r in failures.items())
        super().__init__(f"MTAL stopped at {what}: {names}")


@dataclass
class ServerSettings:
    num_orgs: int = 3
    rounds: int = 10
    connect_timeout: float = 120.0
    step_timeout: float = 600.0
    on_failure: str = "error"
    audit_dir: str = ""
    result_path: str = ""
    poll_s: float = 1.0
    status_s: float = 5.0

    @classmethod
    def from_run_config(cls, rc: Mapping[str, bool | float | int | str]) -> "ServerSettings":
        s = cls(num_orgs=int(rc.get("num-orgs", 3)), rounds=int(rc.get("rounds", 10)),
                connect_timeout=float(rc.get("connect-timeout", 120.0)), step_timeout=float(rc.get("step-timeout", 600.0)),
                on_failure=str(rc.get("on-failure", "error")), audit_dir=str(rc.get("audit-dir", "")),
                result_path=str(rc.get("result-path", "")))
        if s.on_failure not in ("error", "continue"):
            raise ValueError(f"run config on-failure: expected 'error' or 'continue', got {s.on_failure!r}")
        return s


class Recorder:
    """Captures every Flower message the ServerApp sends or receives (manifest + arrays) in ``audit_dir``."""

    def __init__(self, audit_dir: str) -> None:
        self.dir = Path(audit_dir) if audit_dir else None
        self.n = 0
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, direction: str, org: str, what: str, rd: RecordDict) -> None:
        if self.dir is None:
            return
        manifest, arrays = wire.audit(rd)
        stem = f"{self.n:05d}-{direction}"
        self.n += 1
        with atomic_path(self.dir / f"{stem}.npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        atomic_write_text(self.dir / f"{stem}.json", json.dumps({"direction": direction, "org": org, "what": what, **manifest}, default=str))

    def progress(self, what: str) -> None:
        if self.dir is not None:
            with open(self.dir / "progress.log", "a") as f:
                f.write(what + "\n")


class FlowerCohort:
    """Organizations as SuperNodes: one Flower round trip per step, all organizations in parallel."""

    def __init__(self, grid: Grid, nodes: dict[str, int], settings: ServerSettings, record: Recorder) -> None:
        self.grid = grid
        self.nodes = nodes
        self.roster = list(nodes)
        self.settings = settings
        self.record = record
        self.dropped: dict[str, str] = {}

    @property
    def names(self) -> list[str]:
        return [n for n in self.roster if n not in self.dropped]

    def call(self, contents: dict[str, RecordDict], what: str) -> dict[str, RecordDict]:
        names = list(contents)
        for n in names:
            self.record("send", n, what, contents[n])
        msgs = [Message(contents[n], dst_node_id=self.nodes[n], message_type=MESSAGE_TYPE) for n in names]
        ids = list(self.grid.push_messages(msgs))
        name_of = dict(zip(ids, names))
        pending = set(ids)
        replies: dict[str, RecordDict] = {}
        failures: dict[str, str] = {}
        deadline = time.monotonic() + self.settings.step_timeout
        next_status = time.monotonic() + self.settings.status_s
        while pending and time.monotonic() < deadline:
            for r in self.grid.pull_messages(list(pending)):
                mid = r.metadata.reply_to_message_id
                if mid not in pending:
                    continue
                pending.discard(mid)
                n = name_of[mid]
                if r.has_error():
                    failures[n] = f"error reply from its SuperNode (code {r.error.code}: {r.error.reason})"
                else:
                    replies[n] = r.content
                    self.record("recv", n, what, r.content)
            if pending and time.monotonic() > next_status:
                next_status = time.monotonic() + self.settings.status_s
                status = {int(x.node_id): str(x.status) for x in self.grid.get_nodes()}
                for mid in list(pending):
                    st = status.get(self.nodes[name_of[mid]], "unregistered")
                    if st not in ("online", ""):
                        pending.discard(mid)
                        failures[name_of[mid]] = f"its SuperNode (node {self.nodes[name_of[mid]]}) is {st}"
            if pending:
                time.sleep(self.settings.poll_s)
        for mid in pending:
            n = name_of[mid]
            failures[n] = f"its SuperNode (node {self.nodes[n]}) did not answer within {self.settings.step_timeout:g} s (killed or offline?)"
        if failures:
            if self.settings.on_failure == "error" or len(failures) == len(names):
                raise OrganizationFailed(failures, what)
            for n, reason in failures.items():
                self.dropped[n] = f"{what}: {reason}"
                log(WARNING, "[cdrec] dropping organization %r at %s: %s; continuing with %s", n, what, reason, self.names)
        return replies

    def step(self, step: Step, inbox: dict[str, list]) -> dict[str, list]:
        what = f"step {step.consume or '-'}({step.t_consume})+{step.produce or '-'}({step.t_produce})"
        contents = {n: wire.encode_messages(inbox.get(n, []), wire.step_control(step, self.roster)) for n in self.names}
        replies = self.call(contents, what)
        self.record.progress(what)
        log(INFO, "[cdrec] %s done (%s)", what, ", ".join(self.names))
        return {n: wire.decode_messages(rd) for n, rd in replies.items()}


def connect(grid: Grid, s: ServerSettings, record: Recorder) -> dict[str, int]:
    """Wait for ``num-orgs`` SuperNodes and ask each which organization it serves."""
    deadline = time.monotonic() + s.connect_timeout
    ids: list[int] = []
    while time.monotonic() < deadline:
        ids = sorted(int(n.node_id) for n in grid.get_nodes() if str(n.status) not in DOWN)
        if len(ids) >= s.num_orgs:
            break
        time.sleep(0.5)
    if len(ids) < s.num_orgs:
        raise RuntimeError(f"only {len(ids)} of {s.num_orgs} SuperNodes connected within {s.connect_timeout:g} s")
    hello = FlowerCohort(grid, {f"node {i}": i for i in ids}, ServerSettings(**{**s.__dict__, "on_failure": "error",
                                                                                 "step_timeout": s.connect_timeout}), record)
    replies = hello.call({f"node {i}": RecordDict({"control": ConfigRecord({"kind": "hello"})}) for i in ids}, "hello")
    nodes: dict[str, int] = {}
    for key, rd in replies.items():
        name = str(rd.config_records["control"]["org"])
        if name in nodes:
            raise RuntimeError(f"two SuperNodes serve organization {name!r} (nodes {nodes[name]} and {hello.nodes[key]})")
        nodes[name] = hello.nodes[key]
    return dict(sorted(nodes.items()))


def serve(grid: Grid, s: ServerSettings) -> dict:
    """Run MTAL over the grid; returns (and writes to ``result-path``) the summary."""
    record = Recorder(s.audit_dir)
    t0 = time.perf_counter()
    result: dict = {"status": "running", "rounds": s.rounds}
    cohort = None
    try:
        nodes = connect(grid, s, record)
        result["organizations"] = {n: {"node_id": i} for n, i in nodes.items()}
        log(INFO, "[cdrec] federation: %s", nodes)
        cohort = FlowerCohort(grid, nodes, s, record)
        transport = InProcessTransport()
        drive(cohort, transport, s.rounds)
        replies = cohort.call({n: RecordDict({"control": ConfigRecord({"kind": "report"})}) for n in cohort.names}, "report")
        for n, rd in replies.items():
            rep = rd.config_records["report"]
            result["organizations"][n]["report"] = {k: (list(v) if isinstance(v, list) else v) for k, v in rep.items()}
        result.update(status="ok", messages=transport.n_sent, values=transport.n_values, payload_bytes=dict(transport.payload_bytes))
    except OrganizationFailed as e:
        result.update(status="error", error=str(e), failed=sorted(e.failures))
        raise
    except Exception as e:  # noqa: BLE001 - recorded, then re-raised
        result.update(status="error", error=f"{type(e).__name__}: {e}")
        raise
    finally:
        result["dropped"] = dict(cohort.dropped) if cohort is not None else {}
        result["seconds"] = round(time.perf_counter() - t0, 3)
        if s.result_path:
            atomic_write_text(s.result_path, strict_json(result, default=str))
        log(INFO if result["status"] == "ok" else WARNING, "[cdrec] MTAL %s: %s", result["status"], result.get("error", ""))
    return result


@app.main()
def main(grid: Grid, context: Context) -> None:
    serve(grid, ServerSettings.from_run_config(context.run_config))
