"""Benchmark: peak memory and time of a Delta_PS extraction as the number of triplets grows.

Each size runs in a fresh process (peak RSS is a high-water mark, so one process per size) on a
random-init model of a real family, extracting accumulated and local deltas at every layer into a
float16 store that streams one shard per batch. The goal: memory at 1,000 triplets within 1.2x of
memory at 100, and time linear in the number of triplets.

It also measures what the store's checksums cost, in the same process: a resume of the finished
store (which checks every tensor of every shard against its SHA-256) against reading every tensor
raw with safetensors (no hashing), and reading every kind and layer through the store (each
tensor checked as it is read) against the same reads with the check switched off; and the resume
against the extraction itself.

    python benchmarks/bench_extraction_scale.py [--sizes 100,1000] [--model tiny-random-llama3]
        [--layers 8] [--tokens 64] [--batch 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

from proc_memory import status_mb  # benchmarks/ is on sys.path when a script here runs


def run_one(args: argparse.Namespace) -> dict:
    import torch

    from workbench.activations.deltas import extract_deltas
    from workbench.activations.plan import synthetic_pairs
    from workbench.core.models import load_model

    torch.set_num_threads(args.threads)
    model = load_model(args.model, n_layers=args.layers)
    pairs = synthetic_pairs(model, args.n, args.tokens)
    before = status_mb("VmRSS")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = extract_deltas(model, pairs, tmp, batch_size=args.batch, progress=False)
        seconds = time.perf_counter() - start
        peak = status_mb("VmHWM")
        size = sum(p.stat().st_size for p in store.directory.glob("shard-*"))
        checks = checksum_costs(store, lambda: extract_deltas(model, pairs, tmp, batch_size=args.batch, progress=False))
    return {"n": args.n, "tokens": store.n_tokens, "seconds": seconds, "peak_rss_mb": peak,
            "rss_before_mb": before, "store_mb": size / 1e6, **checks}


def checksum_costs(store, resume) -> dict:
    """Seconds of a raw read of every tensor, of a resume that checks them all, and of a read of
    every (kind, layer) through the store; medians of three, the raw read first each round."""
    from statistics import median

    from safetensors import safe_open

    from workbench.core.tensor_files import TensorFile

    def raw():
        for shard in store.shards:
            with safe_open(store.directory / shard.file, framework="pt") as fh:
                for key in fh.keys():
                    fh.get_tensor(key)

    def through_store():
        store.tokens()
        for kind in store.kinds:
            for layer in store.layers:
                store.get(kind, layer, order="store")

    def through_store_unchecked():  # the same reads with the per-tensor check switched off
        checked = TensorFile.get
        TensorFile.get = lambda self, name: self._fh.get_tensor(name)
        try:
            through_store()
        finally:
            TensorFile.get = checked

    times = {"raw_read_s": [], "resume_check_s": [], "store_read_s": [], "store_read_unchecked_s": []}
    for _ in range(3):
        for name, work in (("raw_read_s", raw), ("resume_check_s", resume), ("store_read_unchecked_s", through_store_unchecked),
                           ("store_read_s", through_store)):
            t0 = time.perf_counter()
            work()
            times[name].append(time.perf_counter() - t0)
    return {name: median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--model", default="tiny-random-llama3")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)  # one size, in the child
    args = parser.parse_args()
    if args.n is not None:
        print(json.dumps(run_one(args)))
        return
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        cmd = [sys.executable, __file__, "--n", str(n), "--model", args.model, "--layers", str(args.layers),
               "--tokens", str(args.tokens), "--batch", str(args.batch), "--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{r['n']:>6} triplets  {r['tokens']:>7} span tokens  {r['seconds']:7.1f} s  "
              f"peak RSS {r['peak_rss_mb']:7.1f} MB (after loading {r['rss_before_mb']:.1f})  store {r['store_mb']:.1f} MB",
              flush=True)
        print(f"        checksums: raw read of every tensor {r['raw_read_s']:.2f} s; resume checking them all "
              f"{r['resume_check_s']:.2f} s ({r['resume_check_s'] / r['raw_read_s']:.2f}x the raw read, "
              f"{r['resume_check_s'] / r['seconds'] * 100:.1f} % of the extraction); every kind and layer read "
              f"through the store {r['store_read_s']:.2f} s, {r['store_read_unchecked_s']:.2f} s unchecked "
              f"({r['store_read_s'] / r['store_read_unchecked_s']:.2f}x)", flush=True)
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        print(f"memory ratio {last['peak_rss_mb'] / first['peak_rss_mb']:.2f} (goal <= 1.2); time per triplet "
              f"{first['seconds'] / first['n'] * 1e3:.1f} ms -> {last['seconds'] / last['n'] * 1e3:.1f} ms (linear: equal)")


if __name__ == "__main__":
    main()
