import numpy as np
import pytest

from workbench.evaluation.strength import bootstrap_ci, find_alpha


def linear(slope, start=95.0):
    return lambda alpha: max(0.0, start - slope * alpha)


@pytest.mark.parametrize("slope,expected", [(7.5, 2.0), (1.0, 15.0), (30.0, 0.5)])
def test_bisection_finds_the_planted_alpha(slope, expected):
    result = find_alpha(linear(slope), target=80, tol=0.5)
    assert result.reached
    assert abs(result.coherence - 80) <= 0.5
    assert result.alpha == pytest.approx(expected, abs=0.5 / slope + 1e-9)


def test_steps_are_bounded_and_traced():
    curved = lambda a: 95.0 - 15.0 * (a / 5.0) ** 3
    result = find_alpha(curved, target=80, tol=1e-6, max_steps=6)
    assert len(result.trace) == 6
    assert not result.reached and "after 6 evaluations" in result.reason
    assert result.trace[0][0] == 0.0


def test_a_straight_curve_is_found_by_interpolation_in_one_step_after_bracketing():
    result = find_alpha(linear(6.0), target=80, tol=0.5)  # 95, 89, 83, 71: bracket (2, 4), line meets 80 at 2.5
    assert result.reached and [a for a, _ in result.trace] == [0.0, 1.0, 2.0, 4.0, 2.5]
    # a curve that falls off a cliff still converges, the 20-80 % margin keeps the search moving
    cliff = find_alpha(lambda a: 99.0 if a < 2.7 else 40.0, target=80, tol=2, max_steps=20)
    assert not cliff.reached and 2.5 < cliff.alpha < 2.7


def test_target_below_reach_is_reported():
    flat = find_alpha(lambda a: 95.0, target=80, alpha_max=16)
    assert not flat.reached and "stays at 95.0 > target up to alpha=16" in flat.reason
    broken = find_alpha(lambda a: 40.0, target=80)
    assert not broken.reached and broken.alpha == 0.0 and "already at alpha=0" in broken.reason


def test_works_with_noisy_non_strict_monotone_curves():
    steps = lambda a: 100.0 if a < 3 else (81.0 if a < 5 else 10.0)
    result = find_alpha(steps, target=80, tol=2)
    assert result.reached and 3 <= result.alpha < 5


def test_bad_search_arguments():
    with pytest.raises(ValueError, match="target coherence"):
        find_alpha(linear(1), target=120)
    with pytest.raises(ValueError, match="alpha_min < alpha_start"):
        find_alpha(linear(1), alpha_start=0)
    with pytest.raises(ValueError, match="NaN"):
        find_alpha(lambda a: float("nan"))


def test_bootstrap_ci_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    small, large = rng.normal(50, 10, 20), rng.normal(50, 10, 2000)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5
    assert bootstrap_ci(small, seed=3) == bootstrap_ci(small, seed=3)
    with pytest.raises(ValueError, match="no NaN"):
        bootstrap_ci([1.0, float("nan")])


def test_flat_coherence_at_the_target_returns_the_strongest_alpha_not_zero():
    # a steerer on top of a prompt whose own coherence is the target: flat, then falling
    curve = lambda a: 80.0 if a <= 4 else max(0.0, 80.0 - 10 * (a - 4))
    result = find_alpha(curve, target=80, tol=2)
    assert result.reached and 4.0 <= result.alpha <= 4.2
    # starting within tol but below the target: no steering is the answer
    below = find_alpha(lambda a: 79.0 - a, target=80, tol=2)
    assert below.reached and below.alpha == 0.0 and len(below.trace) == 1
