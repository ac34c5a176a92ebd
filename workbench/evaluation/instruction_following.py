"""Instruction following (IFEval-style): verifiable instructions, checked by code (DESIGN.md section 5).

Finding 5 of the paper: rank-1 PSR alone does not reach the prompt on composite format
instructions, stacking PSR on the prompt adds points, higher rank is the open direction. This
module measures that on the project's own instruction set, ``data/instructions.json``::

    {"version": 1,
     "instructions": [
       {"id": "no_commas", "text": "You are a terse robot. ... Never use commas.",
        "checker": "punctuation:no_comma", "kwargs": {}, "default": true, "notes": "..."}, ...]}

``text`` is the instruction put in the system message of ``x'``; ``checker`` names an IFEval
checker of the ``if-verifiable`` package, by its IFEval instruction id
(``if_verifiable.ifeval.instructions_registry.INSTRUCTION_DICT``, e.g.
``"change_case:english_lowercase"``) or by class name in ``if_verifiable.ifeval.instructions``
(e.g. ``"ConstrainedStartChecker"``, which IFEval does not register); ``kwargs`` go to its
``build_description`` and must name every argument the checker would otherwise draw at random.
``default`` marks the instructions the embedded 135M model follows when prompted, the ones
:func:`default_instructions` returns. Questions come from the shared pool
``data/questions.json``: training triplets from ``train``, the strength sweep from
``validation``, reported accuracies from ``test``.

Strict accuracy is IFEval's: the raw response, non-empty, passes the checker. Loose accuracy
also accepts the response with its first and/or last line removed or its ``*`` markdown
stripped. Checkers that detect the language (``langdetect``) are run with a fixed seed, so a
check gives the same answer every time.

The comparison (:func:`evaluate_instruction_following`), per instruction:

1. prompt-steered triplets: ``y'`` sampled from ``x'`` (instruction in the system message) on
   ``n_train`` training questions; a sample is kept when the checker passes and the offline
   coherence judge (text heuristics) scores it >= ``coherence_threshold``; soft label 1.0;
2. a rank-1 PSR and a rank-r PSR trained on the kept triplets with
   :func:`workbench.steering.train_steerer` (``steer_method`` ``"psr-mse"`` or ``"psr-ll"``);
3. greedy answers to ``n_test`` test questions for each method: ``"no steering"`` (``x``),
   ``"prompt"`` (``x'``), ``"PSR"`` and ``"rank-r PSR"`` (``x`` steered), ``"PSR + prompt"``
   (``x'`` steered; also ``"rank-r PSR + prompt"`` on request), each checked by code; bootstrap
   confidence intervals of the strict accuracy.

The strength ``alpha`` of the steered methods is either fixed (``alpha=1.0``, the default: the
soft label of every kept triplet, i.e. the strength the steerer was trained to imitate the
prompt at) or, given a list (``alpha=(0.5, 1, 2)``), chosen per method and instruction as the
one with the best strict accuracy on ``n_val`` validation questions (ties: the one closest to 1,
then the larger).
"""

from __future__ import annotations

import inspect
import json
import os
import random
import re
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench.core.chat import PLACEMENTS, AlignedPair, align, prompt_ids
from workbench.core.fingerprint import sample_seed
from workbench.core.generation import SamplingConfig, generate, generate_answers
from workbench.core.models import LoadedModel
from workbench.data.attributes import data_dir, load_question_splits
from workbench.evaluation.strength import bootstrap_ci
from workbench.judges.offline import CoherenceJudge
from workbench.steering import TrainConfig, check_alpha, layers_label, train_steerer

__all__ = [
    "INSTRUCTIONS_FILE",
    "INSTRUCTIONS_VERSION",
    "METHODS",
    "DEFAULT_METHODS",
    "SUMMARY_COLUMNS",
    "Instruction",
    "InstructionRun",
    "TrainingSamples",
    "check",
    "check_loose",
    "default_instructions",
    "evaluate_instruction_following",
    "get_instruction",
    "instruction_responses",
    "load_instructions",
    "run_instruction_following",
    "sample_training_pairs",
    "score_responses",
    "train_instruction_steerer",
]

INSTRUCTIONS_FILE = "instructions.json"
INSTRUCTIONS_VERSION = 1
METHODS: tuple[str, ...] = ("no steering", "prompt", "PSR", "rank-r PSR", "PSR + prompt", "rank-r PSR + prompt")
DEFAULT_METHODS: tuple[str, ...] = METHODS[:5]
SUMMARY_COLUMNS = [
    "instruction", "method", "n", "strict_accuracy", "ci_lo", "ci_hi", "alpha", "seed", "loose_accuracy",
    "coherence", "steerer", "rank", "layers", "n_train", "train_pass_rate", "seconds", "note",
]
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_ENTRY_FIELDS = {"id", "text", "checker", "kwargs", "default", "notes"}
_FILE_FIELDS = {"version", "description", "instructions"}
# Checkers whose check needs the nltk "punkt" data, which nothing here can download.
_NEEDS_PUNKT = {"NumberOfSentences", "CapitalWordFrequencyChecker"}
_PROBE = "A short probe answer, with a comma. It ends here."
# Seeds of the builds compared to detect checker arguments drawn at random.
_DRAW_SEEDS = (0, 1, 2, 3, 4, 5)


# --------------------------------------------------------------------------- checkers


def _registry() -> dict[str, type]:
    from if_verifiable.ifeval import instructions_registry  # optional heavy dependency: imported only when this runs

    return dict(instructions_registry.INSTRUCTION_DICT)


def _checker_class(name: str) -> type:
    """The if-verifiable IFEval checker class for an instruction id or a class name."""
    from if_verifiable.ifeval import (
        instructions as ifeval_instructions,  # optional heavy dependency: imported only when this runs
    )

    registry = _registry()
    if name in registry:
        return registry[name]
    cls = getattr(ifeval_instructions, name, None)
    if isinstance(cls, type) and issubclass(cls, ifeval_instructions.Instruction) and cls is not ifeval_instructions.Instruction:
        return cls
    raise ValueError(
        f"unknown checker {name!r}; expected an IFEval instruction id ({', '.join(sorted(registry))}) "
        "or a checker class name of if_verifiable.ifeval.instructions"
    )


def _punkt_available() -> bool:
    try:
        import nltk  # optional heavy dependency: imported only when this runs

        nltk.data.find("tokenizers/punkt")
        return True
    except LookupError:
        return False


@contextmanager
def _seeded_langdetect(seed: int = 0):
    """Run langdetect with a fixed seed (it draws random numbers per call otherwise)."""
    from langdetect.detector_factory import DetectorFactory  # optional heavy dependency: imported only when this runs

    before = DetectorFactory.seed
    DetectorFactory.seed = seed
    try:
        yield
    finally:
        DetectorFactory.seed = before


def _built(cls: type, checker: str, kwargs: Mapping[str, Any], rng_seed: int):
    """A checker built with ``random`` seeded by ``rng_seed`` (the global state is restored), and its args."""
    state = random.getstate()
    try:
        random.seed(rng_seed)
        instance = cls(checker)
        instance.build_description(**dict(kwargs))
        return instance, dict(instance.get_instruction_args() or {})
    finally:
        random.setstate(state)


def _build_checker(checker: str, kwargs: Mapping[str, Any], where: str):
    cls = _checker_class(checker)
    if cls.__name__ in _NEEDS_PUNKT and not _punkt_available():
        raise ValueError(f"{where}: checker {checker!r} needs the nltk 'punkt' data, which is not installed "
                         "and cannot be downloaded here; use another checker")
    params = inspect.signature(cls.build_description).parameters
    allowed = [p for p in params if p != "self" and params[p].kind != inspect.Parameter.VAR_KEYWORD]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: checker {checker!r} takes no argument {unknown[0]!r}; its arguments: {allowed}")
    try:
        # Built under several random seeds: an argument that is missing, or given but still drawn
        # (null, a negative count, an empty keyword list), differs between the builds.
        builds = [_built(cls, checker, kwargs, s) for s in _DRAW_SEEDS]
    except Exception as err:  # noqa: BLE001 - the package raises KeyError, TypeError, ValueError...
        raise ValueError(f"{where}: bad kwargs {dict(kwargs)!r} for checker {checker!r}: {err!r}") from err
    instance, built = builds[0]
    drawn = sorted(k for k in built if k != "prompt" and (
        k not in kwargs or kwargs[k] is None or any(args.get(k) != built[k] for _, args in builds[1:])))
    if drawn:
        raise ValueError(f"{where}: checker {checker!r} needs kwargs {drawn} "
                         f"(without valid values it draws them at random; got {dict(kwargs)!r})")
    try:
        with _seeded_langdetect():
            instance.check_following(_PROBE)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{where}: bad kwargs {dict(kwargs)!r} for checker {checker!r}: "
                         f"checking a response fails with {err!r}") from err
    return instance


def _frozen_json(value: Any, where: str) -> Any:
    """Validate a JSON-like kwargs value; lists become tuples so the mapping can be frozen."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_frozen_json(v, where) for v in value)
    raise ValueError(f"{where}: kwargs values must be strings, numbers or lists of them, got {type(value).__name__}")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Instruction:
    """One verifiable instruction: its text (the system message of ``x'``) and its IFEval checker.

    Attributes:
        id: a short slug (``[a-z0-9_-]``), e.g. ``"no_commas"``.
        text: the instruction as the model reads it.
        checker: an IFEval instruction id (``"punctuation:no_comma"``) or a checker class name.
        kwargs: the arguments of the checker's ``build_description``.
        default: whether :func:`default_instructions` includes it (the model follows it when prompted).
        notes: free text, e.g. measured prompt accuracy.
    """

    id: str
    text: str
    checker: str
    kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    default: bool = False
    notes: str = field(default="", compare=False)
    _impl: Any = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID_RE.match(self.id):
            raise ValueError(f"instruction id must be a slug of [a-z0-9_-], got {self.id!r}")
        where = f"instruction {self.id!r}"
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError(f"{where}: text must be a non-empty string")
        if not isinstance(self.checker, str) or not self.checker.strip():
            raise ValueError(f"{where}: checker must be a non-empty string, got {self.checker!r}")
        if not isinstance(self.kwargs, Mapping) or not all(isinstance(k, str) for k in self.kwargs):
            raise ValueError(f"{where}: kwargs must be an object with string keys, got {self.kwargs!r}")
        if not isinstance(self.default, bool):
            raise ValueError(f"{where}: default must be true or false, got {self.default!r}")
        if not isinstance(self.notes, str):
            raise ValueError(f"{where}: notes must be a string, got {self.notes!r}")
        kwargs = MappingProxyType({k: _frozen_json(v, where) for k, v in self.kwargs.items()})
        object.__setattr__(self, "kwargs", kwargs)
        object.__setattr__(self, "_impl", _build_checker(self.checker, {k: _plain(v) for k, v in kwargs.items()}, where))

    def check(self, response: str) -> bool:
        """Strict: the raw response is non-empty and passes the checker."""
        if not isinstance(response, str):
            raise TypeError(f"response must be a str, got {type(response).__name__}")
        if not response.strip():
            return False
        with _seeded_langdetect():
            return bool(self._impl.check_following(response))

    def check_loose(self, response: str) -> bool:
        """Loose (IFEval): some variant passes (first/last line dropped, ``*`` removed)."""
        from if_verifiable.common import (
            get_loose_transformations,  # optional heavy dependency: imported only when this runs
        )

        if not isinstance(response, str):
            raise TypeError(f"response must be a str, got {type(response).__name__}")
        if not response.strip():
            return False
        return any(v.strip() and self.check(v) for v in get_loose_transformations(response))

    def to_json(self) -> dict:
        return {"id": self.id, "text": self.text, "checker": self.checker,
                "kwargs": {k: _plain(v) for k, v in self.kwargs.items()}, "default": self.default, "notes": self.notes}


def check(instruction: Instruction, response_text: str) -> bool:
    """Strict IFEval check of one response: non-empty and passing ``instruction``'s checker."""
    return _instruction(instruction).check(response_text)


def check_loose(instruction: Instruction, response_text: str) -> bool:
    """Loose IFEval check: the response or one of its IFEval loose variants passes."""
    return _instruction(instruction).check_loose(response_text)


# --------------------------------------------------------------------------- the data file


def load_instructions(path: str | os.PathLike[str] | None = None) -> tuple[Instruction, ...]:
    """Load and validate an instruction file (default: ``data/instructions.json``).

    Errors are ``ValueError`` naming the file and the bad value: another ``version``, unknown
    fields, duplicate ids, unknown checkers, bad kwargs.
    """
    path = Path(path) if path is not None else data_dir() / INSTRUCTIONS_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON: {err}") from err
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: top level must be a JSON object")
    version = raw.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version != INSTRUCTIONS_VERSION:
        raise ValueError(f"{path}: instruction file version {raw.get('version')!r} is not supported; "
                         f"this workbench reads version {INSTRUCTIONS_VERSION}")
    unknown = sorted(set(raw) - _FILE_FIELDS)
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {unknown}; allowed: {sorted(_FILE_FIELDS)}")
    entries = raw.get("instructions")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: 'instructions' must be a non-empty list")
    out: list[Instruction] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ValueError(f"{path}: instructions[{i}] must be an object")
        bad = sorted(set(entry) - _ENTRY_FIELDS)
        missing = sorted({"id", "text", "checker"} - set(entry))
        if bad or missing:
            what = f"unknown field(s) {bad}" if bad else f"missing field(s) {missing}"
            raise ValueError(f"{path}: instructions[{i}] ({entry.get('id', '?')!r}): {what}")
        try:
            out.append(Instruction(entry["id"], entry["text"], entry["checker"], entry.get("kwargs", {}),
                                   entry.get("default", False), entry.get("notes", "")))
        except ValueError as err:
            raise ValueError(f"{path}: instructions[{i}]: {err}") from err
    ids = [ins.id for ins in out]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"{path}: duplicate instruction id {dupes[0]!r}")
    return tuple(out)


def default_instructions(path: str | os.PathLike[str] | None = None) -> tuple[Instruction, ...]:
    """The instructions marked ``default`` (the ones the embedded model follows when prompted)."""
    return tuple(ins for ins in load_instructions(path) if ins.default)


def get_instruction(name: str | Instruction, instructions: Sequence[Instruction] | None = None) -> Instruction:
    """An instruction by id (from ``instructions`` or the bundled file); an Instruction passes through."""
    if isinstance(name, Instruction):
        return name
    pool = tuple(instructions) if instructions is not None else load_instructions()
    for ins in pool:
        if ins.id == name:
            return ins
    raise ValueError(f"unknown instruction {name!r}; known: {', '.join(i.id for i in pool)}")


def _instruction(value: Instruction | str) -> Instruction:
    if isinstance(value, Instruction):
        return value
    if isinstance(value, str):
        return get_instruction(value)
    raise TypeError(f"instruction must be an Instruction or an id, got {type(value).__name__}")


def _questions(split: str) -> tuple[str, ...]:
    return load_question_splits(data_dir() / "questions.json")[split]


# --------------------------------------------------------------------------- training data


@dataclass(frozen=True)
class TrainingSamples:
    """Prompt-steered samples of one instruction: every sample in ``table``, the kept ones as pairs.

    ``table`` columns: ``instruction, question, sample_index, sample_seed, response, passed,
    coherence, kept``. ``pairs`` are the aligned ``(x y', x' y')`` of the kept rows, in order.
    """

    instruction: str
    table: pd.DataFrame
    pairs: tuple[AlignedPair, ...]

    @property
    def pass_rate(self) -> float:
        """Share of samples that pass the checker (the prompt's accuracy on the training questions)."""
        return float(self.table["passed"].mean()) if len(self.table) else float("nan")


def sample_training_pairs(
    model: LoadedModel,
    instruction: Instruction | str,
    questions: Sequence[str],
    *,
    samples_per_question: int = 1,
    sampling: SamplingConfig = SamplingConfig(max_new_tokens=64, temperature=0.7),
    coherence_threshold: float | None = 50.0,
    placement: str = "system",
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> TrainingSamples:
    """Sample ``y'`` from ``x'`` for each question and keep what passes the checker.

    A sample is kept when the checker passes (strict) and, unless ``coherence_threshold`` is None,
    the offline coherence judge (text heuristics, no model) scores it at least that (0-100): the
    DESIGN rule that only successful, coherent samples train a steerer. Each sample has its own
    seed (:func:`workbench.data.triplets.sample_seed`), so the draw does not depend on batching.
    """
    instruction = _instruction(instruction)
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown instruction placement {placement!r}; expected one of {PLACEMENTS}")
    if samples_per_question < 1:
        raise ValueError(f"samples_per_question must be >= 1, got {samples_per_question}")
    if not questions:
        raise ValueError("no questions to sample training responses for")
    tok = model.tokenizer
    work = [(q, s) for q in questions for s in range(samples_per_question)]
    prompts = [prompt_ids(tok, q, instruction.text, placement)[0] for q, _ in work]
    seeds = [sample_seed(seed, q, instruction.text, s) for q, s in work]
    with torch.no_grad():
        out = generate(model, prompts, sampling, row_seeds=seeds if sampling.temperature > 0 else None,
                       batch_size=batch_size, progress=progress)
    texts = [tok.decode(ids, skip_special_tokens=True).strip() for ids in out]
    judge = CoherenceJudge()
    rows, pairs = [], []
    for (q, s), seed_, ids, text in zip(work, seeds, out, texts):
        passed = instruction.check(text)
        coherence = judge.score(q, text).value if text else 0.0
        kept = passed and (coherence_threshold is None or coherence >= coherence_threshold)
        if kept:
            try:
                pairs.append(align(tok, q, instruction.text, ids, placement=placement, max_len=model.n_ctx))
            except ValueError:  # e.g. only an end-of-turn token: nothing to imitate
                kept = False
        rows.append({"instruction": instruction.id, "question": q, "sample_index": s, "sample_seed": seed_,
                     "response": text, "passed": passed, "coherence": coherence, "kept": kept})
    return TrainingSamples(instruction.id, pd.DataFrame(rows), tuple(pairs))


def train_instruction_steerer(
    model: LoadedModel,
    samples: TrainingSamples | Sequence[AlignedPair],
    *,
    method: str = "psr-mse",
    layers: int | Sequence[int] | None = 15,
    rank: int = 1,
    config=None,
    progress: bool = True,
):
    """Train a PSR steerer on kept triplets (soft label 1.0 each) with :func:`~workbench.steering.train_steerer`.

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
    config = config or TrainConfig()
    return train_steerer(method, model, 1.0, layers=layers, pairs=pairs, rank=rank, config=config,
                         attribute=f"if:{name}" if name else None, progress=progress)


# --------------------------------------------------------------------------- answers and scores


def _answers(model, instruction: Instruction | None, questions, steerer, alpha, sampling, placement, seed,
             batch_size: int = 16) -> list[str]:
    steerers = [(steerer, alpha)] if steerer is not None else []
    with torch.no_grad():  # generation needs no graph (and keeping one costs gigabytes)
        answers = generate_answers(model, list(questions), instruction=instruction.text if instruction else None,
                                   steerers=steerers, config=sampling, seed=seed, placement=placement,
                                   batch_size=batch_size, record_lambdas=False, progress=False)
    return [a.text for a in answers]


def score_responses(instruction: Instruction | str, questions: Sequence[str], responses: Sequence[str]) -> pd.DataFrame:
    """Check answers: one row per answer, ``question, response, strict, loose, coherence``
    (coherence: the offline judge's text heuristics, 0-100, no model)."""
    instruction = _instruction(instruction)
    if len(questions) != len(responses):
        raise ValueError(f"got {len(questions)} questions but {len(responses)} responses")
    judge = CoherenceJudge()
    return pd.DataFrame([
        {"question": q, "response": r, "strict": instruction.check(r), "loose": instruction.check_loose(r),
         "coherence": judge.score(q, r).value if r.strip() else 0.0}
        for q, r in zip(questions, responses)
    ], columns=["question", "response", "strict", "loose", "coherence"])


def instruction_responses(
    model: LoadedModel,
    instruction: Instruction | str,
    questions: Sequence[str],
    *,
    prompt: bool,
    steerer=None,
    alpha: float = 1.0,
    sampling: SamplingConfig = SamplingConfig(max_new_tokens=64, temperature=0.0),
    placement: str = "system",
    seed: int = 0,
    batch_size: int = 16,
) -> pd.DataFrame:
    """Answer ``questions`` with (``prompt=True``) or without the instruction, optionally steered
    by ``steerer`` at ``alpha``, and check each answer (see :func:`score_responses`).

    Answers are generated with :func:`workbench.core.generation.generate_answers` (greedy by default;
    sampled answers are seeded per question by ``seed``).
    """
    instruction = _instruction(instruction)
    texts = _answers(model, instruction if prompt else None, questions, steerer, alpha, sampling, placement, seed,
                     batch_size)
    return score_responses(instruction, questions, texts)


def _alphas(alpha: float | Sequence[float]) -> tuple[float, ...]:
    values = (alpha,) if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) else tuple(alpha)
    if not values:
        raise ValueError("alpha must be a number or a non-empty list of numbers")
    return tuple(check_alpha(a) for a in values)


@dataclass(frozen=True)
class InstructionRun:
    """Everything :func:`run_instruction_following` measured.

    Attributes:
        summary: one row per (instruction, method), columns :data:`SUMMARY_COLUMNS`.
        responses: one row per test answer: ``instruction, method, alpha, question, response,
            strict, loose, coherence``.
        sweep: with a list of alphas, the validation accuracy of each steered method at each.
        training: the training samples of every instruction (:class:`TrainingSamples`).
        steerers: the trained steerers, by ``(instruction id, "PSR" | "rank-r PSR")``.
    """

    summary: pd.DataFrame
    responses: pd.DataFrame
    sweep: pd.DataFrame
    training: Mapping[str, TrainingSamples]
    steerers: Mapping[tuple[str, str], Any]


_STEERED = {"PSR": (1, False), "rank-r PSR": ("r", False), "PSR + prompt": (1, True), "rank-r PSR + prompt": ("r", True)}


def run_instruction_following(
    model: LoadedModel,
    instructions: Sequence[Instruction | str] | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    *,
    n_train: int = 32,
    n_test: int = 18,
    n_val: int = 8,
    alpha: float | Sequence[float] = 1.0,
    seed: int = 0,
    rank: int = 2,
    layers: int | Sequence[int] | None = 15,
    steer_method: str = "psr-mse",
    samples_per_question: int = 1,
    max_new_tokens: int = 64,
    train_temperature: float = 0.7,
    coherence_threshold: float | None = 50.0,
    train_config=None,
    placement: str = "system",
    n_boot: int = 2000,
    min_train: int = 2,
    progress: bool = True,
) -> InstructionRun:
    """Compare no steering, the prompt, PSR, rank-r PSR and PSR + prompt on verifiable instructions.

    See the module docstring for the protocol. Answers on the test questions are greedy; the
    training responses are sampled at ``train_temperature`` with per-sample seeds. Everything is
    seeded by ``seed`` (sampling, steerer training, bootstrap), so a rerun gives the same table.

    Args:
        instructions: ids or :class:`Instruction` objects (default: :func:`default_instructions`).
        methods: any of :data:`METHODS`, in the order the table lists them.
        n_train, n_test, n_val: questions taken from the train / test / validation splits
            (``n_val`` only matters when ``alpha`` is a list).
        alpha: the steering strength, or a list to choose from on the validation questions.
        rank: the rank r of "rank-r PSR".
        layers: where PSR steers: an int (one layer, S-PSR), a list, or None (all layers, A-PSR).
        steer_method: ``"psr-mse"`` or ``"psr-ll"``.
        train_config: a :class:`workbench.steering.TrainConfig` (default: 300 steps, seeded).
        min_train: fewest kept triplets to train on; below it, steered rows are NaN with a note.
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
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown instruction placement {placement!r}; expected one of {PLACEMENTS}")
    alphas = _alphas(alpha)
    chosen = list(default_instructions() if instructions is None else [_instruction(i) for i in instructions])
    if not chosen:
        raise ValueError("no instructions to evaluate")
    if len({i.id for i in chosen}) != len(chosen):
        raise ValueError("instructions repeat")
    model.check_layers([layers] if isinstance(layers, int) else layers)
    train_q, val_q, test_q = (_questions(s) for s in ("train", "validation", "test"))
    for name, n, pool in (("n_train", n_train, train_q), ("n_test", n_test, test_q), ("n_val", n_val, val_q)):
        if n > len(pool):
            raise ValueError(f"{name}={n} but the question pool has only {len(pool)} questions in that split")
    train_q, val_q, test_q = train_q[:n_train], val_q[:n_val], test_q[:n_test]
    config = train_config or TrainConfig(steps=300, seed=seed)
    greedy = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    train_sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=train_temperature)
    sweeping = len(alphas) > 1
    need_steerer = {m: _STEERED[m][0] for m in methods if m in _STEERED}
    ranks = sorted({1 if r == 1 else rank for r in need_steerer.values()})

    summary, responses, sweep_rows = [], [], []
    unsteered: list[str] | None = None
    training, steerers = {}, {}
    steps = len(chosen) * (len(methods) + (1 if need_steerer else 0))
    bar = tqdm(total=steps, desc="instruction following", disable=not progress)
    try:
        for ins in chosen:
            samples, fitted, why = None, {}, ""
            if need_steerer:
                bar.set_postfix_str(f"{ins.id}: training")
                samples = sample_training_pairs(model, ins, train_q, samples_per_question=samples_per_question,
                                                sampling=train_sampling, coherence_threshold=coherence_threshold,
                                                placement=placement, seed=seed, progress=False)
                training[ins.id] = samples
                if len(samples.pairs) < min_train:
                    why = f"only {len(samples.pairs)} kept training triplets (< {min_train}): not trained"
                else:
                    for r in ranks:
                        fitted[r] = train_instruction_steerer(model, samples, method=steer_method, layers=layers,
                                                              rank=r, config=config, progress=False)
                    # with rank=1, "rank-r PSR" is the same steerer as "PSR"
                    if 1 in need_steerer.values():
                        steerers[(ins.id, "PSR")] = fitted[1]
                    if "r" in need_steerer.values():
                        steerers[(ins.id, "rank-r PSR")] = fitted[rank]
                bar.update(1)
            for method in methods:
                bar.set_postfix_str(f"{ins.id}: {method}")
                t0 = time.perf_counter()
                row = {"instruction": ins.id, "method": method, "seed": seed, "note": "",
                       "n_train": len(samples.pairs) if samples else np.nan,
                       "train_pass_rate": samples.pass_rate if samples else np.nan}
                prompt = method == "prompt" or method.endswith("+ prompt")
                steerer, a = None, np.nan
                if method in _STEERED:
                    r = 1 if _STEERED[method][0] == 1 else rank
                    if r not in fitted:
                        summary.append({**row, "n": 0, "strict_accuracy": np.nan, "ci_lo": np.nan, "ci_hi": np.nan,
                                        "alpha": np.nan, "loose_accuracy": np.nan, "coherence": np.nan, "steerer": "",
                                        "rank": r, "layers": "", "seconds": 0.0, "note": why})
                        bar.update(1)
                        continue
                    steerer = fitted[r]
                    a = alphas[0]
                    if sweeping:
                        scores = []
                        for cand in alphas:
                            val = instruction_responses(model, ins, val_q, prompt=prompt, steerer=steerer, alpha=cand,
                                                        sampling=greedy, placement=placement, seed=seed)
                            acc = float(val["strict"].mean())
                            scores.append((acc, -abs(cand - 1.0), cand))
                            sweep_rows.append({"instruction": ins.id, "method": method, "alpha": cand,
                                               "val_strict_accuracy": acc, "val_coherence": float(val["coherence"].mean()),
                                               "n": len(val)})
                        a = max(scores)[2]
                if method == "no steering":  # the same answers for every instruction: generate once
                    if unsteered is None:
                        unsteered = _answers(model, None, test_q, None, 1.0, greedy, placement, seed)
                    texts = unsteered
                else:
                    texts = _answers(model, ins if prompt else None, test_q, steerer, a, greedy, placement, seed)
                table = score_responses(ins, test_q, texts)
                strict = table["strict"].astype(float).to_numpy()
                lo, hi = bootstrap_ci(strict, n_boot=n_boot, seed=seed)
                summary.append({
                    **row, "n": len(table), "strict_accuracy": float(strict.mean()), "ci_lo": lo, "ci_hi": hi,
                    "alpha": a, "loose_accuracy": float(table["loose"].mean()),
                    "coherence": float(table["coherence"].mean()),
                    "steerer": steerer.name if steerer is not None else "",
                    "rank": steerer.rank if steerer is not None else 0,
                    "layers": layers_label(steerer.layers) if steerer is not None else "",
                    "seconds": round(time.perf_counter() - t0, 2),
                })
                responses.append(table.assign(instruction=ins.id, method=method, alpha=a))
                bar.update(1)
    finally:
        bar.close()
    response_cols = ["instruction", "method", "alpha", "question", "response", "strict", "loose", "coherence"]
    return InstructionRun(
        summary=pd.DataFrame(summary, columns=SUMMARY_COLUMNS),
        responses=pd.concat(responses, ignore_index=True)[response_cols] if responses else pd.DataFrame(columns=response_cols),
        sweep=pd.DataFrame(sweep_rows, columns=["instruction", "method", "alpha", "val_strict_accuracy", "val_coherence", "n"]),
        training=MappingProxyType(training),
        steerers=MappingProxyType(steerers),
    )


def evaluate_instruction_following(
    model: LoadedModel,
    instructions: Sequence[Instruction | str] | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    **kwargs,
) -> pd.DataFrame:
    """Strict accuracy per instruction and method (the ``summary`` of :func:`run_instruction_following`,
    which takes the same arguments). Columns :data:`SUMMARY_COLUMNS`: ``instruction, method, n,
    strict_accuracy, ci_lo, ci_hi`` (bootstrap 95 %), ``alpha`` (NaN for unsteered methods),
    ``seed``, then loose accuracy, mean heuristic coherence, the steerer, its rank and layers,
    kept training triplets, the prompt's pass rate on the training questions, seconds, note."""
    return run_instruction_following(model, instructions, methods, **kwargs).summary
