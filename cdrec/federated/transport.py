"""The message exchange between organizations.

A :class:`Transport` moves :mod:`~cdrec.federated.messages` objects between named organizations.
The in-process implementation copies every array on send (a receiver can never alias a sender's
memory), counts the bytes of the arrays each kind of message carries (:attr:`InProcessTransport.payload_bytes`,
the traffic a wire encoding carries beyond its per-array headers) and can record every message for
inspection (tests, audits). A networked transport (Flower,
issue 6) implements the same three methods: ``send(message)``, ``receive(name) -> list`` (drain the
inbox of organization ``name``) and ``pending() -> int``.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Protocol

import numpy as np

from cdrec.federated.messages import Message


class Transport(Protocol):
    def send(self, message: Message) -> None: ...

    def receive(self, name: str) -> list[Message]: ...

    def pending(self) -> int: ...


def _copy(message: Message) -> Message:
    changes = {}
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if isinstance(value, np.ndarray):
            changes[f.name] = value.copy()
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes[f.name] = _copy(value)
    return dataclasses.replace(message, **changes)


def array_bytes(message: Message) -> int:
    """Bytes of every array a message (or a dataclass inside it) holds."""
    total = 0
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if isinstance(value, np.ndarray):
            total += value.nbytes
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            total += array_bytes(value)
    return total


class InProcessTransport:
    """Inboxes in one process; ``record=True`` keeps a copy of every message in :attr:`log`;
    :attr:`payload_bytes` sums the array bytes sent per message kind (``query``, ``prediction.query``, ...)."""

    def __init__(self, *, record: bool = False) -> None:
        self._inbox: dict[str, list[Message]] = defaultdict(list)
        self.record = record
        self.log: list[Message] = []
        self.n_sent = 0
        self.n_values = 0
        self.payload_bytes: dict[str, int] = defaultdict(int)

    def send(self, message: Message) -> None:
        msg = _copy(message)
        self._inbox[msg.receiver].append(msg)
        self.n_sent += 1
        rows = getattr(msg, "rows", None)
        self.n_values += 0 if rows is None else len(rows)
        kind = type(msg).__name__.removesuffix("Message").lower()
        part = getattr(msg, "part", None)
        self.payload_bytes[kind if part is None else f"{kind}.{part}"] += array_bytes(msg)
        if self.record:
            self.log.append(msg)

    def receive(self, name: str) -> list[Message]:
        return self._inbox.pop(name, [])

    def pending(self) -> int:
        return sum(len(v) for v in self._inbox.values())
