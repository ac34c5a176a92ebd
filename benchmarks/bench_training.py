"""Benchmark: steerer training time on the embedded model.

Builds ``--n-triplets`` aligned pirate triplets from the question pool (``data/questions.json``,
all splits) and fixed, hand-written pirate-style responses (no sampling), then times:

- extraction of the training deltas (accumulated at one layer; local at every layer);
- S-PSR-MSE at ``--layer`` (layerwise on D_acc);
- A-PSR-MSE layer by layer on D_loc (all layers at once);
- A-PSR-MSE joint, through the model, started from the layerwise fit (``--joint-steps`` steps).

Prints seconds, steps and span tokens seen per second for each (a layerwise A- step sees each
token at every layer; a joint step runs one forward and backward pass of the model per batch).

    python benchmarks/bench_training.py [--n-triplets 200] [--steps 300] [--joint-steps 20] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from workbench.core.chat import align, encode_response
from workbench.core.models import EMBEDDED_MODEL, load_model
from workbench.data.attributes import data_dir, load_attribute, load_question_splits
from workbench.steering import TrainConfig, make_trainer, span_mse, token_data_from_pairs

RESPONSES = [
    "Arr, matey! That be a fine question. The answer be simple for any sailor worth his salt: think it through, "
    "slow and steady, like a captain plottin' a course by the stars. Aye!",
    "Ahoy! Listen well, ye landlubber. There be more to it than meets the eye, but the heart of it be this: "
    "keep yer wits about ye and ye'll find the treasure. Arr!",
    "Aye, matey, I've sailed the seven seas and seen many a thing. Here be what I know: start small, "
    "work hard like a deckhand, and the wind will fill yer sails.",
    "Arr! A fine thing to ask a pirate. Ye take what ye know, add a pinch o' sea salt, and ye never give up "
    "the ship. That be the pirate way, matey!",
]


def make_pairs(model, n: int):
    attribute = load_attribute("pirate")
    questions = [q for split in load_question_splits(data_dir() / "questions.json").values() for q in split]
    tok = model.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    responses = [encode_response(tok, r) + [end] for r in RESPONSES]
    pairs = []
    for i in range(n):
        q = questions[i % len(questions)]
        instruction = attribute.instructions[(i // len(questions)) % len(attribute.instructions)]
        pairs.append(align(tok, q, instruction, responses[i % len(responses)]))
    return pairs


def report(name: str, seconds: float, steps: int, tokens: int) -> None:
    rate = tokens / seconds if seconds > 0 else float("nan")
    print(f"{name:<28} {seconds:8.1f} s  {steps:5d} steps  {tokens:9d} tokens seen  {rate:10.0f} tokens/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=EMBEDDED_MODEL)
    parser.add_argument("--n-triplets", type=int, default=200)
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--steps", type=int, default=300, help="steps of the layerwise fits")
    parser.add_argument("--joint-steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8, help="sequences per step through the model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (this process only)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = load_model(args.model, device=args.device)
    pairs = make_pairs(model, args.n_triplets)
    labels = 1.0
    span_tokens = sum(p.span_len for p in pairs)
    print(f"model {model.model_id} on {args.device}: {model.n_layers} layers, d_model {model.d_model}; "
          f"{len(pairs)} triplets, {span_tokens} span tokens; torch threads {torch.get_num_threads()}")

    t0 = time.perf_counter()
    acc = token_data_from_pairs(model, pairs, [args.layer], "acc", labels)
    t1 = time.perf_counter()
    loc = token_data_from_pairs(model, pairs, list(range(model.n_layers)), "loc", labels)
    t2 = time.perf_counter()
    report(f"extract D_acc (layer {args.layer})", t1 - t0, 0, span_tokens)
    report("extract D_loc (all layers)", t2 - t1, 0, span_tokens)

    config = TrainConfig(steps=args.steps, patience=0)
    from workbench.steering.layerwise import LayerwisePSRTrainer
    from workbench.steering.steerer import SteererInfo

    def info(scope, layers, training="layerwise"):
        return SteererInfo("psr-mse", scope, training, tuple(layers), 1, model.model_id, model.d_model, model.n_layers)

    s_trainer = LayerwisePSRTrainer(info("single", [args.layer]), acc, config)
    s_psr = s_trainer.run(progress=False)
    report("S-PSR-MSE (layerwise)", s_psr.info.history["seconds"], s_trainer.step, s_trainer.tokens_seen)

    a_trainer = LayerwisePSRTrainer(info("all", range(model.n_layers)), loc, config)
    a_psr = a_trainer.run(progress=False)
    report(f"A-PSR-MSE (layerwise, x{model.n_layers})", a_psr.info.history["seconds"], a_trainer.step,
           a_trainer.tokens_seen)
    del loc

    t3 = time.perf_counter()
    j_trainer = make_trainer("psr-mse", model, labels, layers=None, pairs=pairs, training="joint", init=a_psr,
                             config=TrainConfig(steps=args.joint_steps, batch_size=args.batch, patience=0,
                                                eval_every=max(1, args.joint_steps)), progress=False)
    setup = time.perf_counter() - t3
    joint = j_trainer.run(progress=False)
    report("A-PSR-MSE (joint)", joint.info.history["seconds"], j_trainer.step, j_trainer.tokens_seen)
    print(f"  (joint setup: recording the prompt-steered targets took {setup:.1f} s; the seconds above include "
          f"{j_trainer.step // j_trainer.config.eval_every + 1} validation passes)")
    held_out = pairs[-min(16, len(pairs)):]
    print("all-layer relative MSE on the last triplets (train data; 30 = no steering): "
          f"layerwise {float(span_mse(model, a_psr, held_out, labels).sum()):.2f}, "
          f"joint {float(span_mse(model, joint, held_out, labels).sum()):.2f}")


if __name__ == "__main__":
    main()
