"""Steering attributes: instructions, questions and the judge that checks them.

An :class:`Attribute` bundles what the workbench needs to study one behaviour (DESIGN.md sections
2 and 5): the positive ``instructions`` used as the system message of ``x'``, ``paraphrases`` kept
apart for the equivalent-prompt baseline ``x''``, ``opposite_instructions``, questions split into
train / validation / test, and the attribute judge ``J_attr``.

Bundled attributes live in ``data/attributes/<name>.json`` and share the question pool
``data/questions.json``. The data folder is ``$WORKBENCH_DATA_DIR`` when set, else the ``data``
folder next to the ``workbench`` package. A file looks like::

    {
      "name": "pirate",
      "description": "Talks like a pirate.",
      "instructions": ["You are a pirate. ...", "...", "..."],
      "paraphrases": ["..."],
      "opposite_instructions": ["..."],
      "judge": {"scorer": "lexicon", "words": ["matey", "ahoy"], "patterns": ["a+r+r+"]},
      "questions": "questions.json"
    }

``questions`` is a file name under the data folder, or an inline
``{"train": [...], "validation": [...], "test": [...]}``. Users define their own attributes in
Python with :func:`make_attribute`.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from workbench.core.checks import check_int, check_number, check_str_sequence
from workbench.judges.base import Judge, Score
from workbench.judges.offline import AttributeJudge, FunctionJudge, make_judge

__all__ = [
    "SPLITS",
    "Attribute",
    "AttributeFileError",
    "UnknownAttributeError",
    "data_dir",
    "list_attributes",
    "load_attribute",
    "load_attribute_file",
    "load_question_splits",
    "make_attribute",
    "split_questions",
]

SPLITS: tuple[str, ...] = ("train", "validation", "test")
DATA_DIR_ENV = "WORKBENCH_DATA_DIR"
_FIELDS = {
    "name", "description", "instructions", "paraphrases", "opposite_instructions", "judge",
    "questions", "notes",
}


class AttributeFileError(ValueError):
    """A bundled or user JSON file is malformed; the message names the file and the field."""


class UnknownAttributeError(KeyError, ValueError):
    """No attribute of that name; catch it as ``KeyError`` or ``ValueError``."""

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0]) if self.args else ""


def _texts(items: Iterable[Any], what: str, *, min_count: int = 0) -> tuple[str, ...]:
    """Validate a list of non-blank strings; errors name ``what`` and the offending index."""
    if isinstance(items, str):
        raise ValueError(f"{what} must be a list of strings, not a single string")
    out: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise ValueError(f"{what}[{i}] must be a string, got {type(item).__name__}")
        if not item.strip():
            raise ValueError(f"{what}[{i}] is empty or whitespace-only")
        out.append(item.strip())
    if len(out) < min_count:
        raise ValueError(f"{what} needs at least {min_count} entries, got {len(out)}")
    return tuple(out)


def _check_splits(splits: Mapping[str, Sequence[str]], what: str) -> Mapping[str, tuple[str, ...]]:
    if not isinstance(splits, Mapping):
        raise ValueError(f"{what} must map {list(SPLITS)} to lists of questions")
    if set(splits) != set(SPLITS):
        raise ValueError(f"{what} must have exactly the splits {list(SPLITS)}, got {sorted(splits)}")
    checked = {s: _texts(splits[s], f"{what}[{s!r}]") for s in SPLITS}
    seen: dict[str, str] = {}
    for s in SPLITS:
        for q in checked[s]:
            key = " ".join(q.lower().split())
            if key in seen:
                where = "twice in" if seen[key] == s else f"in both {seen[key]!r} and"
                raise ValueError(f"{what}: duplicate question {q!r} {where} {s!r}")
            seen[key] = s
    if len(seen) < 3:
        raise ValueError(f"{what} needs at least 3 questions, got {len(seen)}")
    return MappingProxyType(checked)


@dataclass(frozen=True)
class Attribute:
    """One steering attribute. ``splits`` has exactly the keys ``train``, ``validation``, ``test``."""

    name: str
    description: str
    instructions: tuple[str, ...]
    paraphrases: tuple[str, ...]
    opposite_instructions: tuple[str, ...]
    splits: Mapping[str, tuple[str, ...]] = field(hash=False)
    judge: AttributeJudge = field(repr=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("attribute name is empty or whitespace-only")
        where = f"attribute {self.name!r}"
        if not isinstance(self.description, str):
            raise ValueError(f"{where}: description must be a string")
        object.__setattr__(self, "instructions",
                           _texts(self.instructions, f"{where}: instructions", min_count=1))
        object.__setattr__(self, "paraphrases", _texts(self.paraphrases, f"{where}: paraphrases"))
        object.__setattr__(self, "opposite_instructions",
                           _texts(self.opposite_instructions, f"{where}: opposite_instructions"))
        object.__setattr__(self, "splits", _check_splits(self.splits, f"{where}: splits"))
        if not isinstance(self.judge, AttributeJudge):
            raise TypeError(f"{where}: judge must be an AttributeJudge, got {type(self.judge).__name__}")

    def questions(self, split: str) -> tuple[str, ...]:
        """The questions of ``split`` (one of ``train``, ``validation``, ``test``)."""
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r} for attribute {self.name!r}; known: {list(SPLITS)}")
        return self.splits[split]

    @property
    def all_questions(self) -> tuple[str, ...]:
        """Every question, train then validation then test."""
        return tuple(q for s in SPLITS for q in self.splits[s])

    def score(self, questions: Sequence[str], responses: Sequence[str]) -> list[Score]:
        """Shorthand for ``self.judge.score_batch(questions, responses)``."""
        return self.judge.score_batch(questions, responses)


# --------------------------------------------------------------------------- user attributes


def split_questions(
    questions: Sequence[str], split: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0
) -> dict[str, tuple[str, ...]]:
    """Shuffle ``questions`` with ``random.Random(seed)`` and cut them by the ``split`` fractions.

    Every split with a positive fraction gets at least one question; train takes the remainder.
    """
    qs = _texts(questions, "questions", min_count=3)
    split = tuple(check_number(f"split[{i}]", f, minimum=0, maximum=1) for i, f in enumerate(split))
    if len(split) != 3 or abs(sum(split) - 1.0) > 1e-6:
        raise ValueError(f"split must be three non-negative fractions summing to 1, got {split}")
    seed = check_int("seed", seed)
    order = list(qs)
    random.Random(seed).shuffle(order)
    n = len(order)
    n_val = max(1, round(split[1] * n)) if split[1] > 0 else 0
    n_test = max(1, round(split[2] * n)) if split[2] > 0 else 0
    n_train = n - n_val - n_test
    if n_train < (1 if split[0] > 0 else 0):
        raise ValueError(f"{n} questions are too few for split {tuple(split)}")
    return {
        "train": tuple(order[:n_train]),
        "validation": tuple(order[n_train : n_train + n_val]),
        "test": tuple(order[n_train + n_val :]),
    }


def make_attribute(
    name: str,
    description: str,
    instructions: Sequence[str],
    questions: Sequence[str] | Mapping[str, Sequence[str]],
    scorer: Callable[[str], float] | Judge,
    *,
    paraphrases: Sequence[str] = (),
    opposite_instructions: Sequence[str] = (),
    split: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    version: int | str | None = None,
) -> Attribute:
    """Define an attribute in Python (e.g. in a notebook).

    ``scorer`` is a :class:`~workbench.judges.offline.Judge` or a plain function ``(response) -> float``
    on 0-100 (values outside are clipped, see :class:`~workbench.judges.offline.FunctionJudge`).
    Stored scores are keyed on the scorer's behaviour (its source, bytecode and closure: see
    :func:`workbench.judges.base.judge_fingerprint`), so editing the function and rerunning the cell
    scores again; ``version`` is for a change its code does not show (bump it to score again).
    ``questions``: a list is shuffled and cut into train / validation / test by the ``split``
    fractions (60/20/20 by default) with ``seed``, so a bundled attribute's ``all_questions`` are
    re-split, not kept in its own splits; give a mapping ``{"train": [...], "validation": [...],
    "test": [...]}`` (e.g. ``load_attribute("pirate").splits``) to keep a split of your own.

    >>> attr = make_attribute("loud", "Ends with !", ["Shout!"], ["a?", "b?", "c?"],
    ...                       lambda r: 100.0 * r.endswith("!"))
    >>> attr.judge.score("a?", "Hi!").value
    100.0
    """
    if isinstance(scorer, AttributeJudge):
        judge = scorer
    elif isinstance(scorer, Judge):
        judge = AttributeJudge(scorer)
    elif callable(scorer):
        judge = AttributeJudge(FunctionJudge(scorer, name=f"{name}-scorer", version=version))
    else:
        raise TypeError(f"scorer must be a Judge or a callable, got {type(scorer).__name__}")
    instructions = tuple(check_str_sequence("instructions", instructions))
    paraphrases = tuple(check_str_sequence("paraphrases", paraphrases))
    opposite_instructions = tuple(check_str_sequence("opposite_instructions", opposite_instructions))
    if isinstance(questions, Mapping):  # the Attribute checks the split names, blanks and duplicates
        splits = {k: tuple(check_str_sequence(f"questions[{k!r}]", v)) for k, v in questions.items()}
    else:
        splits = split_questions(check_str_sequence("questions", questions), split, seed)
    return Attribute(name, description, instructions, paraphrases, opposite_instructions, splits, judge)


# --------------------------------------------------------------------------- bundled attributes


def data_dir() -> Path:
    """The data folder: ``$WORKBENCH_DATA_DIR`` if set, else ``<repo>/data`` next to the package."""
    env = os.environ.get(DATA_DIR_ENV)
    path = Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "data"
    if not (path / "attributes").is_dir():
        source = f"${DATA_DIR_ENV}" if env else "the default location"
        raise FileNotFoundError(
            f"no attributes/ folder in data directory {path} (from {source}); "
            f"set {DATA_DIR_ENV} to the workbench data folder"
        )
    return path


def list_attributes() -> list[str]:
    """Names of the bundled attributes, sorted."""
    return sorted(p.stem for p in (data_dir() / "attributes").glob("*.json"))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise AttributeFileError(f"{path}: invalid JSON: {err}") from err


def load_question_splits(path: str | os.PathLike[str]) -> dict[str, tuple[str, ...]]:
    """Read a question file ``{"splits": {"train": [...], "validation": [...], "test": [...]}}``."""
    path = Path(path)
    raw = _read_json(path)
    if not isinstance(raw, Mapping) or "splits" not in raw:
        raise AttributeFileError(f"{path}: field 'splits' is missing")
    try:
        return dict(_check_splits(raw["splits"], "field 'splits'"))
    except ValueError as err:
        raise AttributeFileError(f"{path}: {err}") from err


def load_attribute_file(path: str | os.PathLike[str]) -> Attribute:
    """Load and validate one attribute JSON file; errors name the file and the bad field."""
    path = Path(path)
    raw = _read_json(path)
    if not isinstance(raw, Mapping):
        raise AttributeFileError(f"{path}: top level must be a JSON object")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise AttributeFileError(f"{path}: unknown field(s) {unknown}; allowed: {sorted(_FIELDS)}")
    for key in ("name", "description", "instructions", "judge", "questions"):
        if key not in raw:
            raise AttributeFileError(f"{path}: field {key!r} is missing")

    def field_value(key: str, check: Callable[[Any], Any]) -> Any:
        try:
            return check(raw.get(key, []))
        except (ValueError, TypeError) as err:
            raise AttributeFileError(f"{path}: field {key!r}: {err}") from err

    name = raw["name"]
    if not isinstance(name, str) or name != path.stem:
        raise AttributeFileError(f"{path}: field 'name' must be the file name {path.stem!r}, got {name!r}")
    if not isinstance(raw["description"], str) or not raw["description"].strip():
        raise AttributeFileError(f"{path}: field 'description' must be a non-empty string")
    instructions = field_value("instructions", lambda v: _texts(v, "instructions", min_count=1))
    paraphrases = field_value("paraphrases", lambda v: _texts(v, "paraphrases"))
    opposites = field_value("opposite_instructions", lambda v: _texts(v, "opposite_instructions"))
    judge = field_value("judge", make_judge)

    questions = raw["questions"]
    if isinstance(questions, str):
        qpath = path.parent.parent / questions
        if not qpath.is_file():
            raise AttributeFileError(f"{path}: field 'questions': no question file {qpath}")
        splits = load_question_splits(qpath)
    else:
        splits = field_value("questions", lambda v: _check_splits(v, "splits"))
    return Attribute(name, raw["description"].strip(), instructions, paraphrases, opposites,
                     splits, judge)


def load_attribute(name: str | Attribute) -> Attribute:
    """Load a bundled attribute by name (an :class:`Attribute` is passed through unchanged).

    Unknown names raise :class:`UnknownAttributeError` (a ``KeyError`` and ``ValueError``) that
    lists the known attributes.
    """
    if isinstance(name, Attribute):
        return name
    if not isinstance(name, str):
        raise TypeError(f"attribute must be a name or an Attribute, got {type(name).__name__}")
    known = list_attributes()
    if name not in known:
        raise UnknownAttributeError(f"unknown attribute {name!r}; known attributes: {', '.join(known)}")
    return load_attribute_file(data_dir() / "attributes" / f"{name}.json")
