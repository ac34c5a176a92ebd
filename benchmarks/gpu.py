"""GPU benchmark: the workbench against bare Hugging Face on random-init 1B and 8B Llama models.

Runs only where CUDA is present (otherwise it says so and exits with status 0). For each size, in
bfloat16 on one device (or ``--device-map auto`` across the machine's GPUs):

- extraction throughput (accumulated + local deltas, all layers, kept in memory) against bare HF
  forward passes of the same base and prompt-steered sequences with ``output_hidden_states=True``;
- steered greedy generation (an A-PSR-shaped steerer at every layer) against HF ``generate``
  on the same prompts and batch;
- A-PSR training throughput (span tokens per second, layer by layer from the deltas).

Prints tokens/s and the ratios. Random weights: the numbers are about speed, not text.

    python benchmarks/gpu.py [--sizes 1b,8b] [--batch 8] [--tokens 128] [--device-map auto]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

SIZES = {  # Llama-3.2-1B- and Llama-3-8B-shaped, with a small vocabulary (the tokenizer is local)
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2),  # for --smoke: the code path on the CPU, in seconds
}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn, repeats: int = 3) -> float:
    fn()
    _sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync()
    return (time.perf_counter() - start) / repeats


def build(size: str, device_map: str | None, smoke: bool = False):
    from transformers import LlamaConfig, LlamaForCausalLM

    from workbench.core.families import build_family_tokenizer
    from workbench.core.models import wrap_model
    from workbench.core.placement import dispatch

    tok = build_family_tokenizer("tiny-random-llama3")
    config = LlamaConfig(vocab_size=len(tok), max_position_embeddings=4096, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **SIZES[size])
    with torch.device("cuda" if device_map is None and not smoke else "cpu"):
        hf = LlamaForCausalLM._from_config(config, torch_dtype=torch.bfloat16)
    hf.config.architectures = ["LlamaForCausalLM"]
    if device_map is not None:
        hf = dispatch(hf, torch.bfloat16, device_map, None)
    return wrap_model(hf.eval(), tok, model_id=f"random-llama-{size}", bridge_name="tiny-random-llama3")


def bench(size: str, args: argparse.Namespace) -> None:
    from workbench.activations.extraction import extract_batch
    from workbench.activations.plan import synthetic_pairs
    from workbench.core.chat import prompt_ids
    from workbench.core.generation import SamplingConfig, generate_batch, left_pad
    from workbench.core.span import right_pad
    from workbench.steering import TrainConfig, train_steerer

    model = build(size, args.device_map, args.smoke)
    hf = model.bridge.original_model
    pairs = synthetic_pairs(model, args.batch, args.tokens)
    span_tokens = sum(p.span_len for p in pairs)
    device = model.device

    def bare_pair():
        with torch.no_grad():
            for seqs in ([p.base_ids for p in pairs], [p.steered_ids for p in pairs]):
                ids, mask = right_pad(seqs, model.tokenizer.pad_token_id)
                hf(ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)

    bare = _timed(bare_pair)
    full = _timed(lambda: extract_batch(model, pairs))
    acc = _timed(lambda: extract_batch(model, pairs, local=False))
    print(f"[{size}] extraction: bare HF pair {span_tokens / bare:,.0f} span tok/s; acc+loc {span_tokens / full:,.0f} "
          f"(ratio {bare / full:.2f}); acc only {span_tokens / acc:,.0f} (ratio {bare / acc:.2f})", flush=True)

    steerer = train_steerer("psr-mse", model, 1.0, layers=None, pairs=pairs,
                            config=TrainConfig(steps=args.train_steps, val_fraction=0.0), progress=False)
    start = time.perf_counter()
    train_steerer("psr-mse", model, 1.0, layers=None, pairs=pairs,
                  config=TrainConfig(steps=args.train_steps, val_fraction=0.0), progress=False)
    _sync()
    train_s = time.perf_counter() - start
    print(f"[{size}] A-PSR training (layer by layer, {args.train_steps} steps, incl. extraction): "
          f"{span_tokens * args.train_steps / train_s:,.0f} span tok-steps/s", flush=True)

    built = [prompt_ids(model.tokenizer, f"Question {i}: why is the sky blue?") for i in range(args.batch)]
    prompts, heads = [p for p, _ in built], [h for _, h in built]
    config = SamplingConfig(max_new_tokens=args.new_tokens, temperature=0, stop_at_end_of_turn=False)
    ids, mask = left_pad(prompts, model.tokenizer.pad_token_id)

    def hf_generate():
        with torch.no_grad():
            hf.generate(ids.to(device), attention_mask=mask.to(device), max_new_tokens=args.new_tokens,
                        min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=model.tokenizer.pad_token_id)

    base_gen = _timed(hf_generate, repeats=2)
    steered_gen = _timed(lambda: generate_batch(model, prompts, config, steerers=[(steerer, 1.0)], header_lens=heads),
                         repeats=2)
    n = args.batch * args.new_tokens
    print(f"[{size}] generation at batch {args.batch}: HF generate {n / base_gen:,.0f} tok/s; A-PSR-steered "
          f"{n / steered_gen:,.0f} tok/s (ratio {base_gen / steered_gen:.2f}); peak GPU memory "
          f"{torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0:.1f} GiB", flush=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1b,8b")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128, help="response tokens per triplet")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=50)
    parser.add_argument("--device-map", default=None, help="e.g. auto: split across this machine's GPUs")
    parser.add_argument("--smoke", action="store_true", help="run the 'tiny' size on the CPU (checks the script)")
    args = parser.parse_args()
    if args.smoke:
        for name in ("batch", "tokens", "new_tokens", "train_steps"):
            setattr(args, name, min(getattr(args, name), 4))
        bench("tiny", args)
        return 0
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU is present here; nothing to measure (run it on a GPU machine)")
        return 0
    print(f"GPU: {torch.cuda.get_device_name()} x {torch.cuda.device_count()}, torch {torch.__version__}")
    if not torch.cuda.is_bf16_supported():
        print("this GPU has no bfloat16; the benchmark needs it")
        return 0
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        if size not in SIZES:
            raise SystemExit(f"unknown size {size!r}; expected one of {sorted(SIZES)}")
        bench(size, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
