"""The GPU path (``--device cuda``): every registered model trains and evaluates on CUDA, allocates
there, and lands near the same run on the CPU; a model trained on CUDA serves from either device.

Skipped, with the reason, on a machine without a CUDA GPU (CI has none): these run where one is lent.
``-s`` prints each model's metrics on both devices (the figures in benchmarks/results/gpu_check.json).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import cdrec
from cdrec.config import load_config
from cdrec.experiments.pipeline import run_config
from cdrec.models import registry
from cdrec.train import resolve_device

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none on this machine")

SYNTH = "{n_users: 240, n_domains: 3, items_per_domain: 80, min_activity: 8, max_activity: 30, signal: 1.0, max_activity_share: 0.5}"
COMMON = ["data.name=synthetic", f"data.synthetic={SYNTH}", "model_params.dropout=0.0", "train.progress=false", "train.epochs=2", "train.batch_size=256"]
FAMILY_SETS: dict[str, list[str]] = {
    "cf": ["split.n_negatives=20", "model_params.dim=16", "model_params.source=D0", "model_params.target=D1"],
    "sequential": ["data.synthetic.n_domains=2", "split.n_negatives=20", "model_params.dim=16", "model_params.max_len=20", "model_params.warmup_epochs=1"],
    "assisted": ["model_params.epochs=2", "model_params.batch_size=50"],
    "ctr": ["data.domains=age-edges:28,38"],
}
UCLR_SETS = ["model_params.dim=16", "model_params.ae_epochs=2", "model_params.ae_passes=2", "model_params.ft_epochs=1", "model_params.hidden=[32,16]"]
CAT_ART_SETS = ["model_params.cat_epochs=2", "model_params.cat_passes=2", "model_params.art_epochs=1", "model_params.hidden=[32]", "model_params.attn_dropout=0.0"]
ASSISTED_MODES = {"aae": "mtal"}


def tiny_sets(name: str, device: str) -> list[str]:
    """Overrides for a run of model ``name`` of a few seconds on the synthetic data."""
    family = registry.get(name).family
    sets = [f"model={name}", *COMMON, *FAMILY_SETS[family], f"train.device={device}"]
    if name.startswith(("uclr", "pge")):
        sets += UCLR_SETS
    if name == "cat-art":
        sets += CAT_ART_SETS
    if family == "assisted":
        sets += [f"setting.mode={ASSISTED_MODES.get(name, 'alone')}", "setting.rounds=2"]
    fields = {f.name for f in dataclasses.fields(registry.get(name).params)}
    return [s for s in sets if not s.startswith("model_params.") or s.split("=")[0].split(".")[1] in fields]


def close(a: float, b: float) -> bool:
    """CPU and CUDA runs share data, sampling and initial weights (dropout is off), not float sums or random masks drawn on the GPU."""
    return math.isclose(a, b, rel_tol=0.05, abs_tol=0.02)  # measured on an H200: at most 0.0043 apart


@needs_cuda
def test_auto_picks_the_gpu():
    assert resolve_device("auto").type == "cuda"


@needs_cuda
@pytest.mark.parametrize("name", registry.names())
def test_model_trains_on_cuda_and_lands_near_the_cpu_run(name, tmp_path):
    torch.cuda.reset_peak_memory_stats()
    on_gpu = run_config(load_config(None, tiny_sets(name, "cuda")), tmp_path / "cuda")
    allocated = torch.cuda.max_memory_allocated()
    on_cpu = run_config(load_config(None, tiny_sets(name, "cpu")), tmp_path / "cpu")
    assert allocated > 0, f"{name}: nothing was allocated on the GPU"
    gpu, cpu = on_gpu.metrics["overall"], on_cpu.metrics["overall"]
    assert gpu.keys() == cpu.keys()
    print(f"\nGPU-CHECK {name}: " + ", ".join(f"{m} cpu {cpu[m]:.4f} cuda {gpu[m]:.4f}" for m in sorted(gpu)))
    assert all(np.isfinite(v) for v in gpu.values()), gpu
    far = {m: (cpu[m], gpu[m]) for m in gpu if not close(cpu[m], gpu[m])}
    assert not far, f"{name}: CUDA metrics far from CPU: {far}"


@needs_cuda
def test_model_trained_on_cuda_serves_from_cuda_and_cpu_alike(tmp_path: Path):
    run = tmp_path / "run"
    run_config(load_config(None, tiny_sets("bprmf", "cuda") + ["scope=joint"]), run)
    on_gpu, on_cpu = cdrec.load(run, device="cuda"), cdrec.load(run, device="cpu")
    for domain in on_cpu.domains:
        a = pd.concat(on_gpu.recommend_users(domain, k=10), ignore_index=True)
        b = pd.concat(on_cpu.recommend_users(domain, k=10), ignore_index=True)
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a["score"], b["score"], rtol=1e-4, atol=1e-5)
        assert (a["item"] == b["item"]).mean() > 0.95, domain  # near-ties may swap places
