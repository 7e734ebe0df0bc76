"""MTAL messages on the wire: :mod:`cdrec.federated.messages` <-> Flower ``RecordDict``.

A Flower message between the ServerApp and an organization carries

* ``control`` (ConfigRecord): what to do — ``kind`` (``hello`` / ``step`` / ``report``), the step's
  phases and rounds, the roster of organization names (server -> organization), or the sender's
  organization name (organization -> server);
* per MTAL message ``i``: ``msg.i`` (ConfigRecord: ``kind``, ``sender``, ``receiver``, ``round``,
  ``part``, and for alignment ``n_cols`` / for interval privacy ``low``, ``high``) and ``arr.i``
  (ArrayRecord: only ``rows``, ``cols``, ``values``, ``ids``, ``thresholds``, ``below`` — aligned ids,
  the sender's own column indices, and residual / prediction values);
* ``report`` (ConfigRecord, only in the reply to ``report``): the organization's own evaluation
  metrics per round (no ratings, predictions, losses or parameters).

:data:`ALLOWED` lists every record name and key this module can produce; the ServerApp's audit and
the end-to-end test check the captured traffic against it. Arrays are encoded with ``np.save`` (exact
dtype and values), so a message decodes to exactly what was sent.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from cdrec.federated.messages import AlignmentMessage, IntervalRelease, Message, PredictionMessage, QueryMessage, ResidualMessage
from cdrec.federated.mtal import Step

KINDS = {AlignmentMessage: "alignment", ResidualMessage: "residual", QueryMessage: "query", PredictionMessage: "prediction"}
ALLOWED = {
    "control": {"kind", "consume", "t_consume", "produce", "t_produce", "roster", "org"},
    "msg": {"kind", "sender", "receiver", "round", "part", "n_cols", "low", "high"},
    "arr": {"rows", "cols", "values", "ids", "thresholds", "below"},
    "report": {"name", "rounds", "best_round", "metrics", "valid", "test", "n_valid", "n_test"},
}


def encode_messages(messages: list[Message], control: dict) -> RecordDict:
    rd = RecordDict({"control": ConfigRecord(control)})
    for i, m in enumerate(messages):
        meta: dict = {"kind": KINDS[type(m)], "sender": m.sender, "receiver": m.receiver}
        arrays: dict[str, np.ndarray] = {}
        if isinstance(m, AlignmentMessage):
            meta["n_cols"] = int(m.n_cols)
            arrays["ids"] = m.ids
        else:
            arrays["rows"], arrays["cols"] = m.rows, m.cols
        if isinstance(m, (ResidualMessage, PredictionMessage)):
            meta["round"] = int(m.round)
        if isinstance(m, PredictionMessage):
            meta["part"] = m.part
            arrays["values"] = m.values
        if isinstance(m, ResidualMessage):
            if m.interval is not None:
                meta["low"], meta["high"] = float(m.interval.low), float(m.interval.high)
                arrays["thresholds"], arrays["below"] = m.interval.thresholds, m.interval.below
            else:
                arrays["values"] = np.asarray(m.values)
        rd[f"msg.{i}"] = ConfigRecord(meta)
        rd[f"arr.{i}"] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})
    return rd


def decode_messages(rd: RecordDict) -> list[Message]:
    out: list[Message] = []
    n = sum(1 for k in rd.config_records if k.startswith("msg."))
    for i in range(n):
        meta = rd.config_records[f"msg.{i}"]
        a = {k: v.numpy() for k, v in rd.array_records[f"arr.{i}"].items()}
        kind = meta["kind"]
        if kind == "alignment":
            out.append(AlignmentMessage(meta["sender"], meta["receiver"], a["ids"], int(meta["n_cols"])))
        elif kind == "query":
            out.append(QueryMessage(meta["sender"], meta["receiver"], a["rows"], a["cols"]))
        elif kind == "prediction":
            out.append(PredictionMessage(meta["sender"], meta["receiver"], int(meta["round"]), str(meta["part"]), a["rows"], a["cols"], a["values"]))
        elif kind == "residual":
            interval = IntervalRelease(float(meta["low"]), float(meta["high"]), a["thresholds"], a["below"]) if "thresholds" in a else None
            out.append(ResidualMessage(meta["sender"], meta["receiver"], int(meta["round"]), a["rows"], a["cols"],
                                       values=a.get("values"), interval=interval))
        else:
            raise ValueError(f"unknown MTAL message kind {kind!r}")
    return out


def step_control(step: Step, roster: list[str]) -> dict:
    return {"kind": "step", "consume": step.consume or "", "t_consume": step.t_consume, "produce": step.produce or "",
            "t_produce": step.t_produce, "roster": list(roster)}


def step_of(control: ConfigRecord) -> Step:
    return Step(str(control["consume"]) or None, int(control["t_consume"]), str(control["produce"]) or None, int(control["t_produce"]))


def audit(rd: RecordDict) -> tuple[dict, dict[str, np.ndarray]]:
    """Everything a Flower message's content holds, as a JSON-able manifest plus its arrays (for the
    ServerApp's capture of the traffic): every record, every key, every array."""
    manifest: dict = {"config": {}, "metric": {}, "array": {}}
    arrays: dict[str, np.ndarray] = {}
    for name, rec in rd.config_records.items():
        manifest["config"][name] = {k: (v if not isinstance(v, bytes) else f"<{len(v)} bytes>") for k, v in rec.items()}
    for name, rec in rd.metric_records.items():
        manifest["metric"][name] = dict(rec.items())
    for name, rec in rd.array_records.items():
        manifest["array"][name] = {}
        for k, v in rec.items():
            x = v.numpy()
            manifest["array"][name][k] = {"dtype": str(x.dtype), "shape": list(x.shape)}
            arrays[f"{name}/{k}"] = x
    return manifest, arrays
