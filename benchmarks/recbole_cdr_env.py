"""RecBole-CDR from its public source at a pinned commit, in its own virtualenv (both git-ignored).

The PyPI wheel ``recbole-cdr`` 0.1.0 ships no models (``recbole_cdr.model.cross_domain_recommender``
is missing) and pins scipy 1.6.0, so the benchmark fetches RUCAIBox/RecBole-CDR at :data:`COMMIT`
into ``benchmarks/.recbole-cdr-src`` and puts that folder on the driver's ``sys.path`` (nothing is
installed from it, nothing of it is committed here). The fetch tries ``git clone`` of
:data:`REPO_URL`; without network it clones a local copy (a clone or a bare git directory) named by
``--recbole-cdr-mirror`` or ``$RECBOLE_CDR_MIRROR`` instead. Only the code is checked out: the
sparse checkout leaves out ``recbole_cdr/dataset_example/`` (two MovieLens files the benchmark never
reads, and which a mirror may hold only as pointers).

The pinned source is written against RecBole 1.0.1 (its ``requirements.txt``; its CI runs 1.0.1): on
RecBole 1.2.1 its configurator already fails (``Config._set_eval_neg_sample_args()`` gained a
``phase`` argument in 1.1, and the dataloaders and samplers changed with it). So its virtualenv,
``benchmarks/.recbole-cdr-venv``, holds RecBole 1.0.1, installed ``--no-deps`` because it pins
``scipy==1.6.0`` (no wheel for this Python), with torch 2.13.0 and the NumPy-1 pins of RecBole 1.2's
own environment (:mod:`benchmarks.recbole_env`), beside which it is built. ``$RECBOLE_CDR_VENV``
points the benchmark at such a virtualenv built by another checkout (it is built there when missing).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from benchmarks import recbole_env

HERE = Path(__file__).resolve().parent
SRC = HERE / ".recbole-cdr-src"
VENV_ENV = "RECBOLE_CDR_VENV"
VENV = Path(os.environ.get(VENV_ENV) or HERE / ".recbole-cdr-venv")
"""The virtualenv; ``$RECBOLE_CDR_VENV`` names one built elsewhere (another checkout's) to reuse it."""
REPO_URL = "https://github.com/RUCAIBox/RecBole-CDR.git"
COMMIT = "d339918ee5f2fb2d3ef38e874f2e04c01bc19e9d"
"""RecBole-CDR's master of 2023-12-08 (its last commit; ``recbole_cdr.__version__`` 0.1.0)."""
MIRROR_ENV = "RECBOLE_CDR_MIRROR"
RECBOLE = "recbole==1.0.1"
DEPS = [*(pin for pin in recbole_env.PINS if not pin.startswith("scipy")), "scipy<1.12", "tqdm", "colorlog==4.7.2", "colorama==0.4.4", "scikit-learn<1.6", "pyyaml", "tensorboard"]
"""RecBole 1.0.1's requirements, its ``scipy==1.6.0`` replaced by the last scipy whose ``dok_matrix`` keeps
``_update`` (RecBole-CDR's BiTGCF builds its graph with it; scipy 1.12 removed it), with RecBole 1.2's
NumPy-1 pins (:data:`benchmarks.recbole_env.PINS`)."""


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def checked_out(src: Path = SRC) -> bool:
    """Whether ``src`` holds RecBole-CDR at :data:`COMMIT`."""
    head = _git("rev-parse", "HEAD", cwd=src) if (src / ".git").exists() else None
    return head is not None and head.returncode == 0 and head.stdout.strip() == COMMIT and (src / "recbole_cdr" / "model").is_dir()


def fetch_source(mirror: str | None = None, log=print, src: Path = SRC) -> Path:
    """RecBole-CDR's source at :data:`COMMIT` in ``src``: cloned from GitHub, else from ``mirror``
    (or ``$RECBOLE_CDR_MIRROR``). Raises ``RuntimeError`` naming what each try said."""
    if checked_out(src):
        return src
    tried: list[str] = []
    for origin in [REPO_URL, mirror or os.environ.get(MIRROR_ENV)]:
        if not origin:
            continue
        if src.exists():
            subprocess.run(["rm", "-rf", str(src)], check=True)
        log(f"fetching RecBole-CDR {COMMIT[:7]} from {origin}")
        steps = [
            ("clone", ["clone", "-q", "--no-checkout", "--filter=blob:none", origin, str(src)], None),
            ("sparse-checkout", ["sparse-checkout", "set", "--no-cone", "/*", "!/recbole_cdr/dataset_example/"], src),
            ("checkout", ["checkout", "-q", COMMIT], src),
        ]
        for name, args, cwd in steps:
            done = _git(*args, cwd=cwd)
            if done.returncode != 0 and not (name == "checkout" and checked_out(src)):
                tried.append(f"{origin}: git {name}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f'exit {done.returncode}'}")
                break
        if checked_out(src):
            return src
    if not tried:
        tried.append("no origin to try")
    raise RuntimeError(f"RecBole-CDR source not fetched ({'; '.join(tried)}); give a local clone with --recbole-cdr-mirror or ${MIRROR_ENV}")


PROBE = "import recbole, torch, colorlog, scipy.sparse as s; assert hasattr(s.dok_matrix((1, 1)), '_update')"


def ensure(log=print) -> Path:
    """The python of RecBole-CDR's virtualenv (RecBole 1.0.1), built when missing."""
    return recbole_env.build_venv(VENV, [["--no-deps", RECBOLE], DEPS], probe=PROBE, log=log)


def versions(py: Path) -> dict[str, str]:
    """Versions recorded in the benchmark JSON: the virtualenv's packages and the pinned commit."""
    return {**recbole_env.versions(py), "recbole_cdr_commit": COMMIT}


if __name__ == "__main__":
    fetch_source()
    print(json.dumps(versions(ensure()), indent=2))
