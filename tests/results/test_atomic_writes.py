"""Every file cdrec writes goes through a temporary file and a rename (``atomic_path`` and the
helpers built on it), so a kill never leaves a truncated checkpoint, result or export that a later
command reads. The audit below fails when a function in the package writes a file directly."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cdrec.results.schema import atomic_path, atomic_write_text

PACKAGE = Path(__file__).resolve().parents[2] / "cdrec"
WRITER_METHODS = {"write_text", "write_bytes", "savefig", "to_csv", "to_parquet", "to_json", "to_feather", "savez", "savez_compressed", "savetxt"}
SAVE_MODULES = {"torch", "np", "numpy", "joblib", "pickle", "json", "yaml"}
SAVE_FUNCS = {"save", "dump"}
HELPERS = {"atomic_path"}
EXEMPT = {
    # the launcher writes the federation's private working files (certificates, keys, app config)
    # into a fresh work directory before any process that reads them is started
    "cdrec/federated/flower/launch.py": "*",
    # streams batches into a mkstemp file and os.replace()s it onto the target: atomic by construction
    "cdrec/predict.py": "export_recommendations",
    # an append-only progress log (one line per step), not a file anything reads back whole
    "cdrec/federated/flower/server_app.py": "progress",
}


def _is_write_open(call: ast.Call) -> bool:
    name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
    if name not in ("open", "fdopen"):
        return False
    mode = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "mode"), None)
    return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and any(c in mode.value for c in "wax+")


def _writes(node: ast.AST) -> list[int]:
    lines = []
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr in WRITER_METHODS:
            lines.append(call.lineno)
        elif isinstance(func, ast.Attribute) and func.attr in SAVE_FUNCS and isinstance(func.value, ast.Name) and func.value.id in SAVE_MODULES:
            if func.attr == "dump" and func.value.id in ("json", "yaml", "pickle") and len(call.args) < 2:
                continue  # yaml.dump(obj) returns a string
            lines.append(call.lineno)
        elif _is_write_open(call):
            lines.append(call.lineno)
    return lines


def _uses_atomic(node: ast.AST) -> bool:
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
        if name in HELPERS:
            return True
    return False


def audit(root: Path = PACKAGE) -> list[str]:
    """``file:line`` of every direct file write in a function that does not use ``atomic_path``."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            rel = str(path.relative_to(root.parent))
            if fn.name in HELPERS or _uses_atomic(fn) or EXEMPT.get(rel) in ("*", fn.name):
                continue
            inner = {id(c) for child in ast.walk(fn) if child is not fn and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) for c in ast.walk(child)}
            for line in _writes(fn):
                if not any(id(n) in inner for n in ast.walk(fn) if isinstance(n, ast.Call) and n.lineno == line):
                    bad.append(f"{path.relative_to(root.parent)}:{line} ({fn.name})")
    return sorted(set(bad))


def test_every_writer_in_the_package_is_atomic():
    bad = audit()
    assert not bad, "write through cdrec.results.schema.atomic_path / atomic_write_text / atomic_torch_save: " + ", ".join(bad)


def test_audit_catches_a_direct_write(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text(textwrap.dedent("""
        import torch, json
        def bad(path, obj):
            torch.save(obj, path)
        def bad2(path):
            with open(path, "w") as f:
                json.dump({}, f)
        def good(path, obj):
            with atomic_path(path) as tmp:
                torch.save(obj, tmp)
        def reads(path):
            return open(path).read()
    """))
    assert [b.split(" ")[1] for b in audit(pkg)] == ["(bad)", "(bad2)", "(bad2)"]


def test_atomic_path_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    assert (target.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_sigkill_during_writes_never_leaves_a_truncated_file(tmp_path):
    """A child rewrites a 2 MB file in a loop and is SIGKILLed; the file then holds one whole version."""
    target = tmp_path / "big.txt"
    code = textwrap.dedent(f"""
        import sys
        from cdrec.results.schema import atomic_write_text
        i = 0
        while True:
            atomic_write_text({str(target)!r}, str(i % 10) * 2_000_000)
            i += 1
            if i == 3:
                print("ready", flush=True)
    """)
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    text = target.read_text()
    assert len(text) == 2_000_000 and len(set(text)) == 1


def test_split_save_is_atomic_and_round_trips(tmp_path, tiny_synthetic):
    from cdrec.data.candidates import add_sampled_candidates
    from cdrec.data.splits import Split, leave_one_out

    split = add_sampled_candidates(leave_one_out(tiny_synthetic), 5, seed=1)
    split.save(tmp_path / "split")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split.npz"]
    back = Split.load(tmp_path / "split.npz", tiny_synthetic)
    assert np.array_equal(back.test_rows, split.test_rows) and np.array_equal(back.candidates["test"], split.candidates["test"])
