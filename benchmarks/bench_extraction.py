"""Benchmark: Delta_PS extraction throughput against bare Hugging Face forward passes.

For one fixed batch of aligned triplets, in the same run:

- baseline: the bare HF forward pair (base and prompt-steered sequences) with
  ``output_hidden_states=True``, nothing saved;
- extraction with local deltas (steered + base + patched pass, hooks, all layers, saved to disk);
- extraction without local deltas (steered + base pass, saved);
- for reference, extraction with local deltas whose patched pass recomputes the prompt instead of
  reusing the base pass's keys and values there (what extraction did before that reuse).

Prints span tokens per second for each and the ratio to the baseline (goal: >= 0.8 for the
full extraction, which runs three passes to the baseline's two, but no unembedding, no blocks above
the last recorded layer, and a patched pass that starts where the spans start). The baseline runs
the HF model the bridge wraps, whose modules carry the bridge's hook points; on the embedded model
the same pair through a plain copy that was never wrapped is timed too, as a second reference.

    python benchmarks/bench_extraction.py [--model smollm2-135m-instruct] [--batch 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time

import torch

from workbench.activations import extraction as extraction_module
from workbench.activations.deltas import extract_deltas
from workbench.core.chat import align, encode_response
from workbench.core.models import EMBEDDED_MODEL, _load_embedded, load_model
from workbench.core.span import right_pad

QUESTIONS = [
    "What is the capital of France?", "How do I boil an egg?", "Why is the sky blue?", "What is a black hole?",
    "How do plants make their food?", "What should I name my boat?", "How do airplanes stay in the air?",
    "What causes rain?",
]
RESPONSE = (
    "Arr, matey! Ye be askin' a fine question. The answer be simple enough for any sailor: "
    "ye take what ye know, ye add a pinch o' salt from the seven seas, and ye think it through "
    "slowly, like a captain plottin' a course by the stars. Aye, that be the way of it."
)
INSTRUCTION = "You are a pirate. Speak like a pirate: say Arr and matey."


def make_pairs(model, batch: int):
    response = encode_response(model.tokenizer, RESPONSE)
    return [align(model.tokenizer, QUESTIONS[i % len(QUESTIONS)], INSTRUCTION, response) for i in range(batch)]


@torch.no_grad()
def bare_forward_pair(model, pairs, hf=None) -> None:
    """Both sequences through the HF model with hidden states: the one the bridge wraps (its modules
    carry the bridge's hook points), or ``hf`` when given (e.g. a plain copy never wrapped)."""
    hf = model.bridge.original_model if hf is None else hf
    for seqs in ([p.base_ids for p in pairs], [p.steered_ids for p in pairs]):
        ids, mask = right_pad(seqs, model.tokenizer.pad_token_id)
        hf(ids.to(model.device), attention_mask=mask.to(model.device), output_hidden_states=True)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=EMBEDDED_MODEL)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model = load_model(args.model)
    pairs = make_pairs(model, args.batch)
    span_tokens = sum(p.span_len for p in pairs)
    all_tokens = sum(len(p.base_ids) + len(p.steered_ids) for p in pairs)
    print(f"model {model.model_id}: {model.n_layers} layers, batch {args.batch}, {span_tokens} span tokens, "
          f"{all_tokens} tokens per forward pair, torch threads {torch.get_num_threads()}")

    def extraction(local: bool, reuse_prompt: bool = True):
        def run():
            directory = tempfile.mkdtemp(prefix="bench-store-")
            reuse = extraction_module.cached_prefix_ok
            if not reuse_prompt:
                extraction_module.cached_prefix_ok = lambda model: False
            try:
                extract_deltas(model, pairs, directory, batch_size=args.batch, local=local, progress=False)
            finally:
                extraction_module.cached_prefix_ok = reuse
                shutil.rmtree(directory, ignore_errors=True)
        return run

    baseline = timed(lambda: bare_forward_pair(model, pairs), args.repeats)
    plain = None
    if args.model in (EMBEDDED_MODEL, "embedded"):
        unwrapped, _ = _load_embedded(torch.float32)
        unwrapped.eval()
        plain = timed(lambda: bare_forward_pair(model, pairs, unwrapped), args.repeats)
        del unwrapped
    full = timed(extraction(True), args.repeats)
    accumulated_only = timed(extraction(False), args.repeats)
    no_reuse = timed(extraction(True, reuse_prompt=False), args.repeats)
    print(f"{'what':<44}{'seconds':>9}{'span tok/s':>12}{'ratio':>8}" + ("  vs unwrapped HF" if plain else ""))
    for name, seconds in [
        *([("unwrapped HF forward pair (never bridged)", plain)] if plain else []),
        ("bare HF forward pair (hidden states)", baseline),
        ("extraction: acc + local, all layers, saved", full),
        ("extraction: acc only, all layers, saved", accumulated_only),
        ("  (acc + local, prompt recomputed in patch)", no_reuse),
    ]:
        print(f"{name:<44}{seconds:>9.3f}{span_tokens / seconds:>12.1f}{baseline / seconds:>8.2f}"
              + (f"{plain / seconds:>18.2f}" if plain else ""))


if __name__ == "__main__":
    main()
