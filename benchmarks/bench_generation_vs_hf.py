"""Benchmark: steered batched generation in the workbench against bare Hugging Face ``generate``.

On the embedded model, the same prompts (one batch of ``--batch``), greedy, exactly
``--new-tokens`` new tokens per row (no early stop on either side), each of these in a fresh process:

- ``hf``: ``generate`` of the plain Hugging Face model loaded from the same weights (never wrapped
  by a TransformerBridge, whose hook points sit inside the model it wraps);
- ``plain``: :func:`workbench.core.generation.generate_batch` without steering;
- ``apsr``: the same with an A-PSR steerer (random rank-1 PSR at every layer, seeded) at alpha 1.

The one-process throughput measurement adds ``apsr-bridge``: ``apsr`` with every forward through the
bridge's wrapped modules (``WORKBENCH_THROUGH_BRIDGE=1``, the decode path before
:mod:`workbench.core.native_path`).

Each process loads the model, warms up with one short generation, reads its resident memory
(``VmRSS``), resets the high-water mark (``/proc/self/clear_refs``), then times ``--repeats``
generations (median) and reads its peak (``VmHWM``: what the process as a whole needed, and the
part the generation added on top of the loaded model). Prints the ratios against ``hf``:
peak memory (goal: A-PSR within 1.5x) and throughput in generated tokens per second (goal: A-PSR
at least 0.9x). ``plain`` also checks that the workbench's greedy tokens equal Hugging Face's.
Throughput is measured again in one more process holding both models, in ``--rounds``
interleaved rounds (hf, plain, apsr, hf, ...), which a machine shared with other jobs disturbs
less than three processes run one after the other.

    python benchmarks/bench_generation_vs_hf.py [--batch 8] [--new-tokens 32] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from proc_memory import status_mb  # benchmarks/ is on sys.path when a script here runs

QUESTIONS = [
    "What is the capital of France?", "How do plants make food?", "Why is the sky blue?",
    "Tell me a short story about a cat.", "How does a bicycle stay upright?", "What is a prime number?",
    "Give me three tips for sleeping better.", "Explain what a computer program is.",
    "What causes the seasons?", "How do bees make honey?", "What is the tallest mountain?",
    "Why do we dream?", "How does rain form?", "What is gravity?", "Name a famous painter.", "What is DNA?",
]


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def random_apsr(model, seed: int = 0):
    """A rank-1 PSR at every layer with random probe and direction (seeded): A-PSR's cost, not its skill."""
    import torch

    from workbench.steering.steerer import SteererInfo, make_steerer

    g = torch.Generator().manual_seed(seed)
    n, d = model.n_layers, model.d_model
    info = SteererInfo("psr-mse", "all", "layerwise", tuple(range(n)), 1, model.model_id, d, n)
    z = torch.randn(n, 1, d, generator=g) * 0.05
    w = torch.randn(n, 1, d, generator=g) / d
    b = torch.full((n, 1), 0.5)
    return make_steerer(info, z, w, b)


def run_one(args: argparse.Namespace) -> dict:
    import torch

    from workbench.core.chat import prompt_ids
    from workbench.core.generation import SamplingConfig, generate_batch, left_pad
    from workbench.core.models import _load_embedded, load_model

    torch.set_num_threads(args.threads)
    if args.mode == "hf":  # the plain Hugging Face model from the same weights, never wrapped by a bridge
        hf, tok = _load_embedded(torch.float32)
        hf.eval()
    else:
        model = load_model()
        tok = model.tokenizer
    encoded = [prompt_ids(tok, QUESTIONS[i % len(QUESTIONS)]) for i in range(args.batch)]
    prompts, header_lens = [p for p, _ in encoded], [h for _, h in encoded]
    config = SamplingConfig(max_new_tokens=args.new_tokens, temperature=0, stop_at_end_of_turn=False)
    if args.mode == "hf":
        ids, mask = left_pad(prompts, tok.pad_token_id)

        def generate(n_new: int):
            with torch.no_grad():
                out = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n_new, min_new_tokens=n_new,
                                  do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=tok.pad_token_id)
            return out[:, ids.shape[1]:].tolist()
    else:
        steerers = [(random_apsr(model), 1.0)] if args.mode == "apsr" else []

        def generate(n_new: int):
            cfg = config if n_new == args.new_tokens else SamplingConfig(max_new_tokens=n_new, temperature=0,
                                                                         stop_at_end_of_turn=False)
            return generate_batch(model, prompts, cfg, steerers=steerers, header_lens=header_lens)

    generate(2)  # warm-up
    loaded = status_mb("VmRSS")
    reset = _reset_peak()
    times, tokens = [], None
    for _ in range(args.repeats):
        start = time.perf_counter()
        tokens = generate(args.new_tokens)
        times.append(time.perf_counter() - start)
    peak = status_mb("VmHWM")
    seconds = statistics.median(times)
    return {"mode": args.mode, "seconds": seconds, "times": times, "tokens_per_s": args.batch * args.new_tokens / seconds,
            "peak_rss_mb": peak, "rss_loaded_mb": loaded, "added_mb": peak - loaded if reset else float("nan"),
            "tokens": tokens}


def speed(args: argparse.Namespace) -> dict:
    """In one process: the plain HF model and the workbench's, timed in interleaved rounds (hf, plain,
    apsr, hf, ...), so that a machine whose load drifts slows every mode alike. Median per mode."""
    import torch

    from workbench.core.chat import prompt_ids
    from workbench.core.generation import SamplingConfig, generate_batch, left_pad
    from workbench.core.models import _load_embedded, load_model

    torch.set_num_threads(args.threads)
    hf, tok = _load_embedded(torch.float32)
    hf.eval()
    model = load_model()
    encoded = [prompt_ids(tok, QUESTIONS[i % len(QUESTIONS)]) for i in range(args.batch)]
    prompts, header_lens = [p for p, _ in encoded], [h for _, h in encoded]
    ids, mask = left_pad(prompts, tok.pad_token_id)
    config = SamplingConfig(max_new_tokens=args.new_tokens, temperature=0, stop_at_end_of_turn=False)
    apsr = [(random_apsr(model), 1.0)]

    def run_hf():
        with torch.no_grad():
            hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                        do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=tok.pad_token_id)

    def through_bridge():  # the earlier decode path: every forward through the bridge's wrapped modules
        os.environ["WORKBENCH_THROUGH_BRIDGE"] = "1"
        try:
            generate_batch(model, prompts, config, steerers=apsr, header_lens=header_lens)
        finally:
            os.environ.pop("WORKBENCH_THROUGH_BRIDGE")

    modes = {"hf": run_hf, "plain": lambda: generate_batch(model, prompts, config),
             "apsr": lambda: generate_batch(model, prompts, config, steerers=apsr, header_lens=header_lens),
             "apsr-bridge": through_bridge}
    times: dict[str, list[float]] = {k: [] for k in modes}
    for fn in modes.values():
        fn()  # warm-up
    for _ in range(args.rounds):
        for name, fn in modes.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: {"times": t, "tokens_per_s": args.batch * args.new_tokens / statistics.median(t)} for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--modes", default="hf,plain,apsr")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the throughput measurement")
    parser.add_argument("--mode", default=None, help=argparse.SUPPRESS)  # in the child
    args = parser.parse_args()
    if args.mode == "speed":
        print(json.dumps(speed(args)))
        return
    if args.mode is not None:
        print(json.dumps(run_one(args)))
        return
    rows = {}
    print(f"embedded model, batch {args.batch}, {args.new_tokens} new tokens per row, greedy, median of "
          f"{args.repeats}; {args.threads} thread(s); each mode in a fresh process", flush=True)
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--mode", mode, "--batch", str(args.batch), "--new-tokens", str(args.new_tokens),
               "--repeats", str(args.repeats), "--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = rows[mode] = json.loads(out.strip().splitlines()[-1])
        print(f"  {mode:<6} {r['tokens_per_s']:7.1f} tokens/s ({', '.join(f'{t:.2f}' for t in r['times'])} s)  "
              f"peak RSS {r['peak_rss_mb']:7.0f} MB  (loaded {r['rss_loaded_mb']:.0f} MB, generation added {r['added_mb']:.0f} MB)",
              flush=True)
    cmd = [sys.executable, __file__, "--mode", "speed", "--batch", str(args.batch), "--new-tokens", str(args.new_tokens),
           "--rounds", str(args.rounds), "--threads", str(args.threads)]
    fast = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    print(f"throughput, one process, {args.rounds} interleaved rounds (median):")
    for mode, r in fast.items():
        print(f"  {mode:<11} {r['tokens_per_s']:7.1f} tokens/s ({', '.join(f'{t:.2f}' for t in r['times'])} s)"
              + ("" if mode == "hf" else f"  {r['tokens_per_s'] / fast['hf']['tokens_per_s']:.2f}x hf"
                 + (" (goal >= 0.9)" if mode == "apsr" else "")))
    hf = rows.get("hf")
    if hf is None:
        return
    if "plain" in rows:
        same = sum(a == b for a, b in zip(rows["plain"]["tokens"], hf["tokens"]))
        print(f"  unsteered workbench tokens equal to HF generate's: {same}/{len(hf['tokens'])} rows")
    for mode in ("plain", "apsr"):
        if mode in rows:
            r = rows[mode]
            print(f"  {mode} / hf: peak memory {r['peak_rss_mb'] / hf['peak_rss_mb']:.2f}x"
                  f"{' (goal <= 1.5)' if mode == 'apsr' else ''}, added memory "
                  f"{r['added_mb'] / max(hf['added_mb'], 1):.2f}x, throughput {r['tokens_per_s'] / hf['tokens_per_s']:.2f}x"
                  f"{' (goal >= 0.9)' if mode == 'apsr' else ''}")


if __name__ == "__main__":
    main()
