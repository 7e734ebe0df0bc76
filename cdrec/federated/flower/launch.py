"""Start a local Flower federation for MTAL: one SuperLink and one SuperNode per organization.

Used by ``cdrec federated up`` and the end-to-end test. Every process is started in its own process
group (``start_new_session``) so that it and the children Flower spawns (``flower-superexec``,
``flwr-serverapp``, ``flwr-clientapp``) are ended together; every wait has a timeout.

Security modes:

* ``insecure=True`` — plain HTTP, **for 127.0.0.1 only** (refused for any other host): no
  encryption, no authentication of SuperNodes.
* TLS (default) — a throw-away CA and a server certificate for the SuperLink's host are generated
  under ``work/certs`` (or pass your own ``certs``: ``ca.crt``, ``server.pem``, ``server.key``);
  SuperNodes and ``flwr`` verify the SuperLink against the CA.
* ``node_auth=True`` (needs TLS) — the SuperLink runs with ``--enable-supernode-auth``; one key pair
  per organization is generated, each public key is registered with ``flwr supernode register``, and
  each SuperNode signs in with its private key (``--auth-supernode-private-key``).

Environment for every process: ``FLWR_TELEMETRY_ENABLED=0``, ``FLWR_HOME`` under ``work`` (never the
user's ``~/.flwr``), the interpreter's ``bin/`` first on ``PATH`` (Flower spawns ``flower-superexec``
by name), ``OMP_NUM_THREADS=1``; the SuperLink runs with ``--disable-runtime-dependency-installation``
(the SuperNodes' default) — the app's code is the installed ``cdrec``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cdrec
from cdrec.errors import CdrecError, require

APP_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "cdrec-mtal"
version = "1.0.0"
description = "MTAL (assisted learning across organizations) on Flower; the code is the installed cdrec[flower]"
license = "MIT"
dependencies = ["cdrec[flower]"]

[tool.flwr.app]
publisher = "cdrec"

[tool.flwr.app.components]
serverapp = "cdrec.federated.flower.server_app:app"
clientapp = "cdrec.federated.flower.client_app:app"

[tool.flwr.app.config]
{config}
"""

DEFAULT_RUN_CONFIG = {"num-orgs": 3, "rounds": 10, "connect-timeout": 120.0, "step-timeout": 600.0,
                      "on-failure": "error", "audit-dir": "", "result-path": ""}


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def write_app(out: Path, run_config: dict | None = None) -> Path:
    """The Flower App directory for ``flwr run`` (a pyproject naming cdrec's ServerApp / ClientApp)."""
    cfg = {**DEFAULT_RUN_CONFIG, **(run_config or {})}
    out.mkdir(parents=True, exist_ok=True)
    (out / "pyproject.toml").write_text(APP_PYPROJECT.format(config="\n".join(f"{k} = {toml_value(v)}" for k, v in cfg.items())))
    (out / "README.md").write_text("cdrec MTAL Flower App: `flwr run . <superlink-connection>`; see cdrec's README.\n")
    return out


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def write_certs(out: Path, host: str) -> dict[str, Path]:
    """A throw-away CA and a server certificate for ``host`` (SAN: the IP or DNS name)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cdrec federation CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=30)).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP384R1())
    try:
        san = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30)).add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": out / "ca.crt", "cert": out / "server.pem", "key": out / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    paths["key"].chmod(0o600)
    return paths


def write_node_keys(out: Path, name: str) -> tuple[Path, Path]:
    """An ECDSA key pair for SuperNode authentication (OpenSSH format, as ``ssh-keygen -t ecdsa -b 384``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    priv, pub = out / name, out / f"{name}.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    priv.chmod(0o600)
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))
    return priv, pub


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    killed: bool = False


@dataclass
class LocalFederation:
    """SuperLink + one SuperNode per organization directory, all on ``host`` (loopback by default)."""

    org_dirs: dict[str, Path]
    work: Path
    host: str = "127.0.0.1"
    insecure: bool = False
    node_auth: bool = False
    certs: dict[str, Path] | None = None
    bin_dir: Path = field(default_factory=lambda: Path(sys.executable).parent)
    procs: list[Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.work = Path(self.work).resolve()
        if self.insecure:
            require(self.host in ("127.0.0.1", "localhost", "::1"),
                    f"--insecure is for loopback only (plain HTTP, no node authentication); got host {self.host!r}: use TLS")
            require(not self.node_auth, "node authentication needs TLS (drop --insecure)")
        require(shutil_which("flower-superlink", self.bin_dir) is not None,
                f"flower-superlink not found next to {sys.executable}: install cdrec[flower] (pip install -e '.[flower]')")
        self.home = self.work / "flwr-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port(self.host)
        self.address = f"{self.host}:{self.port}"

    # ------------------------------------------------------------------ environment
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        root = str(Path(cdrec.__file__).resolve().parent.parent)
        env.update(FLWR_TELEMETRY_ENABLED="0", FLWR_HOME=str(self.home), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   PATH=f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}",
                   PYTHONPATH=os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])]))
        return env

    def _start(self, name: str, args: list[str]) -> Proc:
        log = self.work / f"{name}.log"
        with open(log, "ab") as fh:
            p = subprocess.Popen([str(self.bin_dir / args[0]), *args[1:]], stdout=fh, stderr=subprocess.STDOUT, env=self.env(),
                                 cwd=self.work, start_new_session=True)
        proc = Proc(name, p, log)
        self.procs.append(proc)
        return proc

    def _tls_args(self) -> list[str]:
        return ["--insecure"] if self.insecure else ["--root-certificates", str(self.certs["ca"])]

    def write_connection(self) -> str:
        """The ``flwr`` connection ``cdrec-local`` in ``FLWR_HOME/config.toml``."""
        lines = ['[superlink]', 'default = "cdrec-local"', '', '[superlink.cdrec-local]', f'address = "{self.address}"']
        lines += ["insecure = true"] if self.insecure else [f'root-certificates = "{self.certs["ca"]}"']
        (self.home / "config.toml").write_text("\n".join(lines) + "\n")
        return "cdrec-local"

    # ------------------------------------------------------------------ lifecycle
    def start(self, wait_s: float = 60.0) -> None:
        if not self.insecure and self.certs is None:
            self.certs = write_certs(self.work / "certs", self.host)
        self.connection = self.write_connection()
        args = ["flower-superlink", "--host", self.host, "--port", str(self.port), "--disable-runtime-dependency-installation"]
        args += ["--insecure"] if self.insecure else ["--ssl-ca-certfile", str(self.certs["ca"]), "--ssl-certfile", str(self.certs["cert"]),
                                                      "--ssl-keyfile", str(self.certs["key"])]
        if self.node_auth:
            args.append("--enable-supernode-auth")
        self._start("superlink", args)
        self._wait_port(wait_s)
        self.node_procs: dict[str, Proc] = {}
        for name, path in self.org_dirs.items():
            nargs = ["flower-supernode", *self._tls_args(), "--superlink", self.address, "--port", str(free_port()),
                     "--node-config", f'data-path="{Path(path).resolve()}"']
            if self.node_auth:
                priv, pub = write_node_keys(self.work / "node-keys", safe(name))
                reg = self.flwr(["supernode", "register", str(pub), self.connection, "--name", safe(name)], timeout=wait_s)
                if reg.returncode != 0:
                    raise CdrecError(f"flwr supernode register failed for {name!r}: {reg.stdout[-800:]} {reg.stderr[-800:]}")
                nargs += ["--auth-supernode-private-key", str(priv)]
            self.node_procs[name] = self._start(f"supernode-{safe(name)}", nargs)

    def _wait_port(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    return
            except OSError:
                time.sleep(0.5)
        raise CdrecError(f"the SuperLink did not listen on {self.address} within {wait_s:g} s (log: {self.work / 'superlink.log'})")

    def check_alive(self) -> None:
        for p in self.procs:
            if p.popen.poll() is not None and not p.killed:
                tail = p.log.read_text(errors="replace")[-2000:] if p.log.exists() else ""
                raise CdrecError(f"{p.name} exited with code {p.popen.returncode}; last log lines:\n{tail}")

    def flwr(self, args: list[str], *, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin_dir / "flwr"), *args], env=self.env(), cwd=self.work, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def submit(self, app_dir: Path, run_config: dict | None = None, *, timeout: float = 120.0) -> str:
        """``flwr run APP cdrec-local``: returns the run id at once (the ServerApp runs beside the SuperLink)."""
        args = ["run", str(app_dir), self.connection, "--format", "json"]
        if run_config:
            args += ["--run-config", " ".join(f"{k}={toml_value(v)}" for k, v in run_config.items())]
        res = self.flwr(args, timeout=timeout)
        if res.returncode != 0:
            raise CdrecError(f"flwr run failed ({res.returncode}): {res.stdout[-1500:]} {res.stderr[-1500:]}")
        try:
            return str(json.loads(res.stdout[res.stdout.index("{"):])["run-id"])
        except (ValueError, KeyError) as e:
            raise CdrecError(f"flwr run: unexpected output {res.stdout[-500:]!r}") from e

    def run_status(self, run_id: str) -> tuple[str, str]:
        """``flwr ls --run-id``: the run's status text (e.g. ``finished:failed``) and details."""
        res = self.flwr(["ls", self.connection, "--run-id", run_id, "--format", "json"], timeout=60)
        try:
            run = json.loads(res.stdout[res.stdout.index("{"):])["runs"][0]
            return str(run.get("status", "")), str(run.get("status-details", ""))
        except (ValueError, KeyError, IndexError):
            return "", ""

    def wait_result(self, path: Path, *, timeout: float, run_id: str | None = None, on_progress: Callable[[], None] | None = None,
                    check_every: float = 20.0) -> dict:
        """Poll for the ServerApp's result file; fail (never hang) after ``timeout`` seconds, or as soon
        as Flower reports the run finished without writing one (e.g. the ServerApp could not start)."""
        deadline = time.monotonic() + timeout
        next_check = time.monotonic() + check_every
        finished_at = None
        while time.monotonic() < deadline:
            if path.exists():
                res = json.loads(path.read_text())
                if res.get("status") != "running":
                    return res
            if on_progress is not None:
                on_progress()
            for p in self.procs:
                if p.name == "superlink" and p.popen.poll() is not None:
                    raise CdrecError(f"the SuperLink exited ({p.popen.returncode}); see {p.log}")
            if run_id is not None and time.monotonic() > next_check:
                next_check = time.monotonic() + check_every
                status, details = self.run_status(run_id)
                if status.startswith("finished") and finished_at is None:
                    finished_at = time.monotonic()
                elif finished_at is not None and time.monotonic() - finished_at > 10:
                    raise CdrecError(f"Flower run {run_id} {status} without an MTAL result ({details}); logs in {self.work}")
            time.sleep(0.5)
        raise CdrecError(f"no MTAL result at {path} within {timeout:g} s (logs in {self.work})")

    def kill_org(self, name: str) -> None:
        """Simulate an organization's machine dying: SIGKILL its SuperNode's whole process group."""
        p = self.node_procs[name]
        p.killed = True
        _killpg(p.popen, signal.SIGKILL)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM every process group we started, then SIGKILL whatever is left after ``grace_s``."""
        for p in reversed(self.procs):
            _killpg(p.popen, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for p in self.procs:
            try:
                p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:
            _killpg(p.popen, signal.SIGKILL)
            try:
                p.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def alive_groups(self) -> list[int]:
        """Process groups we started that still have a member (for tests: all must be gone after stop)."""
        out = []
        for p in self.procs:
            try:
                os.killpg(p.popen.pid, 0)
                out.append(p.popen.pid)
            except ProcessLookupError:
                pass
            except PermissionError:
                out.append(p.popen.pid)
        return out

    def __enter__(self) -> "LocalFederation":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _killpg(popen: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(popen.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def safe(name: str) -> str:
    from cdrec.federated.flower.orgdata import safe_dirname

    return safe_dirname(name)


def shutil_which(cmd: str, bin_dir: Path) -> str | None:
    import shutil

    return shutil.which(cmd, path=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
