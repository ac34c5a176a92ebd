"""Where the time of an equal-coherence comparison goes: generation, the attribute judge, the
coherence judge (offline heuristics + the model's log-likelihood) and the search's bookkeeping.

Runs :func:`workbench.evaluation.comparison.compare_methods` on the embedded model at a small size
with stored (or freshly fitted) steerers, wrapping each stage in a timer, and prints the split.
Usage: ``python benchmarks/bench_comparison.py [--steerers reports/demo/steerers] [--n 8]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from workbench.core.models import load_model
from workbench.evaluation import comparison as comparison_module
from workbench.evaluation.comparison import EvalConfig, compare_methods
from workbench.steering import Steerer

TIMES: dict[str, float] = {}
CPU: dict[str, float] = {}
CALLS: dict[str, int] = {}


def timed(name, fn):
    """``fn`` with its wall and CPU seconds added up under ``name`` (CPU time is what a stage
    costs when other jobs share the machine)."""
    def wrapper(*args, **kwargs):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[name] = TIMES.get(name, 0.0) + time.perf_counter() - t0
            CPU[name] = CPU.get(name, 0.0) + time.process_time() - c0
            CALLS[name] = CALLS.get(name, 0) + 1
    return wrapper


class Timed:
    """A judge whose ``score_batch`` is timed; everything else is the judge's own."""

    def __init__(self, judge, name):
        self._judge, self._score = judge, timed(name, judge.score_batch)

    def score_batch(self, questions, responses):
        return self._score(questions, responses)

    def __getattr__(self, attr):
        return getattr(self._judge, attr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steerers", default="reports/demo/steerers", help="a folder of saved steerers (A-PSR and Const-DiM are used)")
    parser.add_argument("--n", type=int, default=8, help="validation and test questions")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    model = load_model()
    steerers = {p.name.split("-")[0] + "-" + p.name.split("-")[1]: Steerer.load(p, model)
                for p in sorted(Path(args.steerers).glob("*.safetensors")) if p.name.startswith(("a-psr", "const-dim"))}
    comparison_module.generate_answers = timed("generation", comparison_module.generate_answers)
    config = EvalConfig(n_validation=args.n, n_test=args.n, max_new_tokens=args.max_new_tokens, batch_size=args.n)
    evaluator_init = comparison_module.Evaluator.__init__

    def init(self, *a, **k):
        evaluator_init(self, *a, **k)
        self.attribute_judge = Timed(self.attribute_judge, "attribute judge")
        self.coherence_judge = Timed(self.coherence_judge, "coherence judge")

    comparison_module.Evaluator.__init__ = init
    t0, c0 = time.perf_counter(), time.process_time()
    result = compare_methods(model, "pirate", steerers, config, progress=False)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{len(steerers)} steerers {sorted(steerers)}, n={args.n}, {args.max_new_tokens} tokens: "
          f"total {total:.1f} s wall, {cpu:.1f} s CPU; {len(result.sweep)} evaluations")
    for name in ("generation", "attribute judge", "coherence judge"):
        print(f"  {name:16s} {TIMES.get(name, 0):7.1f} s wall {CPU.get(name, 0):7.1f} s CPU ({CALLS.get(name, 0)} calls, "
              f"{100 * CPU.get(name, 0) / cpu:.0f} % of CPU)")
    rest, rest_cpu = total - sum(TIMES.values()), cpu - sum(CPU.values())
    print(f"  {'other':16s} {rest:7.1f} s wall {rest_cpu:7.1f} s CPU ({100 * rest_cpu / cpu:.0f} % of CPU)")
    print(result.table().round(2).to_string(index=False))


if __name__ == "__main__":
    main()
