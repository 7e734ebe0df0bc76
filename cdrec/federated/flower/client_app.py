"""The organization's side: a Flower ClientApp run by the organization's own SuperNode.

The SuperNode is started with ``--node-config 'data-path="/path/to/this/org"'``; the ClientApp
loads only that directory (:mod:`.orgdata`). Every Flower message from the ServerApp is one step of
Algorithm 1 (:func:`cdrec.federated.mtal.apply_step` — the same code the in-process simulation runs):
the organization consumes the MTAL messages delivered to it, runs its phases, and replies with the
MTAL messages it sends. Its state (data, local model, rounds' history, w and eta) lives in the
SuperNode's run context (``context.state``), which stays on the organization's machine — Flower
starts a fresh ClientApp process per message and hands it the context back. The state is pickled
there because it never leaves the organization; nothing on the wire is pickled (:mod:`.wire`).
"""

from __future__ import annotations

import os
import pickle
from typing import TYPE_CHECKING

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from cdrec.federated.flower import wire

if TYPE_CHECKING:
    from cdrec.federated.organization import Organization

STATE = "cdrec-mtal"
app = ClientApp()


def _data_path(context: Context) -> str:
    path = context.node_config.get("data-path")
    if not path:
        raise ValueError("this SuperNode has no data-path: start it with --node-config 'data-path=\"/path/to/org\"'")
    return str(path)


def _load(context: Context) -> Organization | None:
    rec = context.state.config_records.get(STATE)
    return None if rec is None else pickle.loads(rec["org"])  # noqa: S301 - written by this node only


def _save(context: Context, org: Organization) -> None:
    context.state.config_records[STATE] = ConfigRecord({"org": pickle.dumps(org, protocol=pickle.HIGHEST_PROTOCOL)})


def report(org: Organization) -> dict:
    """The organization's evaluation metrics per round (valid / test) and its best round on valid."""
    keys = ["RMSE"] if org.cfg.feedback == "explicit" else ["NDCG@10", "MAP@10"]
    out = {"name": org.name, "rounds": [int(h["round"]) for h in org.history], "best_round": int(org.best_round()),
           "metrics": keys, "n_valid": int(org.history[0]["valid"].get("n", 0)), "n_test": int(org.history[0]["test"].get("n", 0))}
    for part in ("valid", "test"):
        for k in keys:
            out[f"{part}.{k}"] = [float(h[part].get(k, float("nan"))) for h in org.history]
    return out


@app.query("mtal")
def handle(msg: Message, context: Context) -> Message:
    import torch

    torch.set_num_threads(int(os.environ.get("CDREC_TORCH_THREADS", "1")))
    from cdrec.federated.flower.orgdata import load_holdings, organization_from_dir
    from cdrec.federated.mtal import apply_step

    control = msg.content.config_records["control"]
    kind = str(control["kind"])
    if kind == "hello":
        h, _ = load_holdings(_data_path(context))
        return Message(RecordDict({"control": ConfigRecord({"org": h.name})}), reply_to=msg)
    org = _load(context)
    if kind == "report":
        if org is None:
            raise RuntimeError("a report was asked before this organization was set up (SuperNode restarted?)")
        return Message(RecordDict({"control": ConfigRecord({"org": org.name}), "report": ConfigRecord(report(org))}), reply_to=msg)
    step = wire.step_of(control)
    if org is None:
        if step.produce != "announce":
            raise RuntimeError(f"step {step} arrived before this organization was set up (SuperNode restarted?)")
        org = organization_from_dir(_data_path(context), [str(x) for x in control["roster"]])
    outgoing = apply_step(org, step, wire.decode_messages(msg.content))
    _save(context, org)
    return Message(wire.encode_messages(outgoing, {"org": org.name}), reply_to=msg)
