"""What every judge shares: the :class:`Judge` protocol, the :class:`Score` it returns, the batch
check, and :func:`success` (DESIGN.md section 5).

A judge is anything with a ``name`` and ``score`` / ``score_batch`` methods that return
:class:`Score` objects on 0-100. A score without a value is one of two things, told apart by
``Score.failed``:

* a verdict of the judge that there is no score (an empty response, an LLM judge's answer that
  holds no usable number): ``failed=False``; it is stored like any other result;
* no judgement at all (the judge could not be reached, or answered with an error): ``failed=True``;
  it is never stored as a result, so a rerun asks again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from workbench.core.fingerprint import behaviour_fingerprint

__all__ = ["Score", "Judge", "check_batch", "describe_judge", "judge_fingerprint", "success"]


@dataclass(frozen=True)
class Score:
    """One judgement. ``value`` is on 0-100, or ``None`` when there is no score.

    ``failed`` is true when no judgement was made (an unreachable endpoint, an HTTP error, a
    malformed answer): such a score has no value, is never cached, and a rerun retries it.
    """

    value: float | None
    reason: str = ""
    failed: bool = False

    def __post_init__(self) -> None:
        if self.value is not None and not (0.0 <= self.value <= 100.0):
            raise ValueError(f"Score value must be in [0, 100] or None, got {self.value!r}")
        if self.failed and self.value is not None:
            raise ValueError(f"a failed Score has no value, got {self.value!r}")


@runtime_checkable
class Judge(Protocol):
    """Interface shared by offline and LLM judges."""

    name: str

    def score(self, question: str, response: str) -> Score: ...

    def score_batch(self, questions: Sequence[str], responses: Sequence[str]) -> list[Score]: ...


def judge_fingerprint(judge: Judge) -> str:
    """``name@fingerprint``: a judge's name and a fingerprint of its behaviour, the part of every
    cache key that stands for the judge (triplets, evaluations).

    The behaviour is what :func:`workbench.core.fingerprint.behaviour_fingerprint` sees: a user
    scorer's source, bytecode, closure and ``version`` attribute; an LLM judge's endpoint, model and
    prompt (its ``fingerprint_identity()``); a coherence judge's weights and the model behind its
    log-likelihood. So a changed scorer re-scores and an unchanged one is read back.

    Example:
        >>> from workbench.judges.offline import FunctionJudge
        >>> always = lambda r: 100.0
        >>> judge_fingerprint(FunctionJudge(always, name="always")).startswith("always@")
        True
        >>> judge_fingerprint(FunctionJudge(always)) == judge_fingerprint(FunctionJudge(lambda r: 0.0))
        False
    """
    name = str(getattr(judge, "name", type(judge).__name__))
    return f"{name}@{behaviour_fingerprint(judge)}"


def describe_judge(judge: Judge) -> str:
    """A judge as a reader wants it in a report: its name, with the LLM behind it or the
    likelihood blend (the cache keys use :func:`judge_fingerprint`)."""
    name = str(getattr(judge, "name", type(judge).__name__))
    config = getattr(judge, "config", None)
    if getattr(config, "model", None):
        name += f"@{config.base_url}/{config.model}"
    if getattr(judge, "logprob_fn", None) is not None:
        name += f"+logprob(w={judge.logprob_weight:g})"
    return name


def check_batch(questions: Sequence[str], responses: Sequence[str]) -> None:
    """Raise unless ``questions`` and ``responses`` are sequences (not strings) of equal length."""
    if isinstance(questions, str) or isinstance(responses, str):
        raise TypeError("score_batch expects sequences of strings, not a single string")
    if len(questions) != len(responses):
        raise ValueError(
            f"score_batch got {len(questions)} questions but {len(responses)} responses"
        )


def success(attr_score: Score | float | None, coh_score: Score | float | None,
            threshold: float = 50.0) -> bool:
    """True when both scores are >= ``threshold`` (DESIGN: half of the 0-100 scale).

    Accepts :class:`Score` objects or plain numbers; a ``None`` score is a failure.
    """

    def value(s: Score | float | None) -> float | None:
        return s.value if isinstance(s, Score) else s

    a, c = value(attr_score), value(coh_score)
    return a is not None and c is not None and a >= threshold and c >= threshold
