"""Memory of generating answers: the library's decode loop against the same loop with autograd on
(the baseline, measured in the same run, each in a fresh process).

    python benchmarks/bench_generation_memory.py [--model embedded] [--batch 12] [--new-tokens 48]

Prints peak RSS and what the batch added over the post-load baseline, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

PROBE = Path(__file__).resolve().parent / "generation_memory_probe.py"


def measure(model: str, batch: int, new_tokens: int, with_grad: bool) -> dict:
    cmd = [sys.executable, str(PROBE), model, str(batch), str(new_tokens)] + (["--with-grad"] if with_grad else [])
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded", help='"embedded" or "tiny:<d_model>:<n_layers>"')
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--new-tokens", type=int, default=48)
    args = parser.parse_args()
    plain = measure(args.model, args.batch, args.new_tokens, with_grad=False)
    graph = measure(args.model, args.batch, args.new_tokens, with_grad=True)
    print(f"{args.model}: {args.batch} answers x {args.new_tokens} tokens, weights {plain['weights_mb']:.0f} MB")
    for name, r in (("no_grad (library)", plain), ("grad on (baseline)", graph)):
        print(f"  {name:20s} peak RSS {r['peak_rss_mb']:8.0f} MB, added by the batch {r['added_mb']:8.0f} MB")
    print(f"  added memory, baseline / library: {graph['added_mb'] / max(plain['added_mb'], 1):.1f}x; "
          f"peak: {graph['peak_rss_mb'] / plain['peak_rss_mb']:.1f}x")


if __name__ == "__main__":
    main()
