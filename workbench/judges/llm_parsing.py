"""Reading an LLM judge's answer: scores from top log-probabilities or from text, and ratings.

Pure functions on chat-completions JSON and strings (no HTTP):

* :func:`score_from_top_logprobs`: the probability-weighted mean over the integer tokens of one
  position's top log-probs, with the integer mass (persona-style scores);
* :func:`parse_score_text`: the first integer of a reply, when it is within range;
* :func:`number_was_split` and :func:`digit_evidence`: whether the judge's tokenizer splits numbers
  into digits ("85" generated as "8", "5"), which puts a first-token mean on a 0-9 scale;
* :func:`read_rating` / :func:`parse_rating`: the AxBench rating after the last ``Rating:``;
  :func:`combine_ratings`: their harmonic mean on 0-100.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "first_choice",
    "content_of",
    "first_token_logprobs",
    "score_from_top_logprobs",
    "parse_score_text",
    "number_was_split",
    "digit_evidence",
    "read_rating",
    "parse_rating",
    "combine_ratings",
]

_INT_TOKEN = re.compile(r"[0-9]{1,3}")
_FIRST_INT = re.compile(r"(?<![0-9])-?[0-9]+")


def first_choice(response: Mapping[str, Any]) -> Mapping[str, Any]:
    """The first choice of a chat-completions response; ``ValueError`` when there is none."""
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        error = response.get("error")
        raise ValueError(f"response has no choices{f' (error: {error})' if error else ''}")
    return choices[0]


def content_of(choice: Mapping[str, Any]) -> str:
    """The reply text of a choice (``message.content``, or a legacy completion's ``text``)."""
    message = choice.get("message")
    content = message.get("content") if isinstance(message, Mapping) else None
    if content is None:
        content = choice.get("text")  # legacy completions shape
    return content if isinstance(content, str) else ""


def first_token_logprobs(choice: Mapping[str, Any]) -> tuple[str, list[Mapping[str, Any]]] | None:
    """``(first generated token, its top log-probs)`` of a choice, or ``None`` when the endpoint
    returned no log-probs. When only the sampled token came back, the list holds just that token."""
    logprobs = choice.get("logprobs")
    content_lp = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    if not isinstance(content_lp, list) or not content_lp or not isinstance(content_lp[0], Mapping):
        return None
    first = content_lp[0]
    top = first.get("top_logprobs")
    if not isinstance(top, list) or not top:
        top = [first]
    return str(first.get("token", "")), top


def _integer_tokens(top_logprobs: Sequence[Mapping[str, Any]]):
    """``(integer, digits, probability)`` of each well-formed integer token of ``top_logprobs``."""
    for entry in top_logprobs:
        if not isinstance(entry, Mapping):
            continue
        token, logprob = entry.get("token"), entry.get("logprob")
        if not isinstance(token, str) or not isinstance(logprob, (int, float)):
            continue
        text = token.strip()
        if not _INT_TOKEN.fullmatch(text) or not math.isfinite(logprob):
            continue
        yield int(text), len(text), math.exp(logprob)


def score_from_top_logprobs(
    top_logprobs: Sequence[Mapping[str, Any]], min_mass: float = 0.25, max_value: int = 100
) -> tuple[float | None, float]:
    """(weighted mean, integer mass) over the integer tokens ``0..max_value`` of one position's top
    log-probs (``[{"token": "80", "logprob": -0.69}, ...]``; whitespace around a token is
    ignored, tokens that read as the same integer add up). The mean is ``None`` when the mass
    is below ``min_mass`` (or zero)."""
    mass = 0.0
    weighted = 0.0
    for value, _, p in _integer_tokens(top_logprobs):
        if value > max_value:
            continue
        mass += p
        weighted += p * value
    if mass <= 0.0 or mass < min_mass:
        return None, mass
    return min(float(max_value), max(0.0, weighted / mass)), mass


def parse_score_text(text: str, max_value: int = 100) -> int | None:
    """The first integer in ``text`` when it is in ``0..max_value``, else ``None`` (``"-5"``,
    ``"150"``, no number)."""
    m = _FIRST_INT.search(text or "")
    if m is None:
        return None
    value = int(m.group(0))
    return value if 0 <= value <= max_value else None


def number_was_split(first_token: str, text: str) -> bool:
    """True when the reply's first integer was generated over more than one token: its first
    token is a strict digit prefix of it (``"8"`` for the reply ``"85"``)."""
    token = first_token.strip()
    m = _FIRST_INT.search(text or "")
    if not token.isdigit() or m is None:
        return False
    number = m.group(0).lstrip("-")
    return len(number) > len(token) and number.startswith(token)


def digit_evidence(first_token: str, top_logprobs: Sequence[Mapping[str, Any]], text: str) -> str:
    """What one reply to a 0-100 question tells about the judge's tokenizer:

    * ``"split"``: the reply's number was generated digit by digit (:func:`number_was_split`);
    * ``"whole"``: a number of two or three digits is a single token (the first token, or one of
      its top alternatives), so first-token integers are whole numbers;
    * ``"ambiguous"``: the only integer tokens are single digits, which is what a digit-splitting
      tokenizer shows (the "8" of "85") and also a whole-number one answering 0-9;
    * ``"none"``: no integer token at all.
    """
    if number_was_split(first_token, text):
        return "split"
    ints = list(_integer_tokens(top_logprobs))
    token = first_token.strip()
    if (token.isdigit() and len(token) > 1) or any(width > 1 for _, width, _ in ints):
        return "whole"
    return "ambiguous" if ints else "none"


def read_rating(text: str, max_rating: int = 2) -> tuple[float | None, str]:
    """``(rating, note)`` after the *last* ``Rating:`` in ``text`` (AxBench convention).

    The rest of that line, without brackets, quotes, asterisks or a final period, is read as a
    number. No ``Rating:`` or no number: 0 (unparseable counts as 0), with a note saying so. A
    number that is not one of ``0, 1, ..., max_rating`` (``"0.15"``, ``"7"``): ``None``, missing,
    with the reason. The note is empty for a clean rating.
    """
    if not isinstance(text, str) or "Rating:" not in text:
        return 0.0, "no 'Rating:' in the reply, counted as 0"
    tail = text.rsplit("Rating:", 1)[1].strip()
    line = tail.split("\n", 1)[0].strip()
    line = line.replace("[", "").replace("]", "").strip()
    line = line.rstrip(".").strip().strip('"').strip("'").strip("*").strip()
    try:
        value = float(line)
    except ValueError:
        return 0.0, f"rating {line[:20]!r} is not a number, counted as 0"
    allowed = range(0, int(max_rating) + 1)
    if not math.isfinite(value) or value not in allowed:
        scale = ", ".join(str(r) for r in allowed)
        return None, f"rating {line[:20]} is not one of {scale}"
    return value, ""


def parse_rating(text: str, max_rating: int = 2) -> float | None:
    """The rating of :func:`read_rating` without its note: a number in ``0..max_rating``, 0 when
    unparseable, ``None`` when the number is off the scale."""
    return read_rating(text, max_rating)[0]


def combine_ratings(ratings: Sequence[float], max_rating: float = 2.0) -> float:
    """Harmonic mean of ``ratings`` (0 when any is 0), scaled so ``max_rating`` gives 100."""
    if not ratings:
        raise ValueError("combine_ratings needs at least one rating")
    if any(r <= 0 for r in ratings):
        return 0.0
    hm = len(ratings) / sum(1.0 / r for r in ratings)
    return min(100.0, 100.0 * hm / max_rating)
