"""Training throughput (samples/s) of the CTR family on CPU (and CUDA when present).

Input sizes are ML-1M's CTR view (7 sparse fields with ML-1M vocabularies, age dense, 3 domains,
2 tasks); batches are random codes, so only speed is measured. Each model runs its real training
step (M3oE: lower-level step plus the held-out upper-level step every ``arch_every`` steps).
Ratios are against Shared-Bottom measured in the same run.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_ctr [--batch 4096] [--steps 10] [--json ctr_throughput.json]

``--json`` writes the table as ``ctr_throughput.json``, which ``benchmarks.report`` renders in the
summary; ``python -m benchmarks.run_all --only ctr`` runs the same and writes it into the benchmark folder.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch

from benchmarks.common import machine, write_json
from cdrec.config import TrainConfig
from cdrec.models import registry
from cdrec.models.ctr.layers import CTRSchema

ML1M = CTRSchema(vocab_sizes=[6041, 3707, 3, 22, 3440, 19, 4], n_dense=1, n_domains=3, n_tasks=2)
MODELS = ["sharedbottom", "mlp", "mmoe", "ple", "star", "adatt", "m3oe"]


def make_batch(n: int, device: torch.device, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sparse = torch.stack([torch.randint(0, v, (n,), generator=g) for v in ML1M.vocab_sizes], dim=1)
    return {
        "sparse": sparse.to(device), "dense": torch.randn(n, 1, generator=g).to(device),
        "domain": torch.randint(0, 3, (n,), generator=g).to(device), "label": torch.randint(0, 2, (n, 2), generator=g).float().to(device),
    }


def throughput(name: str, device: torch.device, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = registry.get(name).cls.from_schema(ML1M, registry.build_params(name, {})).to(device)
    cfg = TrainConfig(lr=1e-2)
    if hasattr(model, "configure_optimizers"):
        opts = model.configure_optimizers(cfg)
        held = (make_batch(batch, device, 1000 + k) for k in itertools.count())
        model.heldout = held
        step = lambda b: model.train_step(b, opts)  # noqa: E731
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)

        def step(b):
            opt.zero_grad(set_to_none=True)
            loss = model.loss(b)
            loss.backward()
            opt.step()

    batches = [make_batch(batch, device, k) for k in range(3)]
    for b in batches[:2]:
        step(b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for k in range(steps):
        step(batches[k % 3])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def run(*, batch: int = 4096, steps: int = 10, devices: list[str] | None = None) -> dict:
    """Samples/s of every CTR model on each device (default: the CPU, and CUDA when present), with
    each device's ratio against its own Shared-Bottom; the table is printed as it is measured."""
    devices = devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {batch}, steps {steps}")
    print("| device | model | samples/s | x Shared-Bottom |")
    print("|---|---|---|---|")
    rows = []
    for device in map(torch.device, devices):
        base = None
        for name in MODELS:
            sps = throughput(name, device, batch, steps)
            base = base or sps
            rows.append({"device": device.type, "model": name, "samples_per_s": round(sps), "x_sharedbottom": round(sps / base, 3)})
            print(f"| {device.type} | {name} | {sps:,.0f} | {sps / base:.2f} |", flush=True)
    info = {**machine(",".join(devices), torch.get_num_threads()), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if "cuda" in devices else None}
    return {"benchmark": "ctr_throughput", "machine": info, "batch": batch, "steps": steps, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()
    record = run(batch=args.batch, steps=args.steps)
    if args.json:
        write_json(args.json, record)


if __name__ == "__main__":
    main()
