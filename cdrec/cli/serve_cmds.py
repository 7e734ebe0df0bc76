"""``cdrec recommend``, ``cdrec export`` and ``cdrec serve``: use a trained run directory.

Kept apart from :mod:`cdrec.cli.main` (which calls :func:`register`) so families' CLI additions merge
cleanly. Bad input raises :class:`~cdrec.errors.CdrecError`: one line on stderr, exit code 2, and
nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from cdrec.cli.options import check_device
from cdrec.errors import CdrecError, require


def recommend(
    run_dir: Path = typer.Argument(..., help="A run directory written by `cdrec run`."),
    user: Optional[str] = typer.Option(None, "--user", help="Raw user id."),
    history: Optional[str] = typer.Option(None, "--history", help="Instead of --user (sequential models): comma-separated raw item ids, oldest first; answers the next items per domain."),
    domain: Optional[str] = typer.Option(None, "--domain", help="Domain name (optional when the run has one domain; with --history: only this domain)."),
    k: int = typer.Option(10, "-k", "--k", help="How many items."),
    include_seen: bool = typer.Option(False, "--include-seen", help="Keep items the user already has."),
    fallback: Optional[str] = typer.Option(None, "--fallback", help="popularity: the domain's most popular items for an unknown user."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda"),
) -> None:
    """Top-K items in a domain for one user of a trained run, or (--history) the next items per domain after an item history."""
    from cdrec.predict import ColdUserError, check_k, load
    from cdrec.results.tables import markdown_table

    check_k(k, option="--k")
    check_device(device)
    require((user is None) != (history is None), "give exactly one of --user and --history")
    require(fallback in (None, "popularity"), f"--fallback: expected popularity, got {fallback!r}")
    items = [x.strip() for x in history.split(",")] if history is not None else []
    require(history is None or all(items), f"--history: expected comma-separated item ids, got {history!r}")
    require(history is None or (fallback is None and not include_seen), "--fallback and --include-seen apply to --user only")
    predictor = load(run_dir, device=device)
    if domain is not None or history is None:
        predictor.domain_index(domain, option="--domain")
    if history is not None:
        answers = predictor.recommend_sequence(items, k, domain=domain)
        if as_json:
            typer.echo(json.dumps({"recommendations": {d: r.to_dict() for d, r in answers.items()}}, indent=2))
            return
        for recs in answers.values():
            typer.echo(f"history of {len(items)} items · domain {recs.domain} · {predictor.model}")
            typer.echo(markdown_table(["rank", "item", "score"], [[r + 1, i, f"{s:.4f}"] for r, (i, s) in enumerate(zip(recs.items, recs.scores))]))
        return
    try:
        recs = predictor.recommend(user, domain, k, exclude_seen=not include_seen, fallback=fallback)
    except ColdUserError as exc:
        raise ColdUserError(exc.why, "--fallback popularity") from None
    if as_json:
        typer.echo(json.dumps(recs.to_dict(), indent=2))
        return
    typer.echo(f"user {recs.user} · domain {recs.domain} · {predictor.model} ({recs.source})")
    typer.echo(markdown_table(["rank", "item", "score"], [[r + 1, i, f"{s:.4f}"] for r, (i, s) in enumerate(zip(recs.items, recs.scores))]))


def export(
    run_dir: Path = typer.Argument(..., help="A run directory written by `cdrec run`."),
    out: Path = typer.Option(..., "--out", help="Output file (written atomically)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="parquet | csv (default: from --out's suffix)."),
    k: int = typer.Option(10, "-k", "--k", help="Items per user and domain."),
    domain: Optional[List[str]] = typer.Option(None, "--domain", help="Only this domain (repeatable; default all)."),
    include_seen: bool = typer.Option(False, "--include-seen", help="Keep items the user already has."),
    batch_size: int = typer.Option(1024, "--batch-size", help="Users scored per batch."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
) -> None:
    """Top-K for every user of every domain into one Parquet or CSV file (user, domain, rank, item, score)."""
    from cdrec.predict import EXPORT_FORMATS, check_k, export_recommendations, load

    if fmt is None:
        fmt = out.suffix.lstrip(".").lower()
        require(fmt in EXPORT_FORMATS, f"--out {out}: cannot tell the format from its suffix; name it .parquet or .csv, or pass --format")
    fmt = fmt.lower()
    require(fmt in EXPORT_FORMATS, f"--format: expected one of {list(EXPORT_FORMATS)}, got {fmt!r}")
    suffix = out.suffix.lstrip(".").lower()
    require(suffix not in EXPORT_FORMATS or suffix == fmt, f"--out {out}: a .{suffix} name for --format {fmt}; name it .{fmt} or pass --format {suffix}")
    require(out.parent.is_dir(), f"--out {out}: folder {out.parent} does not exist")
    require(not out.is_dir(), f"--out {out}: is a directory, expected a file")
    require(overwrite or not out.exists(), f"--out {out}: the file exists; pass --overwrite to replace it")
    check_k(k, option="--k")
    require(batch_size >= 1, f"--batch-size: expected >= 1, got {batch_size}")
    check_device(device)
    predictor = load(run_dir, device=device)
    for name in domain or []:
        predictor.domain_index(name, option="--domain")
    n = export_recommendations(predictor, out, fmt=fmt, k=k, domains=domain, exclude_seen=not include_seen, batch_size=batch_size, progress=True)
    typer.echo(f"wrote {n} rows to {out}")


def serve(
    run_dir: Path = typer.Argument(..., help="A run directory written by `cdrec run`."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="CDREC_API_KEY", help="Require this key in the X-API-Key header (env CDREC_API_KEY)."),
    max_k: int = typer.Option(1000, "--max-k", help="Largest k a request may ask for."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch intra-op threads (default: torch's)."),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request."),
) -> None:
    """Serve a trained run over HTTP (FastAPI + uvicorn): /health, /recommend, /recommend/sequence, /score."""
    require(1 <= port <= 65535, f"--port: expected 1..65535, got {port}")
    require(1 <= max_k <= 100_000, f"--max-k: expected 1..100000, got {max_k}")
    require(threads is None or threads >= 1, f"--threads: expected >= 1, got {threads}")
    require(api_key is None or api_key.strip() != "", "--api-key: empty key; give a non-empty key or leave it out")
    check_device(device)
    try:
        import uvicorn

        from cdrec.serve import create_app
    except ImportError as exc:
        raise CdrecError(f"cdrec serve needs the 'serve' extra ({exc.name} is missing): pip install 'cdrec[serve]'") from None
    import torch

    from cdrec.predict import load

    _check_bindable(host, port)
    if threads is not None:
        torch.set_num_threads(threads)
    predictor = load(run_dir, device=device)
    app = create_app(predictor, api_key=api_key, max_k=max_k)
    guard = "API key required" if api_key else "no API key"
    typer.echo(f"serving {predictor.model} ({predictor.task}, {predictor.dataset}) on http://{host}:{port} ({guard})", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=access_log)


def _check_bindable(host: str, port: int) -> None:
    """Fail with one line before loading the model when ``host:port`` cannot be bound."""
    import socket

    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
    except OSError as exc:
        raise CdrecError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None


def register(app: typer.Typer) -> None:
    """Add the commands to the ``cdrec`` app."""
    app.command()(recommend)
    app.command()(export)
    app.command()(serve)
