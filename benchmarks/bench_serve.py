"""Load benchmark of `cdrec serve`: BPR-MF (d=128) on ML-100K, /recommend at a target rate.

    CDREC_DATA_DIR=../shared/data python benchmarks/bench_serve.py            # 200 req/s, 4000 requests
    python benchmarks/bench_serve.py --rate 400 --requests 8000 --run-dir runs/my-bprmf

1. trains BPR-MF on ML-100K (d=128, UCLR settings) into ``--run-dir``, or reuses it when its
   ``model.pt`` exists;
2. starts ``cdrec serve`` in a subprocess on a free loopback port (torch limited to one thread);
3. from this second process, sends a bounded number of requests (``--requests``, and at most
   ``--max-seconds``) on keep-alive connections, open loop: request i is due at ``t0 + i / rate``
   and its latency runs from when it was due (a slow server is not hidden by a waiting client);
4. does the same for ``/health`` (the HTTP stack alone) as the baseline of the same run, then a
   closed-loop phase (``--concurrency`` requests always in flight) for the most the server gives;
   The server's CPU time per request (from /proc) is reported too: it does not depend on what else
   runs on the machine, unlike the latencies;
5. prints a Markdown table and writes ``benchmarks/out/serve.json``.

Target (issue 7): /recommend holds 200 requests/s with p99 < 50 ms on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
KEY = "bench-key"


def train_or_reuse(run_dir: Path, data_dir: str | None, epochs: int) -> float:
    if (run_dir / "model.pt").exists():
        print(f"reusing {run_dir}", file=sys.stderr)
        return 0.0
    from cdrec.config import load_config
    from cdrec.experiments.pipeline import run_config

    sets = ["data.name=ml-100k", "model=bprmf", "model_params.dim=128", f"train.epochs={epochs}", "train.device=cpu", "train.progress=false"]
    if data_dir:
        sets.append(f"data.data_dir={Path(data_dir).resolve()}")
    t0 = time.perf_counter()
    result = run_config(load_config(None, sets), run_dir)
    print(f"trained {run_dir} in {time.perf_counter() - t0:.1f}s: test {result.metrics['overall']}", file=sys.stderr)
    return time.perf_counter() - t0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), robust to other load on the machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir: Path, port: int, threads: int) -> subprocess.Popen:
    env = {**os.environ, "CDREC_API_KEY": KEY, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "cdrec", "serve", str(run_dir), "--port", str(port), "--device", "cpu", "--threads", str(threads)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_ready(proc: subprocess.Popen, port: int, timeout: float = 120.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not become ready")


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def load_phase(port: int, paths: list[str], rate: float | None, concurrency: int, max_seconds: float) -> dict:
    """Send ``len(paths)`` GETs; open loop at ``rate`` (None: closed loop, as fast as answered)."""
    n = len(paths)
    due = np.zeros(n)
    sent = np.full(n, np.nan)
    done = np.full(n, np.nan)
    status = np.zeros(n, dtype=int)
    counter = iter(range(n))
    t0 = time.perf_counter() + 0.05
    stop_at = t0 + max_seconds

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in counter:
                due[i] = t0 + i / rate if rate else time.perf_counter()
                if due[i] > stop_at:
                    break
                delay = due[i] - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                raw = f"GET {paths[i]} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {KEY}\r\n\r\n".encode()
                sent[i] = time.perf_counter()
                status[i] = await _request(reader, writer, raw)
                done[i] = time.perf_counter()
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    ok = ~np.isnan(done)
    lat_due = (done[ok] - due[ok]) * 1e3
    lat_sent = (done[ok] - sent[ok]) * 1e3
    span = float(np.nanmax(done) - t0) if ok.any() else float("nan")
    return {
        "target_rps": rate,
        "requests": int(ok.sum()),
        "non_200": int((status[ok] != 200).sum()),
        "seconds": round(span, 3),
        "throughput_rps": round(ok.sum() / span, 1),
        "p50_ms": round(float(np.percentile(lat_due, 50)), 2),
        "p99_ms": round(float(np.percentile(lat_due, 99)), 2),
        "max_ms": round(float(lat_due.max()), 2),
        "p50_service_ms": round(float(np.percentile(lat_sent, 50)), 2),
        "p99_service_ms": round(float(np.percentile(lat_sent, 99)), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, default=REPO / "benchmarks" / "out" / "bprmf-ml-100k-d128")
    ap.add_argument("--data-dir", default=os.environ.get("CDREC_DATA_DIR"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--rate", type=float, default=200.0, help="target requests per second")
    ap.add_argument("--requests", type=int, default=4000, help="requests per open-loop phase (bounded)")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="time bound per phase")
    ap.add_argument("--concurrency", type=int, default=8, help="keep-alive connections")
    ap.add_argument("--saturate-requests", type=int, default=3000, help="closed-loop phase size (0: skip)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--server-threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "serve.json")
    args = ap.parse_args()
    if args.requests < 1 or args.rate <= 0 or args.max_seconds <= 0 or args.concurrency < 1:
        raise SystemExit("--requests, --rate, --max-seconds and --concurrency must be positive")

    sys.path.insert(0, str(REPO))
    train_s = train_or_reuse(args.run_dir, args.data_dir, args.epochs)
    from cdrec.data.loaders import load_ml100k

    users = load_ml100k(args.data_dir).user_ids
    rng = random.Random(args.seed)

    def recommend_paths(n: int) -> list[str]:
        return [f"/recommend?user={rng.choice(users)}&domain=all&k={args.k}" for _ in range(n)]

    port = free_port()
    proc = start_server(args.run_dir, port, args.server_threads)
    try:
        ready_s = wait_ready(proc, port)
        asyncio.run(load_phase(port, recommend_paths(200), None, 4, 10))  # warm-up, not reported
        plan = {
            "health_open_loop": (["/health"] * args.requests, args.rate),
            "recommend_open_loop": (recommend_paths(args.requests), args.rate),
        }
        if args.saturate_requests > 0:
            plan["recommend_closed_loop"] = (recommend_paths(args.saturate_requests), None)
        phases = {}
        for name, (paths, rate) in plan.items():
            cpu0 = cpu_seconds(proc.pid)
            phases[name] = asyncio.run(load_phase(port, paths, rate, args.concurrency, args.max_seconds))
            phases[name]["server_cpu_ms_per_request"] = round((cpu_seconds(proc.pid) - cpu0) * 1e3 / phases[name]["requests"], 3)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    rec = phases["recommend_open_loop"]
    report = {
        "model": "bprmf d=128 on ml-100k",
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "python": platform.python_version()},
        "train_s": round(train_s, 1),
        "server_ready_s": round(ready_s, 2),
        "phases": phases,
        "target": {"rps": args.rate, "p99_ms": 50.0},
        "meets_target": bool(rec["throughput_rps"] >= 0.97 * args.rate and rec["p99_ms"] < 50.0 and rec["non_200"] == 0),
        "p50_ratio_recommend_vs_health": round(rec["p50_service_ms"] / max(phases["health_open_loop"]["p50_service_ms"], 1e-9), 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    cols = ["phase", "target_rps", "requests", "non_200", "throughput_rps", "p50_ms", "p99_ms", "max_ms", "p50_service_ms", "p99_service_ms", "server_cpu_ms_per_request"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for name, ph in phases.items():
        print("| " + " | ".join([name] + [str(ph[c]) for c in cols[1:]]) + " |")
    print(f"meets target (>= {args.rate:g} req/s, p99 < 50 ms, no errors): {report['meets_target']}; "
          f"load average during run {report['machine']['load_avg_1m']}; wrote {args.out}")


if __name__ == "__main__":
    main()
