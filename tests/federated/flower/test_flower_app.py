"""The ServerApp and ClientApp without processes: a fake Grid hands each Flower message to the
organization's ClientApp in this process (its own Context per node, state only via context.state)."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace
from uuid import uuid4

import numpy as np
import pytest

pytest.importorskip("flwr", reason="the Flower deployment needs the optional extra cdrec[flower] (flwr 1.41)")

from flwr.app import Context, RecordDict  # noqa: E402

from cdrec.data.splits import ratio_split  # noqa: E402
from cdrec.data.synthetic import SyntheticConfig, make_synthetic  # noqa: E402
from cdrec.federated.alignment import build_federation  # noqa: E402
from cdrec.federated.flower import wire  # noqa: E402
from cdrec.federated.flower.client_app import app as client_app  # noqa: E402
from cdrec.federated.flower.orgdata import load_holdings, write_federation  # noqa: E402
from cdrec.federated.flower.server_app import OrganizationFailed, ServerSettings, serve  # noqa: E402
from cdrec.federated.messages import IntervalRelease, ResidualMessage  # noqa: E402
from cdrec.federated.mtal import run_mtal  # noqa: E402
from cdrec.federated.organization import MTALConfig  # noqa: E402
from cdrec.models.assisted.aae import AAEParams  # noqa: E402


class FakeGrid:
    """Delivers each message to the destination node's ClientApp at once; ``kill_at`` = (node, n-th
    message) after which that node stops answering and reports offline."""

    def __init__(self, org_dirs: dict, kill_at: tuple[str, int] | None = None) -> None:
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1  # what a ServerApp process has set
        self.ids = {name: 1000 + i for i, name in enumerate(org_dirs)}
        self.ctx = {i: Context(run_id=1, node_id=i, node_config={"data-path": str(org_dirs[n])}, state=RecordDict(), run_config={})
                    for n, i in self.ids.items()}
        self.replies: dict[str, object] = {}
        self.count = {i: 0 for i in self.ids.values()}
        self.kill = None if kill_at is None else (self.ids[kill_at[0]], kill_at[1])
        self.dead: set[int] = set()

    def get_nodes(self):
        return [SimpleNamespace(node_id=i, status="offline" if i in self.dead else "online") for i in self.ids.values()]

    def get_node_ids(self):
        return [n.node_id for n in self.get_nodes()]

    def push_messages(self, messages):
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = str(uuid4())
            ids.append(msg.metadata.message_id)
            node = msg.metadata.dst_node_id
            self.count[node] += 1
            if self.kill is not None and node == self.kill[0] and self.count[node] >= self.kill[1]:
                self.dead.add(node)
            if node in self.dead:
                continue
            self.replies[msg.metadata.message_id] = client_app(message=msg, context=self.ctx[node])
        return ids

    def pull_messages(self, message_ids):
        return [self.replies.pop(m) for m in list(message_ids) if m in self.replies]


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    data = make_synthetic(SyntheticConfig(n_users=150, n_domains=3, items_per_domain=30, min_activity=6, max_activity=25, seed=5))
    split = ratio_split(data, [0.8, 0.1, 0.1], by_user=True, seed=0)
    fed = build_federation(data, split, align_ratio=0.8, seed=2)
    cfg = MTALConfig(rounds=2, eta=0.5, optimize_w=True, model=AAEParams(epochs=3, batch_size=40, dropout=0.1), seed=0)
    dirs = write_federation(fed, cfg, tmp_path_factory.mktemp("orgs"))
    return fed, cfg, dirs


def settings(tmp_path, **kw):
    base = dict(num_orgs=3, rounds=2, connect_timeout=5.0, step_timeout=5.0, audit_dir=str(tmp_path / "audit"),
                result_path=str(tmp_path / "result.json"), poll_s=0.01, status_s=0.05)
    base.update(kw)
    return ServerSettings(**base)


def test_org_directory_roundtrip(federation):
    fed, _, dirs = federation
    for h in fed.orgs:
        back, meta = load_holdings(dirs[h.name])
        assert meta["name"] == h.name and back.n_cols == h.n_cols
        for part in ("train", "valid", "test"):
            for f in ("rows", "cols", "y"):
                np.testing.assert_array_equal(getattr(getattr(back, part), f), getattr(getattr(h, part), f))


def test_wire_roundtrip_is_exact_including_interval_privacy():
    rng = np.random.default_rng(0)
    rel = IntervalRelease(-1.0, 2.0, rng.random((5, 3)), rng.random((5, 3)) < 0.5)
    msgs = [ResidualMessage("a", "b", 3, np.arange(5), np.arange(5) * 2, values=rng.normal(size=5)),
            ResidualMessage("a", "c", 3, np.arange(5), np.arange(5), interval=rel)]
    back = wire.decode_messages(wire.encode_messages(msgs, {"org": "a"}))
    np.testing.assert_array_equal(back[0].values, msgs[0].values)
    np.testing.assert_array_equal(back[1].decoded(), msgs[1].decoded())
    assert back[1].values is None and back[0].round == 3


def test_serverapp_matches_in_process_run(federation, tmp_path):
    fed, cfg, dirs = federation
    res = serve(FakeGrid(dirs), settings(tmp_path))
    assert res["status"] == "ok" and res["dropped"] == {}
    ref = {o.name: o for o in run_mtal(fed, cfg).orgs}
    for name, org in res["organizations"].items():
        rep = org["report"]
        np.testing.assert_allclose(rep["test.RMSE"], [h["test"]["RMSE"] for h in ref[name].history], rtol=0, atol=1e-9)
        assert rep["best_round"] == ref[name].best_round()


def _audited_array_bytes(audit_dir) -> int:
    """Bytes of the MTAL messages' arrays in the ServerApp's captured traffic (from the manifests)."""
    total = 0
    for manifest in audit_dir.glob("*.json"):
        for rec, arrays in json.loads(manifest.read_text())["array"].items():
            if rec.startswith("arr."):
                total += sum(int(np.prod(a["shape"])) * np.dtype(a["dtype"]).itemsize for a in arrays.values())
    return total


def test_query_decoys_cost_wire_bytes_but_change_no_metric(federation, tmp_path):
    fed, cfg, dirs = federation
    decoyed = write_federation(fed, dataclasses.replace(cfg, query_decoys=2), tmp_path / "orgs")
    plain = serve(FakeGrid(dirs), settings(tmp_path / "plain"))
    res = serve(FakeGrid(decoyed), settings(tmp_path / "decoys"))
    for name, org in res["organizations"].items():
        assert org["report"]["test.RMSE"] == plain["organizations"][name]["report"]["test.RMSE"]
    assert res["payload_bytes"]["query"] > 2.5 * plain["payload_bytes"]["query"]
    assert res["payload_bytes"]["residual"] == plain["payload_bytes"]["residual"]
    for run, where in ((plain, "plain"), (res, "decoys")):  # every message is captured once arriving, once leaving
        assert _audited_array_bytes(tmp_path / where / "audit") == 2 * sum(run["payload_bytes"].values())


def test_dead_organization_is_named_or_dropped(federation, tmp_path):
    _, _, dirs = federation
    victim = list(dirs)[2]
    with pytest.raises(OrganizationFailed, match=f"organization '{victim}'"):
        serve(FakeGrid(dirs, kill_at=(victim, 5)), settings(tmp_path / "err"))
    res = serve(FakeGrid(dirs, kill_at=(victim, 5)), settings(tmp_path / "cont", on_failure="continue"))
    assert res["status"] == "ok" and list(res["dropped"]) == [victim]
    assert "report" not in res["organizations"][victim]
    for name in list(dirs)[:2]:
        assert len(res["organizations"][name]["report"]["test.RMSE"]) == 3
