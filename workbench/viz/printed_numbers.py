"""Printed text compared number by number: each number within one unit of its last printed digit.

A notebook kept as a regression test stores what its cells printed. Rerun on a CPU whose kernels
sum floats in another order (torch picks AVX-512, AVX2 or plain kernels by CPU), a mean printed as
``82.1`` may come out ``82.2``: the same result, one rounding away. :func:`printed_numbers_match`
accepts exactly that and nothing more:

- everything that is not a number (words, labels, a verdict, ``reached``, a method order, line
  breaks) must be identical; a run of spaces or tabs matches any other run (a table's padding
  follows the width of its numbers);
- both texts must hold the same count of numbers, in the same places;
- a number with a decimal point or an exponent may differ from its stored value by one unit of
  its last printed digit (``1.816`` vs ``1.817``: 0.001; ``2.5e-04`` vs ``2.6e-04``: 1e-05); where the
  two are printed to different precision (``%g`` drops trailing zeros), the finer one sets it;
- an integer (no point, no exponent, on both sides) must be equal: counts, layers, token ids and
  sizes are exact.

A number is a run of digits not glued to a word (``L10``, ``Q4_K_M`` and ``v0.1`` are text).

Example:
    >>> printed_numbers_match("ye   1.816", "ye   1.817")
    True
    >>> printed_numbers_match("mean 0.78 (n = 12)", "mean 0.80 (n = 12)")
    False
    >>> printed_numbers_match("alpha 10.3303 (reached)", "alpha 10.3303 (max steps)")
    False
"""

from __future__ import annotations

import math
import re

__all__ = ["number_tolerance", "printed_numbers_match", "split_numbers"]

_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_BLANKS = re.compile(r"[ \t]+")
#: Relative slack on the tolerance, for the binary representation of decimal numbers.
_ROUNDING_SLACK = 1e-6


def split_numbers(text: str) -> tuple[list[str], list[str]]:
    """``(texts, numbers)``: the text between numbers (one more than the numbers) and the numbers.

    Example:
        >>> split_numbers("alpha 1.5 -> 70")
        (['alpha ', ' -> ', ''], ['1.5', '70'])
    """
    texts, numbers, start = [], [], 0
    for match in _NUMBER.finditer(text):
        texts.append(text[start:match.start()])
        numbers.append(match.group())
        start = match.end()
    texts.append(text[start:])
    return texts, numbers


def number_tolerance(printed: str) -> float:
    """One unit of the last printed digit of ``printed``; 0 for an integer.

    Example:
        >>> number_tolerance("12.0982"), number_tolerance("82"), number_tolerance("2.5e-04")
        (0.0001, 0.0, 1e-05)
    """
    mantissa, _, exponent = printed.lower().partition("e")
    if "." not in mantissa and not exponent:
        return 0.0
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def _numbers_agree(reference: str, test: str) -> bool:
    if reference == test:
        return True
    tolerances = [t for t in (number_tolerance(reference), number_tolerance(test)) if t > 0]
    if not tolerances:  # two integers
        return False
    a, b = float(reference), float(test)
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    return abs(a - b) <= min(tolerances) * (1 + _ROUNDING_SLACK)


def printed_numbers_match(reference: str, test: str) -> bool:
    """Whether ``test`` prints what ``reference`` printed, up to the last digit of each number."""
    if reference == test:
        return True
    ref_texts, ref_numbers = split_numbers(reference)
    test_texts, test_numbers = split_numbers(test)
    if len(ref_numbers) != len(test_numbers):
        return False
    if any(_BLANKS.sub(" ", r) != _BLANKS.sub(" ", t) for r, t in zip(ref_texts, test_texts)):
        return False
    return all(_numbers_agree(r, t) for r, t in zip(ref_numbers, test_numbers))
