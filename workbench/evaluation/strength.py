"""Strength search: the steering strength ``alpha`` at which coherence falls to a target.

Steering harder raises the attribute and, past some point, breaks the text. Methods are compared
at equal coherence (DESIGN.md section 5): for each method, bisection finds the ``alpha`` whose
mean coherence on a validation split is within ``tol`` of the target (80 by default); the
attribute score at that ``alpha`` on the test split is ``TA@C80``.

:func:`find_alpha` is the search on any ``alpha -> mean coherence`` function, assuming coherence
does not rise with ``alpha`` (it reports when the target cannot be reached instead of guessing);
:func:`bootstrap_ci` (now in :mod:`workbench.evaluation.statistics`, re-exported here) gives
percentile confidence intervals of a mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

from workbench.evaluation.statistics import bootstrap_ci  # moved there; re-exported here

__all__ = ["SearchResult", "bootstrap_ci", "find_alpha"]


@dataclass(frozen=True)
class SearchResult:
    """Outcome of a strength search.

    Attributes:
        alpha: the chosen strength (the best found when the target was not reached).
        coherence: mean coherence at ``alpha``.
        reached: whether ``|coherence - target| <= tol``.
        reason: why not, when not reached.
        trace: every ``(alpha, coherence)`` evaluated, in order.
    """

    alpha: float
    coherence: float
    reached: bool
    target: float
    reason: str = ""
    trace: tuple[tuple[float, float], ...] = field(default=())


def find_alpha(
    coherence_at: Callable[[float], float],
    target: float = 80.0,
    *,
    alpha_min: float = 0.0,
    alpha_start: float = 1.0,
    alpha_max: float = 64.0,
    tol: float = 2.0,
    max_steps: int = 12,
) -> SearchResult:
    """The strongest ``alpha`` whose mean coherence is within ``tol`` of ``target``.

    Coherence is assumed not to rise with ``alpha`` (noise aside). The search brackets the point
    where coherence crosses below the target: the upper end starts at ``alpha_start`` and doubles
    (up to ``alpha_max``) while coherence stays at or above the target, then the bracket is
    narrowed, at the point where the straight line between its ends meets the target (kept within
    the bracket's middle 60 %), until an evaluation lands within ``tol``. At most ``max_steps``
    evaluations.

    Of the evaluated strengths within ``tol``, the largest is returned: where coherence is flat
    near the target (say, a steerer stacked on a prompt whose own coherence is the target), the
    answer is the most steering that coherence allows, not ``alpha_min``.
    """
    if not 0 <= target <= 100:
        raise ValueError(f"target coherence must be within 0-100, got {target}")
    if not (0 <= alpha_min < alpha_start <= alpha_max) or not math.isfinite(alpha_max):
        raise ValueError(f"need 0 <= alpha_min < alpha_start <= alpha_max < inf, got {alpha_min}, {alpha_start}, {alpha_max}")
    if tol <= 0 or max_steps < 2:
        raise ValueError(f"tol must be > 0 and max_steps >= 2, got tol={tol}, max_steps={max_steps}")
    trace: list[tuple[float, float]] = []

    def at(alpha: float) -> float:
        value = float(coherence_at(alpha))
        if math.isnan(value):
            raise ValueError(f"coherence at alpha={alpha} is NaN")
        trace.append((alpha, value))
        return value

    def result(reason: str) -> SearchResult:
        within = [p for p in trace if abs(p[1] - target) <= tol]
        if within:
            alpha, value = max(within)
            return SearchResult(alpha, value, True, target, "", tuple(trace))
        alpha, value = min(trace, key=lambda p: (abs(p[1] - target), -p[0]))  # ties: the stronger
        return SearchResult(alpha, value, False, target, reason, tuple(trace))

    low_value = at(alpha_min)
    if low_value < target - tol:
        return result(f"coherence is {low_value:.1f} < target already at alpha={alpha_min}")
    if low_value < target:
        return result("")  # within tol just below the target: any steering only lowers it
    low, high = alpha_min, alpha_start
    high_value = at(high)
    while high_value >= target and high < alpha_max and len(trace) < max_steps:
        low, low_value = high, high_value
        high = min(2 * high, alpha_max)
        high_value = at(high)
    if high_value >= target + tol or (high_value >= target and not any(abs(c - target) <= tol for _, c in trace)):
        return result(f"coherence stays at {high_value:.1f} > target up to alpha={high}")
    if high_value >= target:
        return result("")  # alpha_max (or the step budget) reached while still within tol
    last = high_value
    while abs(last - target) > tol and len(trace) < max_steps:
        mid = _interpolate(low, low_value, high, high_value, target)
        last = at(mid)
        if last >= target:
            low, low_value = mid, last
        else:
            high, high_value = mid, last
    return result(f"no alpha within {tol} of the target after {len(trace)} evaluations")


def _interpolate(low: float, low_value: float, high: float, high_value: float, target: float) -> float:
    """Where the line through the bracket's ends meets the target, kept within its middle 60 %
    (plain bisection would ignore how far each end is from the target; the margin stops the
    search from creeping along one end when the curve is far from straight)."""
    if low_value <= high_value:  # not decreasing across the bracket (noise): halve it
        return (low + high) / 2
    fraction = (low_value - target) / (low_value - high_value)
    return low + (high - low) * min(0.8, max(0.2, fraction))
