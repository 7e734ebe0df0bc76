"""RecBole's own virtualenv (``benchmarks/.recbole-venv``, git-ignored), built on first use.

RecBole 1.2.1 is installed from PyPI next to ``torch==2.13.0`` (installed first: the CPU wheel on
disk; any other torch pulls a multi-gigabyte CUDA build). RecBole 1.2 predates NumPy 2 (it assigns
``np.float = np.float_``), so the environment pins ``numpy<2``, and with it ``pandas<2.3`` and
``scipy<1.14`` (the last releases built against NumPy 1.x that RecBole's data code runs with).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".recbole-venv"
TORCH = "torch==2.13.0"
RECBOLE = "recbole==1.2.1"
PINS = ["numpy<2", "pandas<2.3", "scipy<1.14"]


def python() -> Path:
    return VENV / "bin" / "python"


def ensure(log=print) -> Path:
    """Create the virtualenv and install RecBole when missing; return its python."""
    return build_venv(VENV, [[RECBOLE, *PINS]], probe="import recbole, torch", log=log)


def build_venv(venv: Path, installs: list[list[str]], *, probe: str, log=print) -> Path:
    """The python of ``venv``, built when ``probe`` fails there: ``TORCH`` first, then each ``pip
    install`` argument list of ``installs`` in turn (``--no-deps`` may lead one)."""
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", probe], capture_output=True).returncode == 0:
        return py
    log(f"building virtualenv {venv} (one time)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    for args in [[TORCH], *installs]:
        subprocess.run([*pip, *args], check=True)
    return py


def versions(py: Path | None = None, keep: tuple[str, ...] = ("recbole", "torch", "numpy", "pandas", "scipy")) -> dict[str, str]:
    """Installed versions of the packages that matter in a virtualenv's ``py`` (default RecBole's),
    recorded in the benchmark JSON."""
    out = subprocess.run([str(py or python()), "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    pairs = (line.split("==", 1) for line in out.splitlines() if "==" in line)
    return {name.lower(): ver for name, ver in pairs if name.lower() in keep}


if __name__ == "__main__":
    ensure()
    print(json.dumps(versions(), indent=2))
