"""MTAL deployed on Flower (``pip install 'cdrec[flower]'``): each organization a SuperNode.

* :mod:`.orgdata` — an organization's own data directory (no Flower needed);
* :mod:`.wire` — MTAL messages <-> Flower records, and the audit of what crossed the wire;
* :mod:`.client_app` — the organization (ClientApp): runs Algorithm 1's steps on its own data;
* :mod:`.server_app` — the ServerApp: drives the steps and routes the messages;
* :mod:`.launch` — a local federation (SuperLink + K SuperNodes) for ``cdrec federated up`` and tests.

The round logic is :mod:`cdrec.federated.mtal` (``schedule`` / ``apply_step`` / ``drive``), shared
with the in-process simulation.
"""

from __future__ import annotations

from cdrec.errors import CdrecError


def require_flower() -> None:
    try:
        import flwr  # noqa: F401
    except ImportError as e:
        raise CdrecError("the Flower deployment needs the optional extra: pip install 'cdrec[flower]' (flwr 1.41)") from e
