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
    py = python()
    if py.exists() and subprocess.run([str(py), "-c", "import recbole, torch"], capture_output=True).returncode == 0:
        return py
    log(f"building RecBole virtualenv in {VENV} (one time)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, TORCH], check=True)
    subprocess.run([*pip, RECBOLE, *PINS], check=True)
    return py


def versions() -> dict[str, str]:
    """Installed versions of the packages that matter (recorded in the benchmark JSON)."""
    out = subprocess.run([str(python()), "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    keep = {"recbole", "torch", "numpy", "pandas", "scipy"}
    pairs = (line.split("==", 1) for line in out.splitlines() if "==" in line)
    return {name.lower(): ver for name, ver in pairs if name.lower() in keep}


if __name__ == "__main__":
    ensure()
    print(json.dumps(versions(), indent=2))
