"""Peak memory of generating one batch, measured in a fresh process (shared by the regression test
in tests/core/test_generation_memory.py and by bench_generation_memory.py).

Usage: python generation_memory_probe.py MODEL BATCH NEW_TOKENS [--with-grad]
MODEL is "tiny:<d_model>:<n_layers>" (random Llama) or "embedded". Prints one JSON line:
weights_mb, rss_after_load_mb, peak_rss_mb, added_mb (peak over the post-warm-up baseline).
``--with-grad`` runs the same decode loop with autograd on, as generation did before it ran under
``torch.no_grad``: the measurement of what the graph costs.
"""

from __future__ import annotations

import json
import sys

import torch

from proc_memory import status_mb  # benchmarks/ is on sys.path when a script here runs


def _rss_mb() -> float:
    return status_mb("VmRSS")


def _peak_mb() -> float:
    # VmHWM belongs to this process's own address space. getrusage's ru_maxrss does not: Linux carries
    # the high-water mark across fork and exec, so a probe started from a 1.3 GB pytest process would
    # report 1.3 GB whatever it did.
    return status_mb("VmHWM")


def _reset_peak() -> None:
    """Start the high-water mark again from the current RSS (Linux >= 4.0), where allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def main(argv: list[str]) -> None:
    from workbench.core import generation
    from workbench.core.chat import prompt_ids
    from workbench.core.generation import SamplingConfig
    from workbench.core.models import load_model, wrap_model
    from workbench.core.tiny import build_tiny_model

    spec, batch, new_tokens = argv[0], int(argv[1]), int(argv[2])
    with_grad = "--with-grad" in argv
    torch.set_num_threads(1)
    if spec == "embedded":
        model = load_model()
    else:
        _, d_model, n_layers = spec.split(":")
        hf, tok = build_tiny_model(n_layers=int(n_layers), d_model=int(d_model))
        model = wrap_model(hf, tok, model_id=spec, bridge_name="tiny-random-llama")
    weights_mb = sum(p.numel() * p.element_size() for p in model.bridge.parameters()) / 2**20
    questions = [f"Tell me about topic number {i}, please." for i in range(batch)]
    prompts = [prompt_ids(model.tokenizer, q)[0] for q in questions]
    config = SamplingConfig(max_new_tokens=new_tokens, temperature=0, stop_at_end_of_turn=False)
    run = generation._generate_batch.__wrapped__ if with_grad else generation._generate_batch
    run(model, prompts[:1], SamplingConfig(max_new_tokens=2, temperature=0), None, (), None, False)  # warm-up
    base = _rss_mb()
    _reset_peak()
    with torch.enable_grad():  # a user's notebook runs in grad mode
        run(model, prompts, config, None, (), None, False)
    peak = _peak_mb()
    print(json.dumps({"weights_mb": round(weights_mb, 1), "rss_after_load_mb": round(base, 1),
                      "peak_rss_mb": round(peak, 1), "added_mb": round(peak - base, 1), "with_grad": with_grad}))


if __name__ == "__main__":
    main(sys.argv[1:])
