"""Paired bootstrap and verdicts on planted differences (no model)."""

import math

import numpy as np
import pytest

from workbench.evaluation.statistics import (
    DOES_NOT_HOLD,
    HOLDS,
    NOT_SEPARABLE,
    bootstrap_ci,
    claim_verdict,
    paired_bootstrap,
    per_question,
    unpaired_bootstrap,
)
from workbench.evaluation.strength import bootstrap_ci as strength_bootstrap_ci


def _planted(n=60, effect=5.0, question_sd=30.0, noise_sd=2.0, seed=0):
    """Two methods sharing a large per-question effect; ``a`` is better by ``effect``."""
    rng = np.random.default_rng(seed)
    question = rng.normal(50, question_sd, n)
    return question + effect + rng.normal(0, noise_sd, n), question + rng.normal(0, noise_sd, n)


def test_real_difference_is_called():
    a, b = _planted(effect=5.0)
    diff = paired_bootstrap(a, b, names=("A-PSR", "Const-DiM"))
    assert diff.n == 60 and diff.paired
    assert diff.lo > 0 and diff.lo <= diff.mean <= diff.hi
    assert abs(diff.mean - 5.0) < 1.5
    assert diff.verdict == "A-PSR beats Const-DiM"
    flipped = paired_bootstrap(b, a, names=("Const-DiM", "A-PSR"))
    assert flipped.verdict == "A-PSR beats Const-DiM" and flipped.hi < 0


def test_identical_methods_are_not_separated():
    a, _ = _planted()
    same = paired_bootstrap(a, a.copy())
    assert (same.mean, same.lo, same.hi) == (0.0, 0.0, 0.0)
    assert same.verdict == NOT_SEPARABLE
    a, b = _planted(effect=0.0, seed=3)  # no planted difference, only noise
    assert paired_bootstrap(a, b).verdict == NOT_SEPARABLE


def test_pairing_tightens_the_interval():
    a, b = _planted(effect=5.0, question_sd=30.0)
    paired, unpaired = paired_bootstrap(a, b), unpaired_bootstrap(a, b)
    assert paired.mean == pytest.approx(unpaired.mean)
    assert (paired.hi - paired.lo) * 5 < unpaired.hi - unpaired.lo
    assert unpaired.verdict == NOT_SEPARABLE and paired.lo > 0  # only the pairing separates them
    shuffled = paired_bootstrap(a, np.random.default_rng(1).permutation(b))  # pairing destroyed
    assert (shuffled.hi - shuffled.lo) > 4 * (paired.hi - paired.lo)
    assert shuffled.verdict == NOT_SEPARABLE


def test_samples_are_averaged_within_question_first():
    rng = np.random.default_rng(0)
    question = rng.normal(50, 20, 30)
    a = question[:, None] + 3 + rng.normal(0, 1, (30, 4))
    b = question[:, None] + rng.normal(0, 1, (30, 4))
    diff = paired_bootstrap(a, b)
    assert diff.n == 30  # questions, not 120 samples
    flat = paired_bootstrap(a.mean(axis=1), b.mean(axis=1))
    assert (diff.mean, diff.lo, diff.hi) == pytest.approx((flat.mean, flat.lo, flat.hi))
    # grouping flat scores by question gives the same per-question means
    questions = [f"q{i}" for i in range(30) for _ in range(4)]
    assert per_question(a.ravel(), questions) == pytest.approx(a.mean(axis=1))


def test_missing_scores_drop_the_question_from_both():
    a = np.array([[1.0, np.nan], [np.nan, np.nan], [3.0, 5.0]])
    b = np.array([0.0, 7.0, 1.0])
    assert per_question(a) == pytest.approx([1.0, np.nan, 4.0], nan_ok=True)
    diff = paired_bootstrap(a, b)
    assert diff.n == 2 and diff.mean == pytest.approx(2.0)
    none = paired_bootstrap([np.nan], [1.0])
    assert none.n == 0 and math.isnan(none.mean) and none.verdict == "not measured"


def test_mismatched_questions_are_refused():
    with pytest.raises(ValueError, match="same questions"):
        paired_bootstrap([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap([1, 2], [1, 2], level=1.5)


def test_claim_verdicts():
    assert claim_verdict(0.5, 2.0) == HOLDS
    assert claim_verdict(-2.0, -0.5) == DOES_NOT_HOLD
    assert claim_verdict(-1.0, 1.0) == NOT_SEPARABLE
    assert claim_verdict(0.0, 0.0) == DOES_NOT_HOLD  # no difference on any question
    assert claim_verdict(1.2, 3.0, threshold=1.0) == HOLDS
    assert claim_verdict(-0.3, -0.1, direction="<") == HOLDS
    assert claim_verdict(0.1, 0.3, direction="<") == DOES_NOT_HOLD
    assert claim_verdict(float("nan"), 1.0) == "not measured"
    with pytest.raises(ValueError, match="direction"):
        claim_verdict(0, 1, direction=">=")


def test_bootstrap_ci_kept_in_strength():
    assert strength_bootstrap_ci is bootstrap_ci
    lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0], seed=0)
    assert 1.0 <= lo < 2.5 < hi <= 4.0
