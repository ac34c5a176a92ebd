"""Instruction following (IFEval-style): can PSR carry a verifiable instruction? (DESIGN.md section 5)

Finding 5 of the paper: rank-1 PSR alone does not reach the prompt on composite format
instructions, stacking PSR on the prompt adds points, higher rank is the open direction. This
module measures that on the project's own instruction set (:mod:`workbench.data.instructions`).
A verifiable instruction is an attribute whose judge scores 100 or 0
(:class:`workbench.judges.ifeval.IFEvalJudge`), so the pipeline is the one every attribute uses;
per instruction (:func:`run_instruction_following`):

1. training triplets by :func:`workbench.data.triplets.build_triplets`: ``y'`` sampled from ``x'``
   (the instruction in the system message) on ``n_train`` questions of the ``train`` split; a
   sample is kept when it follows the instruction (strict) and the offline coherence judge (text
   heuristics) scores it >= ``coherence_threshold``; soft label 1.0;
2. a rank-1 PSR and a rank-r PSR trained on the kept triplets with
   :func:`workbench.steering.api.train_steerer` (``steer_method`` ``"psr-mse"`` or ``"psr-ll"``);
3. greedy answers to ``n_test`` questions of the ``test`` split, generated and judged by the
   comparison's :class:`workbench.evaluation.comparison.Evaluator` for each method: ``"no steering"``
   (``x``; one set of answers shared by every instruction), ``"prompt"`` (``x'``), ``"PSR"`` and
   ``"rank-r PSR"`` (``x`` steered), ``"PSR + prompt"`` (``x'`` steered; also
   ``"rank-r PSR + prompt"`` on request). Strict accuracy is the mean judge score / 100, with a
   bootstrap confidence interval (:func:`workbench.evaluation.strength.bootstrap_ci`); loose
   accuracy uses IFEval's loose check.

The strength ``alpha`` of the steered methods is fixed (``alpha=1.0``, the default: the soft
label of every kept triplet, i.e. the strength the steerer was trained to imitate the prompt at);
or, given a list (``alpha=(0.5, 1, 2)``), the one with the best strict accuracy on ``n_val``
``validation`` questions (ties: the one closest to 1, then the larger); or, given
``coherence_target`` (a number or ``"prompt"``), found on the validation questions by the
equal-coherence search of :mod:`workbench.evaluation.comparison`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from workbench.core.chat import AlignedPair
from workbench.core.checks import is_number
from workbench.core.fingerprint import fingerprint
from workbench.core.generation import SamplingConfig
from workbench.core.models import LoadedModel
from workbench.data.instructions import (
    Instruction,
    TrainingSamples,
    as_instruction,
    check,
    check_loose,
    default_instructions,
    get_instruction,
    instruction_attribute,
    instruction_questions,
    load_instructions,
    sample_training_pairs,
)
from workbench.evaluation.comparison import EvalConfig, Evaluator, Method
from workbench.evaluation.strength import bootstrap_ci
from workbench.judges.base import Judge
from workbench.judges.offline import CoherenceJudge
from workbench.steering.alpha import check_alpha
from workbench.steering.api import train_steerer
from workbench.steering.train import TrainConfig

__all__ = [
    "DEFAULT_METHODS", "METHODS", "RESPONSE_COLUMNS", "SUMMARY_COLUMNS", "SWEEP_COLUMNS", "Instruction", "InstructionRun",
    "TrainingSamples", "check", "check_loose", "default_instructions", "evaluate_instruction_following",
    "get_instruction", "load_instructions", "run_instruction_following", "sample_training_pairs", "score_responses",
    "train_instruction_steerer",
]

METHODS: tuple[str, ...] = ("no steering", "prompt", "PSR", "rank-r PSR", "PSR + prompt", "rank-r PSR + prompt")
DEFAULT_METHODS: tuple[str, ...] = METHODS[:5]
SUMMARY_COLUMNS = [
    "instruction", "method", "n", "strict_accuracy", "ci_lo", "ci_hi", "alpha", "seed", "loose_accuracy",
    "coherence", "steerer", "rank", "layers", "n_train", "train_pass_rate", "seconds", "note",
]
SWEEP_COLUMNS = ["instruction", "method", "alpha", "val_strict_accuracy", "val_coherence", "n"]
RESPONSE_COLUMNS = ["instruction", "method", "alpha", "question", "response", "strict", "loose", "coherence"]
# The steered methods: the rank of their steerer (1, or the run's rank r) and whether the prompt is on.
_STEERED = {"PSR": (1, False), "rank-r PSR": ("r", False), "PSR + prompt": (1, True), "rank-r PSR + prompt": ("r", True)}


# --------------------------------------------------------------------------- the steerers


def train_instruction_steerer(
    model: LoadedModel,
    samples: TrainingSamples | Sequence[AlignedPair],
    *,
    method: str = "psr-mse",
    layers: int | Sequence[int] | None = 15,
    rank: int = 1,
    config: TrainConfig | None = None,
    progress: bool = True,
):
    """Train a PSR steerer on kept triplets (soft label 1.0 each) with :func:`~workbench.steering.api.train_steerer`.

    ``method`` ``"psr-mse"`` (an int ``layers``: S-PSR on the accumulated delta at that layer;
    ``None``/a list: A-PSR, layer by layer on local deltas) or ``"psr-ll"`` (trained through the
    model on the likelihood of the kept responses).
    """
    pairs = list(samples.pairs if isinstance(samples, TrainingSamples) else samples)
    name = samples.instruction if isinstance(samples, TrainingSamples) else None
    if method not in ("psr-mse", "psr-ll"):
        raise ValueError(f"instruction steerers are PSR steerers; method must be 'psr-mse' or 'psr-ll', got {method!r}")
    if not pairs:
        raise ValueError(f"no kept training triplets for instruction {name!r}: nothing to train on")
    return train_steerer(method, model, 1.0, layers=layers, pairs=pairs, rank=rank, config=config or TrainConfig(),
                         attribute=f"if:{name}" if name else None, progress=progress)


# --------------------------------------------------------------------------- answers and scores


def score_responses(instruction: Instruction | str, questions: Sequence[str], responses: Sequence[str]) -> pd.DataFrame:
    """Check answers: one row per answer, ``question, response, strict, loose, coherence``
    (coherence: the offline judge's text heuristics, 0-100, no model)."""
    ins = as_instruction(instruction)
    if len(questions) != len(responses):
        raise ValueError(f"got {len(questions)} questions but {len(responses)} responses")
    strict = ins.judge().score_batch(list(questions), list(responses))
    coherence = CoherenceJudge().score_batch(list(questions), list(responses))
    return pd.DataFrame({"question": list(questions), "response": list(responses),
                         "strict": [s.value == 100.0 for s in strict], "loose": [ins.check_loose(r) for r in responses],
                         "coherence": [c.value for c in coherence]},
                        columns=["question", "response", "strict", "loose", "coherence"])


# --------------------------------------------------------------------------- the comparison


@dataclass(frozen=True)
class InstructionRun:
    """Everything :func:`run_instruction_following` measured.

    Attributes:
        summary: one row per (instruction, method), columns :data:`SUMMARY_COLUMNS`.
        responses: one row per test answer, columns :data:`RESPONSE_COLUMNS`.
        sweep: every validation evaluation of a steered method (a list of alphas, or the
            equal-coherence search), columns :data:`SWEEP_COLUMNS`.
        training: the training samples of every instruction (:class:`TrainingSamples`).
        steerers: the trained steerers, by ``(instruction id, "PSR" | "rank-r PSR")``.
        directory: where triplets and answers are stored (``None``: nothing was kept).
    """

    summary: pd.DataFrame
    responses: pd.DataFrame
    sweep: pd.DataFrame
    training: Mapping[str, TrainingSamples]
    steerers: Mapping[tuple[str, str], Any]
    directory: Path | None = None


def _alphas(alpha: float | Sequence[float]) -> tuple[float, ...]:
    values = (alpha,) if is_number(alpha) else tuple(alpha)
    if not values:
        raise ValueError("alpha must be a number or a non-empty list of numbers")
    return tuple(check_alpha(a) for a in values)


def _strict(frame: pd.DataFrame) -> np.ndarray:
    """Strict pass (0/1) of each answer: the judge's score / 100."""
    return frame["attribute"].astype(float).to_numpy() / 100.0


def _strength(evaluator: Evaluator, method: Method, alphas: tuple[float, ...], target: float | None) -> tuple[float, str]:
    """The alpha a steered method is reported at, and a note when a coherence target was missed."""
    if target is not None:
        found = evaluator.search(method, target)
        return found.alpha, "" if found.reached else found.reason
    if len(alphas) == 1:
        return alphas[0], ""
    scores = [(float(_strict(evaluator.evaluate(method, a, "validation")).mean()), -abs(a - 1.0), a) for a in alphas]
    return max(scores)[2], ""


def run_instruction_following(
    model: LoadedModel,
    instructions: Sequence[Instruction | str] | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    *,
    n_train: int = 32,
    n_test: int = 18,
    n_val: int = 8,
    alpha: float | Sequence[float] = 1.0,
    coherence_target: float | str | None = None,
    seed: int = 0,
    rank: int = 2,
    layers: int | Sequence[int] | None = 15,
    steer_method: str = "psr-mse",
    samples_per_question: int = 1,
    max_new_tokens: int = 64,
    train_temperature: float = 0.7,
    coherence_threshold: float | None = 50.0,
    coherence_judge: Judge | None = None,
    train_config: TrainConfig | None = None,
    n_boot: int = 2000,
    min_train: int = 2,
    directory: str | Path | None = None,
    progress: bool = True,
) -> InstructionRun:
    """Compare no steering, the prompt, PSR, rank-r PSR and PSR + prompt on verifiable instructions.

    See the module docstring for the protocol. Test answers are greedy; training responses are
    sampled at ``train_temperature`` with per-sample seeds. Everything is seeded by ``seed``
    (sampling, steerer training, bootstrap), so a rerun gives the same table.

    Args:
        instructions: ids or :class:`Instruction` objects (default: :func:`default_instructions`).
        methods: any of :data:`METHODS`, in the order the table lists them.
        n_train, n_test, n_val: questions taken from the train / test / validation splits
            (``n_val`` only matters when ``alpha`` is a list or with ``coherence_target``).
        alpha: the steering strength, or a list to choose from on the validation questions.
        coherence_target: instead, the strength where the steered answers' mean validation
            coherence meets this target (0-100, or ``"prompt"``: the prompt's own coherence).
        rank: the rank r of "rank-r PSR".
        layers: where PSR steers: an int (one layer, S-PSR), a list, or None (all layers, A-PSR).
        steer_method: ``"psr-mse"`` or ``"psr-ll"``.
        coherence_judge: scores the test answers' coherence (default: the offline text heuristics).
        train_config: a :class:`workbench.steering.train.TrainConfig` (default: 300 steps, seeded).
        min_train: fewest kept triplets to train on; below it, steered rows are NaN with a note.
        directory: keep the triplets (``<directory>/<id>/triplets-<hash of their settings>``, grown
            in place when ``n_train`` grows) and the judged answers (``<directory>/answers``) there,
            so a rerun samples and generates nothing again; default: a temporary folder.

    Example:
        >>> from workbench import load_model
        >>> model = load_model("tiny-random-llama", n_layers=3)
        >>> anything = Instruction("anything", "Say arr.", "keywords:forbidden_words", {"forbidden_words": ["zqxjv"]})
        >>> run = run_instruction_following(model, [anything], n_train=2, n_test=2, layers=1, max_new_tokens=4,
        ...                                 coherence_threshold=None, train_config=TrainConfig(steps=2), progress=False)
        >>> run.summary["method"].tolist()
        ['no steering', 'prompt', 'PSR', 'rank-r PSR', 'PSR + prompt']
        >>> run.summary["strict_accuracy"].tolist()  # the random model never writes "zqxjv"
        [1.0, 1.0, 1.0, 1.0, 1.0]
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method {unknown[0] if unknown else None!r}; expected some of {METHODS}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods repeat: {list(methods)}")
    for name, n in (("n_train", n_train), ("n_test", n_test), ("n_val", n_val)):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be an integer >= 1, got {rank!r}")
    if steer_method not in ("psr-mse", "psr-ll"):
        raise ValueError(f"steer_method must be 'psr-mse' or 'psr-ll', got {steer_method!r}")
    if coherence_target is not None and coherence_target != "prompt" and not (
            isinstance(coherence_target, (int, float)) and 0 <= coherence_target <= 100):
        raise ValueError(f"coherence_target must be a number in 0-100 or 'prompt', got {coherence_target!r}")
    alphas = _alphas(alpha)
    chosen = list(default_instructions() if instructions is None else [as_instruction(i) for i in instructions])
    if not chosen:
        raise ValueError("no instructions to evaluate")
    if len({i.id for i in chosen}) != len(chosen):
        raise ValueError("instructions repeat")
    model.check_layers([layers] if isinstance(layers, int) else layers)
    pool = instruction_questions()
    for name, n, split in (("n_train", n_train, "train"), ("n_test", n_test, "test"), ("n_val", n_val, "validation")):
        if n > len(pool[split]):
            raise ValueError(f"{name}={n} but the question pool has only {len(pool[split])} questions in that split")
    config = train_config or TrainConfig(steps=300, seed=seed)
    train_sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=train_temperature)
    eval_config = EvalConfig(n_validation=n_val, n_test=n_test, max_new_tokens=max_new_tokens, temperature=0.0,
                             seed=seed, batch_size=16, n_boot=n_boot)
    coherence_judge = coherence_judge or CoherenceJudge()
    ranks = sorted({1 if r == 1 else rank for m, (r, _) in _STEERED.items() if m in methods})

    summary, responses, sweeps, training, steerers = [], [], [], {}, {}
    unsteered = None  # the test answers without steering: the same for every instruction
    steps = len(chosen) * (len(methods) + bool(ranks))
    with tqdm(total=steps, desc="instruction following", disable=not progress) as bar:
        for ins in chosen:
            samples, fitted, why = None, {}, ""
            if ranks:
                bar.set_postfix_str(f"{ins.id}: training")
                # one folder per sampling setting; it grows with n_train and samples_per_question
                where = None if directory is None else Path(directory) / ins.id / ("triplets-" + fingerprint(
                    model.model_id, ins.to_json() | {"notes": ""}, asdict(train_sampling), coherence_threshold, seed,
                    length=10))
                samples = sample_training_pairs(model, ins, pool["train"][:n_train], where,
                                                samples_per_question=samples_per_question, sampling=train_sampling,
                                                coherence_threshold=coherence_threshold, seed=seed, progress=False)
                training[ins.id] = samples
                if len(samples.pairs) < min_train:
                    why = f"only {len(samples.pairs)} kept training triplets (< {min_train}): not trained"
                else:
                    fitted = {r: train_instruction_steerer(model, samples, method=steer_method, layers=layers, rank=r,
                                                           config=config, progress=False) for r in ranks}
                    # with rank=1, "rank-r PSR" is the same steerer as "PSR"
                    kinds = {k for m, (k, _) in _STEERED.items() if m in methods}
                    steerers.update({(ins.id, "PSR" if k == 1 else "rank-r PSR"): fitted[1 if k == 1 else rank]
                                     for k in kinds})
                bar.update(1)
            judge = ins.judge()
            evaluator = Evaluator(model, instruction_attribute(ins), eval_config, attribute_judge=judge,
                                  coherence_judge=coherence_judge,
                                  cache_dir=None if directory is None else Path(directory) / "answers")
            target = coherence_target
            if target == "prompt":
                target = evaluator.mean_coherence(Method("prompt", prompt=True), 0.0)
            for name in methods:
                bar.set_postfix_str(f"{ins.id}: {name}")
                t0 = time.perf_counter()
                row = {"instruction": ins.id, "method": name, "seed": seed, "note": "", "alpha": np.nan,
                       "steerer": "", "rank": 0, "layers": "", "n_train": len(samples.pairs) if samples else np.nan,
                       "train_pass_rate": samples.pass_rate if samples else np.nan}
                r = 1 if _STEERED.get(name, (1,))[0] == 1 else rank
                if name in _STEERED and r not in fitted:  # too few kept triplets: an empty row that says so
                    summary.append({**row, "n": 0, "rank": r, "seconds": 0.0, "note": why})
                    bar.update(1)
                    continue
                if name in _STEERED:
                    method = Method(name, fitted[r], prompt=_STEERED[name][1])
                    a, note = _strength(evaluator, method, alphas, target)
                    frame = evaluator.evaluate(method, a, "test")
                    row.update(alpha=a, note=note, steerer=fitted[r].name, rank=fitted[r].rank, layers=method.layers)
                elif name == "prompt":
                    frame = evaluator.evaluate(Method("prompt", prompt=True), 0.0, "test")
                else:  # no steering: generated once, judged by each instruction's checker
                    if unsteered is None:
                        unsteered = evaluator.evaluate(Method("no steering"), 0.0, "test")
                    scores = judge.score_batch(unsteered["question"].tolist(), unsteered["response"].tolist())
                    frame = unsteered.assign(attribute=[s.value for s in scores])
                strict = _strict(frame)
                lo, hi = bootstrap_ci(strict, n_boot=n_boot, seed=seed)
                table = pd.DataFrame({"instruction": ins.id, "method": name, "alpha": row["alpha"],
                                      "question": frame["question"], "response": frame["response"],
                                      "strict": strict == 1.0, "loose": [ins.check_loose(t) for t in frame["response"]],
                                      "coherence": pd.to_numeric(frame["coherence"])}, columns=RESPONSE_COLUMNS)
                summary.append({**row, "n": len(table), "strict_accuracy": float(strict.mean()), "ci_lo": lo,
                                "ci_hi": hi, "loose_accuracy": float(table["loose"].mean()),
                                "coherence": float(table["coherence"].mean()),
                                "seconds": round(time.perf_counter() - t0, 2)})
                responses.append(table)
                bar.update(1)
            sweep = evaluator.sweep()
            sweep = sweep[(sweep["split"] == "validation") & sweep["method"].isin(list(_STEERED))]
            sweeps.append(pd.DataFrame({"instruction": ins.id, "method": sweep["method"], "alpha": sweep["alpha"],
                                        "val_strict_accuracy": sweep["attribute"] / 100.0,
                                        "val_coherence": sweep["coherence"], "n": sweep["n"]}, columns=SWEEP_COLUMNS))
    return InstructionRun(
        summary=pd.DataFrame(summary, columns=SUMMARY_COLUMNS),
        responses=pd.concat(responses, ignore_index=True) if responses else pd.DataFrame(columns=RESPONSE_COLUMNS),
        sweep=pd.concat(sweeps, ignore_index=True) if sweeps else pd.DataFrame(columns=SWEEP_COLUMNS),
        training=MappingProxyType(training),
        steerers=MappingProxyType(steerers),
        directory=Path(directory) if directory is not None else None,
    )


def evaluate_instruction_following(
    model: LoadedModel,
    instructions: Sequence[Instruction | str] | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    **kwargs,
) -> pd.DataFrame:
    """Strict accuracy per instruction and method: the ``summary`` of :func:`run_instruction_following`
    (same arguments), columns :data:`SUMMARY_COLUMNS` (``alpha`` is NaN for unsteered methods, ``ci_lo``
    and ``ci_hi`` a 95 % bootstrap interval, ``n_train`` the kept training triplets)."""
    return run_instruction_following(model, instructions, methods, **kwargs).summary
