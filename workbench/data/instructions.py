"""The verifiable instruction set (IFEval-style): ``data/instructions.json``, and each as an Attribute.

The file is the project's own::

    {"version": 1,
     "instructions": [
       {"id": "no_commas", "text": "You are a terse robot. ... Never use commas.",
        "checker": "punctuation:no_comma", "kwargs": {}, "default": true, "notes": "..."}, ...]}

``text`` is the instruction put in the system message of ``x'``; ``checker`` and ``kwargs`` name
an IFEval checker of the ``if-verifiable`` package and its arguments (see
:class:`workbench.judges.ifeval.IFEvalJudge`; ``kwargs`` must name every argument the checker
would otherwise draw at random). ``default`` marks the instructions the embedded 135M model
follows when prompted, the ones :func:`default_instructions` returns.

:func:`instruction_attribute` turns an instruction into an :class:`~workbench.data.attributes.Attribute`
whose judge is the instruction's checker (100 if an answer follows it, 0 if not) and whose
questions are the shared pool ``data/questions.json`` (train / validation / test), so the triplet
builder and the equal-coherence comparison work on it as on any attribute;
:func:`sample_training_pairs` draws an instruction's prompt-steered triplets with
:func:`workbench.data.triplets.build_triplets`.

Example:
    >>> ins = get_instruction("no_commas")
    >>> ins.check("Bees make honey."), ins.check("Yes, they do.")
    (True, False)
    >>> attribute = instruction_attribute(ins)
    >>> attribute.name, attribute.instructions == (ins.text,)
    ('if:no_commas', True)
    >>> attribute.judge.score("Q?", "Bees make honey.").value
    100.0
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.core.chat import AlignedPair
from workbench.core.generation import SamplingConfig
from workbench.core.models import LoadedModel
from workbench.data.attributes import SPLITS, Attribute, data_dir, load_question_splits, make_attribute
from workbench.data.triplets import TripletConfig, TripletSet, build_triplets
from workbench.judges.base import Score
from workbench.judges.ifeval import IFEvalJudge
from workbench.judges.offline import CoherenceJudge, FunctionJudge

__all__ = [
    "INSTRUCTIONS_FILE",
    "INSTRUCTIONS_VERSION",
    "Instruction",
    "TrainingSamples",
    "as_instruction",
    "check",
    "check_loose",
    "default_instructions",
    "get_instruction",
    "instruction_attribute",
    "instruction_questions",
    "load_instructions",
    "sample_training_pairs",
]

INSTRUCTIONS_FILE = "instructions.json"
INSTRUCTIONS_VERSION = 1
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_ENTRY_FIELDS = {"id", "text", "checker", "kwargs", "default", "notes"}
_FILE_FIELDS = {"version", "description", "instructions"}


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
    _judge: IFEvalJudge | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID_RE.match(self.id):
            raise ValueError(f"instruction id must be a slug of [a-z0-9_-], got {self.id!r}")
        where = f"instruction {self.id!r}"
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError(f"{where}: text must be a non-empty string")
        if not isinstance(self.default, bool):
            raise ValueError(f"{where}: default must be true or false, got {self.default!r}")
        if not isinstance(self.notes, str):
            raise ValueError(f"{where}: notes must be a string, got {self.notes!r}")
        try:
            judge = IFEvalJudge(self.checker, self.kwargs)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from err
        object.__setattr__(self, "kwargs", judge.kwargs)
        object.__setattr__(self, "_judge", judge)

    def judge(self, loose: bool = False) -> IFEvalJudge:
        """The instruction's checker as a judge (100 if an answer follows it, 0 if not)."""
        return IFEvalJudge(self.checker, self.kwargs, loose=True) if loose else self._judge

    def check(self, response: str) -> bool:
        """Strict: the raw response is non-empty and passes the checker."""
        return self._judge.follows(response, loose=False)

    def check_loose(self, response: str) -> bool:
        """Loose (IFEval): some variant passes (first/last line dropped, ``*`` removed)."""
        return self._judge.follows(response, loose=True)

    def to_json(self) -> dict:
        return {"id": self.id, "text": self.text, "checker": self.checker, "kwargs": self._judge.arguments,
                "default": self.default, "notes": self.notes}


def check(instruction: Instruction | str, response_text: str) -> bool:
    """Strict IFEval check of one response: non-empty and passing ``instruction``'s checker."""
    return as_instruction(instruction).check(response_text)


def check_loose(instruction: Instruction | str, response_text: str) -> bool:
    """Loose IFEval check: the response or one of its IFEval loose variants passes."""
    return as_instruction(instruction).check_loose(response_text)


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


def as_instruction(value: Instruction | str) -> Instruction:
    """An :class:`Instruction`, or the bundled one with that id."""
    if isinstance(value, Instruction):
        return value
    if isinstance(value, str):
        return get_instruction(value)
    raise TypeError(f"instruction must be an Instruction or an id, got {type(value).__name__}")


def instruction_questions() -> dict[str, tuple[str, ...]]:
    """The shared question pool ``data/questions.json``: ``{"train": ..., "validation": ..., "test": ...}``."""
    return load_question_splits(data_dir() / "questions.json")


def _key(question: str) -> str:
    return " ".join(question.lower().split())


def instruction_attribute(instruction: Instruction | str, *, train: Sequence[str] | None = None,
                          loose: bool = False) -> Attribute:
    """The instruction as an :class:`~workbench.data.attributes.Attribute` named ``"if:<id>"``
    (made by :func:`~workbench.data.attributes.make_attribute`).

    Its one instruction is ``instruction.text``, its judge the instruction's checker
    (:meth:`Instruction.judge`: 100 or 0, strict unless ``loose``), its questions the splits of
    ``data/questions.json``. ``train`` replaces the training questions (the validation and test
    splits then leave out any of them), e.g. to sample triplets on a chosen list.
    """
    ins = as_instruction(instruction)
    splits = instruction_questions()
    if train is not None:
        taken = {_key(q) for q in train}
        splits = {"train": tuple(train), **{s: tuple(q for q in splits[s] if _key(q) not in taken)
                                            for s in SPLITS if s != "train"}}
    return make_attribute(f"if:{ins.id}", f"follows the verifiable instruction {ins.id!r} ({ins.checker})",
                          [ins.text], splits, ins.judge(loose))


# --------------------------------------------------------------------------- training triplets


@contextmanager
def _folder(directory: str | Path | None):
    """``directory``, or a temporary folder removed afterwards."""
    if directory is not None:
        yield Path(directory)
        return
    with tempfile.TemporaryDirectory(prefix="workbench-if-") as tmp:
        yield Path(tmp)


@dataclass(frozen=True)
class TrainingSamples:
    """Prompt-steered samples of one instruction, as :func:`~workbench.data.triplets.build_triplets` drew them.

    ``triplets`` is the full :class:`~workbench.data.triplets.TripletSet` (stored in ``directory``
    unless that was a temporary folder, then ``None``); ``pairs`` the aligned ``(x y', x' y')`` of
    its kept rows, in order.
    """

    instruction: str
    triplets: TripletSet
    pairs: tuple[AlignedPair, ...]
    directory: Path | None = None

    @property
    def table(self) -> pd.DataFrame:
        """One row per sample: ``instruction, question, sample_index, sample_seed, response, passed,
        coherence, kept`` (``passed``: follows the instruction, strict)."""
        t = self.triplets.table
        return pd.DataFrame({
            "instruction": [self.instruction] * len(t), "question": t["question"].tolist(),
            "sample_index": t["sample_index"].tolist(), "sample_seed": t["sample_seed"].tolist(),
            "response": t["response"].tolist(), "passed": (t["attr_score"] == 100.0).tolist(),
            "coherence": t["coh_score"].tolist(), "kept": t["kept"].astype(bool).tolist(),
        }, columns=["instruction", "question", "sample_index", "sample_seed", "response", "passed", "coherence", "kept"])

    @property
    def pass_rate(self) -> float:
        """Share of samples that follow the instruction (the prompt's accuracy on the training questions)."""
        t = self.triplets.table
        return float((t["attr_score"] == 100.0).mean()) if len(t) else float("nan")


def sample_training_pairs(
    model: LoadedModel,
    instruction: Instruction | str,
    questions: Sequence[str],
    directory: str | Path | None = None,
    *,
    samples_per_question: int = 1,
    sampling: SamplingConfig = SamplingConfig(max_new_tokens=64, temperature=0.7),
    coherence_threshold: float | None = 50.0,
    placement: str = "auto",
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> TrainingSamples:
    """Sample ``y'`` from ``x'`` for each question with :func:`~workbench.data.triplets.build_triplets`.

    The attribute is :func:`~workbench.data.instructions.instruction_attribute` with ``questions``
    as its training split: a sample is kept when it follows the instruction (judge score 100) and
    the offline coherence judge (text heuristics, no model) scores it at least
    ``coherence_threshold`` (0-100): the DESIGN rule that only successful, coherent samples train a
    steerer. With ``coherence_threshold`` None (or 0) coherence is not judged (stored as 100, "not
    judged"). Each sample has its own seed (``sample_seed(seed, question, text, index)``),
    so the draw does not depend on batching. ``placement``: where the instruction goes (``"auto"``:
    the system turn where the chat template has one, as the comparison's answers do). With a ``directory`` the triplets are stored there
    and a rerun resumes them; without one they live in a temporary folder.
    """
    ins = as_instruction(instruction)
    if not questions:
        raise ValueError("no questions to sample training responses for")
    filtered = coherence_threshold is not None and coherence_threshold > 0
    config = TripletConfig(split="train", samples_per_question=samples_per_question, placement=placement,
                           max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                           top_p=sampling.top_p, seed=seed, batch_size=batch_size,
                           threshold=coherence_threshold if filtered else 50.0)
    coherence = CoherenceJudge() if filtered else FunctionJudge(
        lambda _: Score(100.0, "not judged: no coherence filter"), name="no coherence filter")
    with _folder(directory) as where:
        triplets = build_triplets(model, instruction_attribute(ins, train=questions), where, config,
                                  coherence=coherence, progress=progress)
    return TrainingSamples(ins.id, triplets, tuple(triplets.pairs(model.tokenizer)),
                           Path(directory) if directory is not None else None)
