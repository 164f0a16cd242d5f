"""pipeline.stats against hand-computed and published values."""

from __future__ import annotations

import math

import pytest

from pipeline.stats import (
    Interval,
    adjusted_nps,
    nps,
    nps_interval,
    nps_standard_error,
    one_sided_p_value,
    two_nps_z,
    two_proportion_z,
    wilson_interval,
    z_for_confidence,
)

Z95 = 1.959963984540054


def test_z_for_confidence():
    assert z_for_confidence(0.95) == pytest.approx(Z95, abs=1e-12)
    assert z_for_confidence(0.90) == pytest.approx(1.6448536269514722, abs=1e-12)
    assert z_for_confidence(0.99) == pytest.approx(2.5758293035489004, abs=1e-12)
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError):
            z_for_confidence(bad)


def test_nps_point_values():
    assert nps(50, 20, 100) == 30.0
    assert nps(10, 0, 10) == 100.0
    assert nps(0, 10, 10) == -100.0
    assert nps(0, 0, 10) == 0.0
    assert nps(1, 2, 3) == pytest.approx(-100 / 3)
    assert nps(0, 0, 0) is None


@pytest.mark.parametrize("counts", [(-1, 0, 5), (0, -1, 5), (3, 3, 5)])
def test_nps_rejects_impossible_counts(counts):
    with pytest.raises(ValueError):
        nps(*counts)
    with pytest.raises(ValueError):
        nps_interval(*counts)


def test_adjusted_wald_by_hand():
    # P=50, D=20, n=100: add 3/4 to P and D, 3 to n.
    p = 50.75 / 103
    d = 20.75 / 103
    var = p + d - (p - d) ** 2
    se = 100 * math.sqrt(var / 103)
    centre = 100 * (p - d)
    assert adjusted_nps(50, 20, 100) == pytest.approx(centre)
    assert centre == pytest.approx(29.12621359, abs=1e-8)  # 3000/103
    assert nps_standard_error(50, 20, 100) == pytest.approx(se)
    assert se == pytest.approx(7.69151042, abs=1e-8)
    low, high = nps_interval(50, 20, 100)
    assert (low, high) == pytest.approx((centre - Z95 * se, centre + Z95 * se))
    assert low == pytest.approx(14.0511, abs=1e-4)
    assert high == pytest.approx(44.2013, abs=1e-4)


def test_adjusted_wald_width_at_a_third_each():
    # The notes: at p = d = 1/3 the 95 % half-width is about 160/sqrt(n).
    n = 999
    low, high = nps_interval(333, 333, n)
    assert (high - low) / 2 == pytest.approx(160 / math.sqrt(n), rel=0.01)
    assert (low + high) / 2 == pytest.approx(0.0, abs=1e-9)


def test_interval_edges():
    assert nps_interval(0, 0, 0) == Interval(-100.0, 100.0)
    # All promoters: the upper bound is clipped to 100, the lower one stays below.
    low, high = nps_interval(10, 0, 10)
    p, d = 10.75 / 13, 0.75 / 13
    expected_low = 100 * (p - d) - Z95 * 100 * math.sqrt((p + d - (p - d) ** 2) / 13)
    assert high == 100.0
    assert low == pytest.approx(expected_low)
    assert low == pytest.approx(47.5036, abs=1e-4)
    low, high = nps_interval(0, 10, 10)
    assert low == -100.0
    assert high == pytest.approx(-47.5036, abs=1e-4)
    # A wider confidence gives a wider interval.
    assert nps_interval(50, 20, 100, 0.99)[0] < nps_interval(50, 20, 100, 0.90)[0]


# Newcombe (1998), "Two-sided confidence intervals for the single proportion",
# Statistics in Medicine 17, Table I, Wilson score method (and the common 0/10, 5/10).
@pytest.mark.parametrize(
    ("x", "n", "low", "high"),
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0000, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (0, 10, 0.0000, 0.2775),
        (5, 10, 0.2366, 0.7634),
    ],
)
def test_wilson_published_values(x, n, low, high):
    got = wilson_interval(x, n)
    assert got.low == pytest.approx(low, abs=5e-5)
    assert got.high == pytest.approx(high, abs=5e-5)


def test_wilson_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 10).low == 0.0
    assert wilson_interval(10, 10).high == 1.0
    assert wilson_interval(10, 10).low == pytest.approx(1 - 0.2775, abs=5e-5)
    for bad in ((-1, 5), (6, 5), (0, -1)):
        with pytest.raises(ValueError):
            wilson_interval(*bad)


def test_two_nps_z_sign_and_magnitude():
    # Sample 1: P=30 D=40 n=100 (NPS -10); sample 2: P=50 D=20 n=100 (NPS 30).
    a1, a2 = 100 * (30.75 - 40.75) / 103, 100 * (50.75 - 20.75) / 103
    p1, d1 = 30.75 / 103, 40.75 / 103
    p2, d2 = 50.75 / 103, 20.75 / 103
    se1 = 100 * math.sqrt((p1 + d1 - (p1 - d1) ** 2) / 103)
    se2 = 100 * math.sqrt((p2 + d2 - (p2 - d2) ** 2) / 103)
    expected = (a1 - a2) / math.sqrt(se1**2 + se2**2)
    z = two_nps_z(30, 40, 100, 50, 20, 100)
    assert z == pytest.approx(expected)
    assert z == pytest.approx(-3.4646, abs=1e-4)
    assert two_nps_z(50, 20, 100, 30, 40, 100) == pytest.approx(-z)
    assert two_nps_z(50, 20, 100, 50, 20, 100) == 0.0
    assert two_nps_z(5, 0, 5, 0, 0, 0) == 0.0
    # More answers, same shares: stronger evidence.
    assert abs(two_nps_z(300, 400, 1000, 500, 200, 1000)) > abs(z)


def test_two_proportion_z_by_hand():
    # 30/100 vs 20/200: pooled q = 50/300.
    q = 50 / 300
    expected = (0.3 - 0.1) / math.sqrt(q * (1 - q) * (1 / 100 + 1 / 200))
    z = two_proportion_z(30, 100, 20, 200)
    assert z == pytest.approx(expected)
    assert z == pytest.approx(4.3818, abs=1e-4)
    assert two_proportion_z(20, 200, 30, 100) == pytest.approx(-expected)
    assert two_proportion_z(0, 10, 0, 20) == 0.0
    assert two_proportion_z(10, 10, 20, 20) == 0.0
    assert two_proportion_z(3, 10, 0, 0) == 0.0
    with pytest.raises(ValueError):
        two_proportion_z(11, 10, 1, 10)


def test_one_sided_p_values():
    assert one_sided_p_value(0.0) == pytest.approx(0.5)
    assert one_sided_p_value(1.6448536269514722) == pytest.approx(0.05)
    assert one_sided_p_value(-1.6448536269514722, "less") == pytest.approx(0.05)
    assert one_sided_p_value(1.96, "less") == pytest.approx(0.9750021)
    # Far tails keep their precision (no 1 - cdf cancellation).
    assert one_sided_p_value(10.0) == pytest.approx(7.619853e-24, rel=1e-5)
    with pytest.raises(ValueError):
        one_sided_p_value(1.0, "two-sided")  # type: ignore[arg-type]
