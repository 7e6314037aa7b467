"""Tests of selfdistill.stats against a printed t table, a slow numerical-integration reference
(tests/reference_stats.py) and the textbook Holm procedure written as loops; one test per verdict rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference_stats import (
    T975_TABLE,
    T995_TABLE,
    loop_spearman,
    paired_interval,
    t_cdf_central,
    t_quantile_by_integration,
)

from selfdistill import stats


@pytest.mark.parametrize("dof", sorted(T975_TABLE))
def test_t_quantile_matches_the_printed_table(dof):
    assert round(stats.t_quantile(0.975, dof), 3) == pytest.approx(T975_TABLE[dof], abs=1e-9)


@pytest.mark.parametrize("dof", sorted(T995_TABLE))
def test_t_quantile_99_matches_the_printed_table(dof):
    assert round(stats.t_quantile(0.995, dof), 3) == pytest.approx(T995_TABLE[dof], abs=1e-9)


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 7, 30, 31, 200])
def test_t_quantile_matches_numerical_integration(dof):
    assert stats.t_quantile(0.975, dof) == pytest.approx(t_quantile_by_integration(0.975, dof), rel=1e-8)


def test_large_dof_tends_to_the_normal_quantile():
    assert stats.t_quantile(0.975, 100_000) == pytest.approx(1.959964, abs=1e-4)


def test_t_interval_against_explicit_loops():
    a, b = [0.81, 0.84, 0.79, 0.86], [0.80, 0.80, 0.80, 0.81]
    got = stats.t_interval([x - y for x, y in zip(a, b, strict=True)])
    mean, low, high = paired_interval(a, b, T975_TABLE[3])
    assert got.n == 4 and got.mean == pytest.approx(mean, abs=1e-12)
    # the table has 3 decimals: the half-width agrees to its relative precision
    assert got.high - got.mean == pytest.approx(high - mean, rel=2e-4)
    assert got.mean - got.low == pytest.approx(mean - low, rel=2e-4)
    exact = stats.t_quantile(0.975, 3) / T975_TABLE[3]
    assert got.high - got.mean == pytest.approx((high - mean) * exact, rel=1e-12)


def test_one_value_has_no_interval_and_is_not_testable():
    got = stats.t_interval([0.2])
    assert got.n == 1 and got.mean == 0.2 and math.isnan(got.low) and math.isnan(got.high)
    assert math.isnan(got.p_value)
    verdict = stats.verdict(got)
    assert verdict.kind == stats.NOT_TESTABLE and verdict.text == "not testable (1 seed)"
    assert not verdict.is_result


def test_nan_values_are_dropped():
    assert stats.t_interval([math.nan, 0.1, 0.3]).n == 2
    empty = stats.t_interval([])
    assert empty.n == 0 and stats.verdict(empty).text == "no paired seeds"


def test_an_interval_that_excludes_zero_finds_a_difference_with_its_direction():
    up = stats.verdict(stats.t_interval([0.04, 0.05, 0.06]))
    down = stats.verdict(stats.t_interval([-0.04, -0.05, -0.06]))
    assert (up.kind, up.text) == (stats.FOUND, "difference found (higher)")
    assert (down.kind, down.text) == (stats.FOUND, "difference found (lower)")


def test_an_interval_that_includes_zero_detects_nothing_and_says_it_is_not_absence():
    got = stats.verdict(stats.t_interval([0.05, -0.01, 0.11]))
    assert got.kind == stats.NOT_DETECTED
    assert got.text == "no difference detected (95% interval includes 0)"
    assert "none found" not in got.text and "inconclusive" not in got.text


def test_identical_differences_give_no_verdict_but_say_so():
    got = stats.t_interval([1 / 360, 1 / 360])
    assert got.sd == 0 and got.low == got.high == got.mean and not got.excludes_zero
    # equal up to floating-point rounding counts as equal
    assert stats.t_interval([0.70 - 0.80, 0.72 - 0.82]).sd == 0
    assert stats.t_interval([0.70 - 0.80, 0.71 - 0.82]).sd > 0
    verdict = stats.verdict(got, lambda x: f"{100 * x:+.2f} points")
    assert verdict.kind == stats.CONSTANT and verdict.text == "all 2 seeds differ by exactly +0.28 points"
    assert not verdict.is_result


def test_a_correction_decides_instead_of_the_interval():
    interval = stats.t_interval([0.04, 0.05, 0.06])
    assert stats.verdict(interval, reject=False).kind == stats.NOT_DETECTED
    # a correction never turns an untestable comparison into a result
    assert stats.verdict(stats.t_interval([0.2]), reject=True).kind == stats.NOT_TESTABLE


def test_p_value_against_numerical_integration():
    d = [0.81 - 0.80, 0.84 - 0.80, 0.79 - 0.80, 0.86 - 0.81]
    got = stats.t_interval(d)
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    t = abs(mean) / (sd / math.sqrt(n))
    expected = 1 - 2 * t_cdf_central(t, n - 1)
    assert got.p_value == pytest.approx(expected, abs=1e-9)
    # the p-value and the interval agree: p < 0.05 exactly when the 95% interval excludes 0
    assert (got.p_value < 0.05) == got.excludes_zero


def holm_by_loops(p_values, alpha=0.05):
    """Holm's step-down procedure as in the textbook: sort, compare p_(i) with alpha / (m - i + 1), stop at the first
    failure; adjusted p-values by the running maximum of (m - i + 1) p_(i), capped at 1."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    m = len(p_values)
    rejected = [False] * m
    for rank, i in enumerate(order):
        if p_values[i] <= alpha / (m - rank):
            rejected[i] = True
        else:
            break
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted, rejected


@pytest.mark.parametrize(
    "p_values",
    [[0.01, 0.04, 0.03, 0.005], [0.2, 0.001, 0.011, 0.0125, 0.5], [0.049], [0.3, 0.3, 0.01], [0.0001] * 3],
)
def test_holm_against_the_textbook_procedure(p_values):
    adjusted, rejected = stats.holm(p_values)
    want_adjusted, want_rejected = holm_by_loops(p_values)
    assert adjusted == pytest.approx(want_adjusted, abs=1e-15)
    assert rejected == want_rejected


def test_holm_leaves_untestable_cells_out_of_the_family():
    adjusted, rejected = stats.holm([0.01, math.nan, 0.02])
    assert math.isnan(adjusted[1]) and rejected == [True, False, True]
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.02)


def test_bad_arguments():
    with pytest.raises(ValueError):
        stats.t_quantile(0.4, 3)
    with pytest.raises(ValueError):
        stats.t_quantile(0.975, 0)


def test_spearman_matches_the_loop_with_ties():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, 40).astype(float)
    y = rng.integers(0, 4, 40).astype(float)
    assert stats.spearman(x, y) == pytest.approx(loop_spearman(x, y), rel=1e-12)
    assert stats.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_spearman_keeps_the_finite_pairs_only():
    x, y = [1, 2, 3, 4, 5, 6, 7], [2.0, 2.0, 5.0, 4.0, 9.0, float("nan"), float("inf")]
    assert stats.spearman(x, y) == pytest.approx(loop_spearman(x[:5], y[:5]), rel=1e-12)


def test_spearman_without_enough_pairs_or_with_a_constant_side_is_nan():
    assert math.isnan(stats.spearman([1, 2, 3], [4.0, 4.0, 4.0]))
    assert math.isnan(stats.spearman([1], [2]))
    assert stats.spearman([1, 2], [1.0, 2.0]) == pytest.approx(1.0)
    assert math.isnan(stats.spearman([1, 2], [1.0, 2.0], min_pairs=3))
    assert math.isnan(stats.spearman([1, 2, 3], [1.0, 2.0, float("nan")], min_pairs=3))
