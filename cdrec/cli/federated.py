"""``cdrec federated``: split a dataset into organizations' own directories, write the Flower App,
and start a local Flower federation (SuperLink + one SuperNode per organization) that runs MTAL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from cdrec.errors import CdrecError, require

if TYPE_CHECKING:
    from cdrec.config import RunConfig

federated_app = typer.Typer(no_args_is_help=True, help="MTAL with organizations as Flower SuperNodes (needs the flower extra: make install-flower).")


def _config(config: Optional[Path], sets: Optional[List[str]], rounds: Optional[int]) -> RunConfig:
    from cdrec.config import load_config

    overrides = ["model=aae", *(sets or [])]
    if rounds is not None:
        overrides.append(f"setting.rounds={rounds}")
    return load_config(config, overrides)


@federated_app.command()
def split(
    config: Optional[Path] = typer.Argument(None, help="Run config YAML (model aae, setting.mode mtal), as for `cdrec run`."),
    out: Path = typer.Option(..., "--out", help="Folder for one directory per organization (+ federation.json)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a key: --set data.name=ml-100k (repeatable)."),
) -> None:
    """Split the dataset into K organizations' own data directories (what each SuperNode loads)."""
    from cdrec.federated.flower.orgdata import federation_from_config, write_federation

    fed, mcfg = federation_from_config(_config(config, set_, None))
    for name, path in write_federation(fed, mcfg, out).items():
        typer.echo(f"{name}: {path}")
    typer.echo(f"wrote {out / 'federation.json'}")


@federated_app.command("app")
def app_cmd(
    out: Path = typer.Option(..., "--out", help="Folder for the Flower App (pyproject.toml) to pass to `flwr run`."),
    num_orgs: int = typer.Option(3, "--num-orgs", help="SuperNodes the ServerApp waits for."),
    rounds: int = typer.Option(10, "--rounds", help="MTAL assistance rounds."),
) -> None:
    """Write the Flower App directory (ServerApp and ClientApp come from the installed cdrec)."""
    from cdrec.federated.flower.launch import write_app

    require(num_orgs >= 1 and rounds >= 1, "--num-orgs and --rounds: expected >= 1")
    typer.echo(f"wrote {write_app(out, {'num-orgs': num_orgs, 'rounds': rounds}) / 'pyproject.toml'}")


@federated_app.command()
def up(
    config: Optional[Path] = typer.Argument(None, help="Run config YAML (model aae, setting.mode mtal), as for `cdrec run`."),
    out: Path = typer.Option(Path("runs/federation"), "--out", help="Folder for organizations' data, the app, logs and result.json."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a key: --set data.name=ml-100k (repeatable)."),
    rounds: Optional[int] = typer.Option(None, "--rounds", help="MTAL rounds (default: setting.rounds)."),
    insecure: bool = typer.Option(False, "--insecure", help="Plain HTTP: for 127.0.0.1 only (no encryption, no node authentication)."),
    node_auth: bool = typer.Option(False, "--node-auth", help="Authenticate SuperNodes (one generated key pair each; needs TLS)."),
    on_failure: str = typer.Option("error", "--on-failure", help="error | continue: when an organization's SuperNode fails."),
    step_timeout: float = typer.Option(600.0, "--step-timeout", help="Seconds an organization may take for one step."),
    timeout: float = typer.Option(3600.0, "--timeout", help="Seconds for the whole run."),
) -> None:
    """Start a SuperLink and one SuperNode per organization on 127.0.0.1, run MTAL, print the metrics, stop."""
    from cdrec.federated.flower import require_flower

    require_flower()
    from cdrec.federated.flower.launch import LocalFederation, write_app
    from cdrec.federated.flower.orgdata import federation_from_config, write_federation

    require(on_failure in ("error", "continue"), f"--on-failure: expected error or continue, got {on_failure!r}")
    cfg = _config(config, set_, rounds)
    fed, mcfg = federation_from_config(cfg)
    out = out.resolve()
    dirs = write_federation(fed, mcfg, out / "orgs")
    result_path = out / "result.json"
    result_path.unlink(missing_ok=True)
    app_dir = write_app(out / "app", {"num-orgs": len(dirs), "rounds": mcfg.rounds, "on-failure": on_failure,
                                      "step-timeout": step_timeout, "result-path": str(result_path)})
    if insecure:
        typer.echo("warning: --insecure: plain HTTP without node authentication, for a federation on 127.0.0.1 only", err=True)
    t0 = time.monotonic()
    with LocalFederation(dirs, out / "flower", insecure=insecure, node_auth=node_auth) as fedn:
        typer.echo(f"SuperLink on {fedn.address} ({'insecure' if insecure else 'TLS'}{', node auth' if node_auth else ''}); "
                   f"{len(dirs)} SuperNodes: {', '.join(dirs)}; logs in {out / 'flower'}")
        run_id = fedn.submit(app_dir)
        typer.echo(f"Flower run {run_id}: MTAL, {mcfg.rounds} rounds")
        res = fedn.wait_result(result_path, timeout=timeout, run_id=run_id)
    if res["status"] != "ok":
        raise CdrecError(f"MTAL on Flower failed: {res.get('error')}")
    _print_result(res, time.monotonic() - t0)
    typer.echo(f"wrote {result_path}")


def _print_result(res: dict, seconds: float) -> None:
    from cdrec.results import markdown_table

    rows = []
    for name, org in res["organizations"].items():
        rep = org.get("report")
        if rep is None:
            rows.append([name, "dropped: " + res.get("dropped", {}).get(name, "?"), "", ""])
            continue
        b = int(rep["best_round"])
        for k in rep["metrics"]:
            rows.append([name, k, f"{rep['test.' + k][0]:.4f}", f"{rep['test.' + k][b]:.4f} (round {b})"])
    typer.echo(markdown_table(["organization", "metric", "base (round 0)", "MTAL (best round on valid)"], rows))
    typer.echo(f"{res.get('messages', 0)} MTAL messages in {seconds:.0f} s")

