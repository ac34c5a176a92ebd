"""A verifiable instruction as a judge: the IFEval checkers of ``if-verifiable``, scoring 100 or 0.

:class:`IFEvalJudge` wraps one IFEval checker, named by its IFEval instruction id
(``if_verifiable.ifeval.instructions_registry.INSTRUCTION_DICT``, e.g. ``"punctuation:no_comma"``)
or by class name in ``if_verifiable.ifeval.instructions`` (e.g. ``"ConstrainedStartChecker"``, which
IFEval does not register), with the arguments of its ``build_description``. It implements the
judge protocol of :mod:`workbench.judges.base` (``name``, ``score``, ``score_batch`` returning ``Score``):
100 when the response follows the instruction, 0 when not, so the comparison machinery that
averages attribute scores reads a mean score / 100 as IFEval's accuracy.

* strict (``loose=False``, IFEval's strict accuracy): the raw response, non-empty, passes;
* loose (``loose=True``): the response or one of IFEval's loose variants (first and/or last line
  dropped, ``*`` markdown removed) passes.

An empty response scores 0 (not ``None``): an empty answer does not follow the instruction.
Construction validates the arguments: a checker that would draw a missing argument at random is
refused, so a judge means the same thing every time; checkers that detect the language
(``langdetect``) run with a fixed seed, so a check gives the same answer every time.

Example:
    >>> judge = IFEvalJudge("punctuation:no_comma")
    >>> judge.score("Q?", "Bees make honey.").value, judge.score("Q?", "Yes, they do.").value
    (100.0, 0.0)
"""

from __future__ import annotations

import inspect
import json
import random
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from workbench.judges.base import Score, check_batch

__all__ = ["IFEvalJudge", "checker_class"]

# Checkers whose check needs the nltk "punkt" data, which nothing here can download.
_NEEDS_PUNKT = {"NumberOfSentences", "CapitalWordFrequencyChecker"}
_PROBE = "A short probe answer, with a comma. It ends here."
# Seeds of the builds compared to detect checker arguments drawn at random.
_DRAW_SEEDS = (0, 1, 2, 3, 4, 5)


def checker_class(name: str) -> type:
    """The if-verifiable IFEval checker class for an instruction id or a class name."""
    # optional heavy dependency: imported when a checker is built
    from if_verifiable.ifeval import instructions as ifeval
    from if_verifiable.ifeval import instructions_registry  # (the same package)

    registry = dict(instructions_registry.INSTRUCTION_DICT)
    if name in registry:
        return registry[name]
    cls = getattr(ifeval, name, None)
    if isinstance(cls, type) and issubclass(cls, ifeval.Instruction) and cls is not ifeval.Instruction:
        return cls
    raise ValueError(f"unknown checker {name!r}; expected an IFEval instruction id ({', '.join(sorted(registry))}) "
                     "or a checker class name of if_verifiable.ifeval.instructions")


def _punkt_available() -> bool:
    try:
        import nltk  # optional heavy dependency: imported only when a checker needs it

        nltk.data.find("tokenizers/punkt")
        return True
    except LookupError:
        return False


@contextmanager
def _seeded_langdetect(seed: int = 0):
    """Run langdetect with a fixed seed (it draws random numbers per call otherwise)."""
    # optional heavy dependency: imported when a check runs
    from langdetect.detector_factory import DetectorFactory

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


def _build_checker(checker: str, kwargs: Mapping[str, Any]):
    cls = checker_class(checker)
    if cls.__name__ in _NEEDS_PUNKT and not _punkt_available():
        raise ValueError(f"checker {checker!r} needs the nltk 'punkt' data, which is not installed "
                         "and cannot be downloaded here; use another checker")
    params = inspect.signature(cls.build_description).parameters
    allowed = [p for p in params if p != "self" and params[p].kind != inspect.Parameter.VAR_KEYWORD]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"checker {checker!r} takes no argument {unknown[0]!r}; its arguments: {allowed}")
    try:
        # Built under several random seeds: an argument that is missing, or given but still drawn
        # (null, a negative count, an empty keyword list), differs between the builds.
        builds = [_built(cls, checker, kwargs, s) for s in _DRAW_SEEDS]
    except Exception as err:  # the package raises KeyError, TypeError, ValueError...
        raise ValueError(f"bad kwargs {dict(kwargs)!r} for checker {checker!r}: {err!r}") from err
    instance, built = builds[0]
    drawn = sorted(k for k in built if k != "prompt" and (
        k not in kwargs or kwargs[k] is None or any(args.get(k) != built[k] for _, args in builds[1:])))
    if drawn:
        raise ValueError(f"checker {checker!r} needs kwargs {drawn} "
                         f"(without valid values it draws them at random; got {dict(kwargs)!r})")
    try:
        with _seeded_langdetect():
            instance.check_following(_PROBE)
    except Exception as err:  # whatever the checker raises on a probe answer
        raise ValueError(f"bad kwargs {dict(kwargs)!r} for checker {checker!r}: "
                         f"checking a response fails with {err!r}") from err
    return instance


def _frozen(value: Any) -> Any:
    """Validate a JSON-like kwargs value; lists become tuples so the mapping can be frozen."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    raise ValueError(f"kwargs values must be strings, numbers or lists of them, got {type(value).__name__}")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class IFEvalJudge:
    """One IFEval checker as a judge: ``Score(100)`` if a response follows it, ``Score(0)`` if not.

    Attributes:
        checker: an IFEval instruction id (``"punctuation:no_comma"``) or a checker class name.
        kwargs: the arguments of the checker's ``build_description`` (frozen; lists become tuples).
        loose: IFEval's loose check instead of the strict one.
        name: defaults to ``ifeval <checker> <kwargs>`` (plus `` (loose)``), which names everything
            the scores depend on (cache keys use it).
    Raises:
        ValueError: unknown checker, unknown or missing arguments, arguments it would draw at random.
    """

    checker: str
    kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    loose: bool = False
    name: str = ""
    _impl: Any = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.checker, str) or not self.checker.strip():
            raise ValueError(f"checker must be a non-empty string, got {self.checker!r}")
        if not isinstance(self.kwargs, Mapping) or not all(isinstance(k, str) for k in self.kwargs):
            raise ValueError(f"kwargs must be an object with string keys, got {self.kwargs!r}")
        kwargs = MappingProxyType({k: _frozen(v) for k, v in self.kwargs.items()})
        object.__setattr__(self, "kwargs", kwargs)
        if not self.name:
            args = f" {json.dumps(self.arguments, sort_keys=True, ensure_ascii=False)}" if kwargs else ""
            object.__setattr__(self, "name", f"ifeval {self.checker}{args}" + (" (loose)" if self.loose else ""))
        object.__setattr__(self, "_impl", _build_checker(self.checker, self.arguments))

    @property
    def arguments(self) -> dict[str, Any]:
        """``kwargs`` as plain JSON (lists, not tuples)."""
        return {k: _plain(v) for k, v in self.kwargs.items()}

    def follows(self, response: str, loose: bool | None = None) -> bool:
        """Whether ``response`` follows the instruction (strict, or loose: default ``self.loose``)."""
        if not isinstance(response, str):
            raise TypeError(f"response must be a str, got {type(response).__name__}")
        if not response.strip():
            return False
        if self.loose if loose is None else loose:
            # optional heavy dependency: imported when a loose check runs
            from if_verifiable.common import get_loose_transformations

            return any(v.strip() and self.follows(v, loose=False) for v in get_loose_transformations(response))
        with _seeded_langdetect():
            return bool(self._impl.check_following(response))

    # -- the judge protocol
    def score(self, question: str, response: str) -> Score:
        if isinstance(response, str) and not response.strip():
            return Score(0.0, "empty response")
        ok = self.follows(response)
        return Score(100.0 if ok else 0.0, f"{'follows' if ok else 'does not follow'} {self.checker}")

    def score_batch(self, questions: Sequence[str], responses: Sequence[str]) -> list[Score]:
        check_batch(questions, responses)
        return [self.score(q, r) for q, r in zip(questions, responses)]
