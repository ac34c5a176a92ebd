"""Bootstrap intervals of a mean and of a paired difference between two methods.

Every method of a comparison answers the same test questions with the same sampling seeds
(common random numbers), so two methods' scores come in pairs, one per question. The paired
bootstrap resamples *questions* and recomputes the mean difference on each resample: what is
common to both methods on a question (an easy question, a lucky seed) cancels, and the interval of
the difference is narrower than the two methods' own intervals suggest. With several samples per
question the samples are averaged within their question first, so the interval resamples the unit
that was drawn independently (the question), not the samples, which share it.

A difference is called only when its interval excludes 0 (:func:`verdict`); otherwise the two
methods are "not separable at this n". :func:`claim_verdict` reads an interval against a
threshold as a finding that holds, does not hold, or cannot be told at this n.

Plain numpy: nothing here touches a model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

NOT_SEPARABLE = "not separable at this n"
NOT_MEASURED = "not measured"
HOLDS, DOES_NOT_HOLD = "holds", "does not hold"


def _check_level(level: float, n_boot: int) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")


def resample_indices(n: int, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """``[n_boot, n]`` indices of ``n`` units drawn with replacement (one bootstrap resample a row)."""
    if n < 1:
        raise ValueError(f"need at least one unit to resample, got n={n}")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap ``draws`` (``[n_boot]``)."""
    tail = (1 - level) / 2
    return float(np.quantile(draws, tail)), float(np.quantile(draws, 1 - tail))


def bootstrap_ci(values: Sequence[float], n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values`` (``[n]``, NaN-free)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0 or np.isnan(data).any():
        raise ValueError("bootstrap needs at least one value and no NaN")
    _check_level(level, n_boot)
    means = data[resample_indices(data.size, n_boot, seed)].mean(axis=1)
    return percentile_interval(means, level)


def per_question(scores, questions: Sequence | None = None) -> np.ndarray:
    """Per-question means.

    Args:
        scores: ``[n]`` (one score per question) or ``[n, k]`` (``k`` samples per question, NaN
            for a missing judgement); or, with ``questions``, a flat ``[m]`` list of scores whose
            question is ``questions[i]``.
        questions: the question of each flat score (order of first appearance is kept).
    Returns:
        ``[n]``: the mean over each question's scores that are not NaN (NaN where none is).
    """
    data = np.asarray(scores, dtype=float)
    if questions is not None:
        if data.ndim != 1 or len(questions) != data.size:
            raise ValueError(f"{len(questions)} questions for {data.size} scores; give one question per score")
        order = list(dict.fromkeys(questions))
        index = {q: i for i, q in enumerate(order)}
        sums, counts = np.zeros(len(order)), np.zeros(len(order))
        for q, v in zip(questions, data):
            if not math.isnan(v):
                sums[index[q]] += v
                counts[index[q]] += 1
        with np.errstate(invalid="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    if data.ndim == 1:
        return data
    if data.ndim != 2:
        raise ValueError(f"scores must be [questions] or [questions, samples], got shape {data.shape}")
    present = ~np.isnan(data)
    counts = present.sum(axis=1)
    sums = np.where(present, data, 0.0).sum(axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``a - b`` over questions with its bootstrap interval.

    Attributes:
        mean: mean over questions of the per-question difference.
        lo, hi: the percentile interval at ``level``.
        n: questions that entered (those where both methods have a score).
        paired: whether questions were resampled together (False: each method on its own).
    """

    a: str
    b: str
    mean: float
    lo: float
    hi: float
    n: int
    level: float = 0.95
    paired: bool = True

    @property
    def verdict(self) -> str:
        return verdict(self)

    def as_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    x, y = per_question(a), per_question(b)
    if x.shape != y.shape:
        raise ValueError(f"paired scores need the same questions: got {x.shape[0]} and {y.shape[0]} questions")
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def paired_bootstrap(a, b, *, names: tuple[str, str] = ("A", "B"), n_boot: int = 2000, level: float = 0.95,
                     seed: int = 0) -> PairedDifference:
    """Paired bootstrap interval of ``mean(a) - mean(b)``, resampling questions.

    Args:
        a, b: per-question scores of two methods on the same questions in the same order:
            ``[n]`` or ``[n, samples]`` (averaged within question first; NaN = missing). A
            question missing in either method is left out of both.
        names: the two methods' names (for the verdict).
    Returns:
        A :class:`PairedDifference`; NaN mean and interval with ``n == 0`` when no question has both.
    """
    _check_level(level, n_boot)
    x, y = _pair(a, b)
    if x.size == 0:
        return PairedDifference(names[0], names[1], math.nan, math.nan, math.nan, 0, level)
    diff = x - y
    draws = diff[resample_indices(diff.size, n_boot, seed)].mean(axis=1)
    lo, hi = percentile_interval(draws, level)
    return PairedDifference(names[0], names[1], float(diff.mean()), lo, hi, int(diff.size), level)


def unpaired_bootstrap(a, b, *, names: tuple[str, str] = ("A", "B"), n_boot: int = 2000, level: float = 0.95,
                       seed: int = 0) -> PairedDifference:
    """The same difference with each method's questions resampled independently: what the interval
    would be if the pairing were ignored (it is at least as wide when the scores share question effects)."""
    _check_level(level, n_boot)
    x, y = _pair(a, b)
    if x.size == 0:
        return PairedDifference(names[0], names[1], math.nan, math.nan, math.nan, 0, level, paired=False)
    draws = (x[resample_indices(x.size, n_boot, seed)].mean(axis=1)
             - y[resample_indices(y.size, n_boot, seed + 1)].mean(axis=1))
    lo, hi = percentile_interval(draws, level)
    return PairedDifference(names[0], names[1], float(x.mean() - y.mean()), lo, hi, int(x.size), level, paired=False)


def verdict(diff: PairedDifference) -> str:
    """``"A beats B"`` when the interval lies above 0, ``"B beats A"`` below, else not separable."""
    if diff.n == 0 or math.isnan(diff.lo):
        return NOT_MEASURED
    if diff.lo > 0:
        return f"{diff.a} beats {diff.b}"
    if diff.hi < 0:
        return f"{diff.b} beats {diff.a}"
    return NOT_SEPARABLE


def claim_verdict(lo: float, hi: float, threshold: float = 0.0, direction: str = ">") -> str:
    """Read an interval ``[lo, hi]`` as a finding "value ``direction`` threshold".

    ``direction=">"``: holds when ``lo > threshold``; does not hold when ``hi < threshold``, or when
    ``lo == hi == threshold`` (every resample gives exactly the threshold: the data show no
    difference at all, e.g. two methods that score alike on every question); otherwise not
    separable at this n. ``direction="<"`` mirrors it. NaN bounds: ``"not measured"``.
    """
    if direction not in (">", "<"):
        raise ValueError(f"direction must be '>' or '<', got {direction!r}")
    if any(isinstance(v, float) and math.isnan(v) for v in (lo, hi)):
        return NOT_MEASURED
    if lo > hi:
        raise ValueError(f"an interval needs lo <= hi, got [{lo}, {hi}]")
    if direction == "<":
        lo, hi, threshold = -hi, -lo, -threshold
    if lo > threshold:
        return HOLDS
    if hi < threshold or lo == hi == threshold:
        return DOES_NOT_HOLD
    return NOT_SEPARABLE
