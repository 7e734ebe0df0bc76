"""Run every benchmark and write ``summary.md`` (``make bench`` = ``python -m benchmarks.run_all``).

Outputs land in ``--out`` (default ``benchmarks/out/``): ``peer.json``, ``eval_throughput.json``,
``scaling.json``, ``scaling.png``, ``ctr_throughput.json`` and ``summary.md``; the work folders beside them keep each child
process's spec, log and result. ``--only`` runs a subset; the summary is rebuilt from whatever JSONs
are present. ``--device cuda`` runs the GPU figures (plus bf16 autocast for SASRec) and is skipped
cleanly, with a note in the JSON, when no GPU is present.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.common import DEFAULT_OUT, cuda_available, log, write_json

BENCHMARKS = ("peer", "throughput", "scaling", "ctr")


def parse_sizes(text: str) -> tuple[int, ...]:
    return tuple(int(float(x)) for x in text.split(",") if x.strip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch / BLAS threads of every timed process (same for cdrec and RecBole)")
    ap.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset of " + ",".join(BENCHMARKS))
    ap.add_argument("--data-dir", type=Path, default=None, help="folder holding ml-100k/ (default: $CDREC_DATA_DIR, else ../shared/data, as the loaders)")
    ap.add_argument("--peer-models", default="BPR,SASRec")
    ap.add_argument("--sasrec-epochs", type=int, default=10)
    ap.add_argument("--recbole-sasrec-epochs", type=int, default=None, help="time RecBole's SASRec on fewer epochs (default: --sasrec-epochs)")
    ap.add_argument("--bpr-epochs", type=int, default=20)
    ap.add_argument("--sizes", default="1e5,1e6,1e7", help="scaling sizes (interactions) for BPR-MF")
    ap.add_argument("--sasrec-sizes", default="1e5,3e5,1e6", help="scaling sizes for SASRec")
    ap.add_argument("--mtal-sizes", default="1e5,1e6,3e6", help="scaling sizes for AAE/MTAL (one assistance round x 1 local epoch per 'epoch')")
    ap.add_argument("--scaling-epochs", type=int, default=2)
    ap.add_argument("--ctr-batch", type=int, default=4096, help="CTR training throughput: rows per step")
    ap.add_argument("--ctr-steps", type=int, default=10, help="CTR training throughput: timed steps per model")
    ap.add_argument("--keep-tables", action="store_true", help="keep the generated scaling tables in <out>/scaling-work for a later run")
    args = ap.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = [x for x in only if x not in BENCHMARKS]
    if unknown:
        print(f"--only: unknown benchmark {unknown[0]!r}; expected some of {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    from cdrec.data.loaders import data_dir

    args.data_dir = data_dir(args.data_dir).resolve()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.device == "cuda" and not cuda_available():
        log("--device cuda: no CUDA GPU on this machine; GPU figures skipped")
        write_json(out / "gpu.json", {"benchmark": "gpu", "skipped": "no CUDA GPU available on this machine"})
        from benchmarks.report import write_summary

        write_summary(out)
        return 0
    tag = "" if args.device == "cpu" else "-cuda"
    if "peer" in only:
        from benchmarks import peer

        if not (args.data_dir / "ml-100k" / "u.data").exists():
            log(f"peer: {args.data_dir / 'ml-100k'} not found; peer comparison skipped")
            write_json(out / f"peer{tag}.json", {"benchmark": "peer", "skipped": f"ML-100K not found under {args.data_dir}"})
        else:
            models = tuple(m.strip() for m in args.peer_models.split(",") if m.strip())
            peer.run(out if not tag else out / "cuda", data_dir=args.data_dir, device=args.device, threads=args.threads, models=models, epochs={"BPR": args.bpr_epochs, "SASRec": args.sasrec_epochs}, recbole_sasrec_epochs=args.recbole_sasrec_epochs)
    if "throughput" in only:
        from benchmarks import eval_throughput

        res = eval_throughput.run(device=args.device, threads=args.threads)
        write_json(out / f"eval_throughput{tag}.json", res)
    if "scaling" in only:
        from benchmarks import scaling

        res = scaling.run(out, device=args.device, threads=args.threads, models={"BPR-MF": parse_sizes(args.sizes), "AAE-MTAL": parse_sizes(args.mtal_sizes), "SASRec": parse_sizes(args.sasrec_sizes)}, epochs=args.scaling_epochs, keep_tables=args.keep_tables)
        scaling.plot(res, out / "scaling.png")
    if "ctr" in only:
        import torch

        from benchmarks import bench_ctr

        torch.set_num_threads(args.threads)
        write_json(out / "ctr_throughput.json", bench_ctr.run(batch=args.ctr_batch, steps=args.ctr_steps, devices=["cpu"] + (["cuda"] if tag else [])))
    from benchmarks.report import write_summary

    path = write_summary(out)
    log(f"summary: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
