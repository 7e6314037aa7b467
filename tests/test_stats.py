"""Tests of selfdistill.stats against a printed t table and a slow numerical-integration reference
(tests/reference_stats.py)."""

from __future__ import annotations

import math

import pytest
from reference_stats import T975_TABLE, T995_TABLE, paired_interval, t_cdf_central, t_quantile_by_integration

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


@pytest.mark.parametrize("dof", [1, 2, 5, 6])
@pytest.mark.parametrize("t", [0.3, 1.0, 2.5])
def test_two_sided_probability_matches_numerical_integration(dof, t):
    assert stats.t_two_sided_prob(t, dof) == pytest.approx(2 * t_cdf_central(t, dof), abs=1e-10)


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


def test_one_value_has_no_interval_and_no_verdict():
    got = stats.t_interval([0.2])
    assert got.n == 1 and got.mean == 0.2 and math.isnan(got.low) and math.isnan(got.high)
    assert stats.verdict(got) == "inconclusive"
    assert "1 seed" in stats.why_inconclusive(got)


def test_nan_values_are_dropped():
    assert stats.t_interval([math.nan, 0.1, 0.3]).n == 2
    assert stats.t_interval([]).n == 0 and stats.why_inconclusive(stats.t_interval([])) == "no paired seeds"


def test_verdicts_follow_the_interval():
    assert stats.verdict(stats.Interval(3, 0.05, 0.01, 0.09)) == "better"
    assert stats.verdict(stats.Interval(3, -0.05, -0.09, -0.01)) == "worse"
    assert stats.verdict(stats.Interval(3, 0.05, -0.01, 0.11)) == "inconclusive"
    assert stats.verdict(stats.Interval(3, 0.05, 0.01, 0.09), "found", "found") == "found"


def test_identical_differences_have_a_zero_width_interval():
    got = stats.t_interval([0.02, 0.02, 0.02])
    assert got.low == got.high == pytest.approx(0.02) and stats.verdict(got) == "better"


def test_bad_arguments():
    with pytest.raises(ValueError):
        stats.t_quantile(0.4, 3)
    with pytest.raises(ValueError):
        stats.t_two_sided_prob(1.0, 0)
