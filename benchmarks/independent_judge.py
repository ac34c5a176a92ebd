"""Does the pirate TA@C80 ordering depend on who judges coherence? SmolLM2-135M-Instruct is steered;
the coherence judge's log-likelihood comes from SmolLM2 itself (the default: a model rating its own
steered text) or from Gemma-3-270M, an independent model of another family.

Both comparisons use the same triplets, steerers, questions, seeds and attribute judge (the notebook
size: ``ExperimentConfig.notebook()``); only the coherence judge differs, so each method's strength
search runs again against it. Paired bootstrap intervals of every difference between methods say
which orderings hold (a method beats another only where the interval excludes zero).

    python benchmarks/independent_judge.py --run runs/notebooks/pirate --out reports/independent-judge

``--run`` is a run directory of notebook 6 (or the demo at notebook size); its triplets, deltas and
steerers are read, never changed (the evaluations go under ``--out``). About 30-60 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import time
from pathlib import Path

import torch

from workbench.app.experiment import ExperimentConfig, prepare_data, train_methods
from workbench.core.likelihood import logprob_fn
from workbench.core.models import GEMMA_MODEL, load_model
from workbench.evaluation.comparison import compare_methods, standard_methods
from workbench.judges.offline import CoherenceJudge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a notebook-size pirate run directory (read only)")
    parser.add_argument("--out", type=Path, default=Path("reports/independent-judge"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    run = args.out / "run"  # a copy: prepare_data records what it read in the run directory
    for part in ("triplets", "heldout"):  # the deltas and steerers are made again if absent (cached by content)
        if not (run / part).exists():
            shutil.copytree(args.run / part, run / part)
    config = ExperimentConfig.notebook()
    smol = load_model()
    judges = {"smollm2 (self)": smol, "gemma-3-270m": load_model(GEMMA_MODEL)}
    data = prepare_data(smol, "pirate", run, config, progress=False)
    steerers = train_methods(smol, data, config, run / "steerers", progress=False)
    methods = standard_methods(steerers, plus_prompt=config.plus_prompt)
    names = [m.name for m in methods if m.name != "no steering"]
    report = {"kept_triplets": len(data.pairs), "heldout": len(data.heldout_pairs), "judges": {}}
    for label, judge_model in judges.items():
        start = time.perf_counter()
        judge = CoherenceJudge(logprob_fn=logprob_fn(judge_model))
        comparison = compare_methods(smol, data.attribute, methods, config.evaluation, coherence_judge=judge,
                                     cache_dir=args.out / f"evaluations-{judge_model.model_id}", progress=False)
        c80 = comparison.results[comparison.results["target"] == "C80"].set_index("method")
        differences = comparison.differences(contrasts=list(itertools.combinations(names, 2)))
        d80 = differences[differences["target"] == "C80"]
        slug = judge_model.model_id
        comparison.results.to_csv(args.out / f"results-{slug}.csv", index=False)
        differences.to_csv(args.out / f"differences-{slug}.csv", index=False)
        report["judges"][label] = {
            "seconds": round(time.perf_counter() - start),
            "prompt_coherence": comparison.meta["targets"]["Cp"],
            "ta_c80": {m: [round(float(c80.loc[m, k]), 1) for k in ("attribute", "attribute_lo", "attribute_hi")]
                       + [float(c80.loc[m, "alpha"]) if c80.loc[m, "alpha"] == c80.loc[m, "alpha"] else None,
                          int(c80.loc[m, "n"])] for m in names},
            "differences_c80": [[r.a, r.b, round(float(r.difference), 1), round(float(r.lo), 1), round(float(r.hi), 1),
                                 int(r.n), r.verdict] for r in d80.itertuples()],
        }
        print(f"== coherence judged by {label} ({report['judges'][label]['seconds']} s), "
              f"C_p = {comparison.meta['targets']['Cp']:.1f}")
        for m in names:
            att, lo, hi, alpha, n = report["judges"][label]["ta_c80"][m]
            print(f"  {m:14s} TA@C80 {att:5.1f} [{lo:5.1f}, {hi:5.1f}]  alpha {alpha}  n={n}")
        for a, b, diff, lo, hi, n, verdict in report["judges"][label]["differences_c80"]:
            print(f"  {a:>14s} - {b:14s} {diff:+6.1f} [{lo:+6.1f}, {hi:+6.1f}] n={n} {verdict}")
    (args.out / "independent_judge.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
