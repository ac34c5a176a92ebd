"""Benchmark: peak memory and time of steerer training on stored deltas as the number of triplets grows.

For each size, local deltas are extracted (in this process, not measured) from a random-init Llama
(``--d-model``, ``--layers``) into a float16 store, and an A-PSR-MSE fit on every layer then runs in
a fresh process that reads its own peak RSS (``VmHWM`` in /proc/self/status: ``getrusage`` carries
the parent's high-water mark across fork and exec). Training runs ``--steps`` full-batch steps
(every training sequence each step) with a validation every ``--eval-every`` steps.

``--path stream`` (default) reads the store shard by shard (:class:`workbench.steering.StoreTokens`,
what ``train_steerer`` does above ``IN_MEMORY_LIMIT_BYTES``); ``--path memory`` loads all tokens
first (:func:`workbench.steering.token_data_from_store`), the old path, for comparison;
``--path both`` runs both. Goals for streaming: peak memory at 1,000 triplets within 1.2x of that
at 100, and time linear in the number of triplets (about 10x).

    python benchmarks/bench_training_scale.py [--sizes 100,1000] [--path both] [--d-model 256]
        [--layers 8] [--tokens 64] [--steps 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from proc_memory import status_mb  # benchmarks/ is on sys.path when a script here runs


def train_one(args: argparse.Namespace) -> dict:
    """In the child: train on the store at ``args.store``; report time and this process's peak RSS."""
    import torch

    from workbench.activations.store import DeltaStore
    from workbench.steering import StoreTokens, TrainConfig, token_data_from_store
    from workbench.steering.layerwise import LayerwisePSRTrainer
    from workbench.steering.steerer import SteererInfo

    torch.set_num_threads(args.threads)
    store = DeltaStore(args.store)
    layers = store.layers
    rss_before = status_mb("VmRSS")
    start = time.perf_counter()
    if args.path == "stream":
        data = StoreTokens(store, layers, "loc", 1.0)
    else:
        data = token_data_from_store(store, layers, "loc", 1.0)
    info = SteererInfo("psr-mse", "all", "layerwise", tuple(layers), 1, store.model_id, store.d_model, len(layers))
    config = TrainConfig(steps=args.steps, patience=0, eval_every=args.eval_every)
    trainer = LayerwisePSRTrainer(info, data, config)
    steerer = trainer.run(progress=False)
    seconds = time.perf_counter() - start
    return {"n": args.n, "path": args.path, "tokens": store.n_tokens, "seconds": seconds,
            "train_seconds": steerer.info.history["seconds"], "peak_rss_mb": status_mb("VmHWM"),
            "rss_before_mb": rss_before, "best_val_loss": steerer.info.history["best_val_loss"]}


def extract(n: int, args: argparse.Namespace, directory: Path) -> tuple[int, float]:
    """Extract ``n`` synthetic triplets' base activations and local deltas into ``directory``."""
    import torch

    from workbench.activations.deltas import extract_deltas
    from workbench.activations.plan import synthetic_pairs
    from workbench.core.models import wrap_model
    from workbench.core.tiny import build_tiny_model

    torch.set_num_threads(args.threads)
    hf, tok = build_tiny_model(n_layers=args.layers, d_model=args.d_model)
    model = wrap_model(hf, tok, model_id=f"tiny-llama-{args.d_model}x{args.layers}", bridge_name="tiny-random-llama")
    pairs = synthetic_pairs(model, n, args.tokens)
    start = time.perf_counter()
    store = extract_deltas(model, pairs, directory, kinds=("base", "loc"), batch_size=8, progress=False)
    return store.n_tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--path", choices=("stream", "memory", "both"), default="stream")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64, help="response tokens per triplet")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--store", default=None, help=argparse.SUPPRESS)  # in the child
    parser.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.store is not None:
        print(json.dumps(train_one(args)))
        return
    paths = ("stream", "memory") if args.path == "both" else (args.path,)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: dict[str, list[dict]] = {p: [] for p in paths}
    print(f"random-init Llama, d_model {args.d_model}, {args.layers} layers; {args.tokens}-token responses; "
          f"A-PSR-MSE on local deltas at every layer, {args.steps} full-batch steps; {args.threads} thread(s)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            directory = Path(tmp) / f"store-{n}"
            tokens, seconds = extract(n, args, directory)
            size = sum(p.stat().st_size for p in directory.glob("shard-*")) / 1e6
            print(f"{n:>6} triplets: {tokens} span tokens, store {size:.0f} MB (extracted in {seconds:.0f} s)", flush=True)
            for path in paths:
                cmd = [sys.executable, __file__, "--store", str(directory), "--n", str(n), "--path", path,
                       "--steps", str(args.steps), "--eval-every", str(args.eval_every), "--threads", str(args.threads)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                rows[path].append(r)
                print(f"    {path:<6}  {r['seconds']:7.1f} s ({r['train_seconds']:.1f} s in steps)  peak RSS "
                      f"{r['peak_rss_mb']:7.1f} MB (before loading data {r['rss_before_mb']:.0f} MB)  "
                      f"best val loss {r['best_val_loss']:.3f}", flush=True)
            shutil.rmtree(directory)
    for path, rs in rows.items():
        if len(rs) >= 2:
            first, last = rs[0], rs[-1]
            print(f"{path}: memory ratio {last['n']}/{first['n']} triplets = {last['peak_rss_mb'] / first['peak_rss_mb']:.2f} "
                  f"(goal <= 1.2 for stream); time ratio {last['seconds'] / first['seconds']:.1f} "
                  f"(linear: {last['n'] / first['n']:.0f})")


if __name__ == "__main__":
    main()
