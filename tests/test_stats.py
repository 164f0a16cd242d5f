"""pipeline.stats against hand-computed and published values."""

from __future__ import annotations

import math
import random
import statistics
import time
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pipeline.stats import (
    Interval,
    adjusted_nps,
    benjamini_hochberg,
    bh_adjusted,
    cusum_arl,
    cusum_threshold,
    cusum_update,
    cusum_weights,
    mean_and_variance,
    nps,
    nps_interval,
    nps_standard_error,
    one_sided_p_value,
    silence_p_value,
    two_mean_z,
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
    # Cross-check: z^2 is Pearson's chi-square of the 2x2 table [[30, 70], [20, 180]],
    # N (ad - bc)^2 / (row and column totals) = 300 * 4000^2 / (100 * 200 * 50 * 250).
    assert z * z == pytest.approx(19.2)
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


# --- Benjamini-Hochberg ---------------------------------------------------------------

# Benjamini & Hochberg (1995), section 4.1: the 15 p-values of Neuhaus et al. At q = 0.05
# the procedure rejects the 4 smallest (p_(4) = 0.0095 <= 4 * 0.05 / 15 = 0.0133, and no
# larger p_(k) is below k * 0.05 / 15), where Bonferroni (0.05 / 15) rejects only 3.
BH_1995 = [
    0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344,
    0.0459, 0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.0000,
]  # fmt: skip
# min over j >= i of 15 * p_(j) / j, worked out by hand (p_(6): 0.0695 -> 0.06386 of p_(7)).
BH_1995_ADJUSTED = [
    0.0015, 0.003, 0.0095, 0.035625, 0.0603, 0.0298 * 15 / 7, 0.0298 * 15 / 7, 0.0645,
    0.0765, 0.486, 0.4262 * 15 / 11, 0.714875, 0.6528 * 15 / 13, 0.759 * 15 / 14, 1.0,
]  # fmt: skip


def test_bh_paper_example():
    assert benjamini_hochberg(BH_1995, 0.05) == [True] * 4 + [False] * 11
    assert sum(p <= 0.05 / 15 for p in BH_1995) == 3  # Bonferroni, for contrast
    # At q = 0.1: p_(9) = 0.0459 <= 9 * 0.1 / 15 = 0.06, p_(10) = 0.324 > 0.0667.
    assert benjamini_hochberg(BH_1995, 0.1) == [True] * 9 + [False] * 6
    assert bh_adjusted(BH_1995) == pytest.approx(BH_1995_ADJUSTED, abs=1e-12)


def test_bh_keeps_input_order():
    order = list(range(15))
    random.Random(7).shuffle(order)
    shuffled = [BH_1995[i] for i in order]
    assert benjamini_hochberg(shuffled, 0.05) == [i < 4 for i in order]
    assert bh_adjusted(shuffled) == pytest.approx([BH_1995_ADJUSTED[i] for i in order])


def test_bh_edges_and_validation():
    assert benjamini_hochberg([], 0.05) == []
    assert bh_adjusted([]) == []
    assert benjamini_hochberg([0.05], 0.05) == [True]  # m = 1: p <= q
    assert benjamini_hochberg([0.03, 0.03, 0.03], 0.05) == [True] * 3  # ties go together
    assert bh_adjusted([0.03, 0.03, 0.03]) == pytest.approx([0.03] * 3)
    assert bh_adjusted([0.9, 0.8]) == pytest.approx([0.9, 0.9])  # monotone: min from the top
    assert bh_adjusted([0.6, 0.9]) == pytest.approx([0.9, 0.9])
    assert bh_adjusted([0.6]) == [0.6]
    for bad_q in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            benjamini_hochberg([0.01], bad_q)
    for bad_p in (-0.01, 1.01, math.nan):
        with pytest.raises(ValueError):
            benjamini_hochberg([0.01, bad_p], 0.05)
        with pytest.raises(ValueError):
            bh_adjusted([bad_p])


def _bh_brute_force(p_values, q):
    """The 1995 definition in exact arithmetic: reject p <= p_(k), k the largest with
    p_(k) <= k q / m; and the adjusted values min_{j >= i} min(1, m p_(j) / j)."""
    exact = [Fraction(p) for p in p_values]
    m = len(exact)
    ranked = sorted(exact)
    passing = [k for k in range(1, m + 1) if ranked[k - 1] <= k * Fraction(q) / m]
    cut = ranked[max(passing) - 1] if passing else None
    rejected = [cut is not None and p <= cut for p in exact]
    adjusted_sorted = [
        min(min(Fraction(1), m * ranked[j - 1] / j) for j in range(i, m + 1))
        for i in range(1, m + 1)
    ]
    adjusted = [adjusted_sorted[ranked.index(p)] for p in exact]
    return rejected, adjusted, ranked


@given(
    st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=40),
    st.sampled_from([0.01, 0.05, 0.1, 0.2, 0.5]),
)
def test_bh_matches_the_definition(p_values, q):
    rejected, adjusted, ranked = _bh_brute_force(p_values, q)
    m = len(p_values)
    # Where a p_(k) sits exactly on its line k q / m, float rounding may decide either way.
    assume(all(abs(m * p / k - Fraction(q)) > Fraction(q) / 10**9 for k, p in enumerate(ranked, 1)))
    got = bh_adjusted(p_values)
    assert benjamini_hochberg(p_values, q) == rejected
    assert got == pytest.approx([float(a) for a in adjusted], rel=1e-12)
    assert [a <= q for a in got] == rejected
    assert all(p <= a <= 1.0 for p, a in zip(p_values, got, strict=True))
    by_p = [a for _, a in sorted(zip(p_values, got, strict=True))]
    assert by_p == sorted(by_p)


# --- Bernoulli CUSUM ------------------------------------------------------------------


def test_cusum_weights_by_hand():
    w_hit, w_miss = cusum_weights(0.2, 0.35)
    assert w_hit == pytest.approx(math.log(1.75))
    assert w_hit == pytest.approx(0.5596158, abs=1e-7)
    assert w_miss == pytest.approx(math.log(0.65 / 0.8))
    assert w_miss == pytest.approx(-0.2076394, abs=1e-7)
    for bad in ((0.35, 0.2), (0.2, 0.2), (0.0, 0.3), (0.2, 1.0)):
        with pytest.raises(ValueError):
            cusum_weights(*bad)


def test_cusum_update_by_hand():
    w_hit, w_miss = math.log(1.75), math.log(0.65 / 0.8)
    # 3 detractors in 5 answers from 0: 3 * 0.5596158 - 2 * 0.2076394 = 1.2635686.
    s = cusum_update(0.0, 3, 5, 0.2, 0.35)
    assert s == pytest.approx(3 * w_hit + 2 * w_miss)
    assert s == pytest.approx(1.2635686, abs=1e-7)
    # 1 in 10 from there: 1.2636 + 0.5596 - 9 * 0.2076 < 0, floored at 0.
    assert s + w_hit + 9 * w_miss < 0
    assert cusum_update(s, 1, 10, 0.2, 0.35) == 0.0
    assert cusum_update(2.5, 0, 0, 0.2, 0.35) == 2.5  # an empty bucket changes nothing
    for bad in ((0.0, 6, 5), (0.0, -1, 5), (-0.1, 1, 5)):
        with pytest.raises(ValueError):
            cusum_update(bad[0], bad[1], bad[2], 0.2, 0.35)


def _per_answer(s, answers, p0, p1):
    for is_detractor in answers:
        s = cusum_update(s, int(is_detractor), 1, p0, p1)
    return s


@given(
    st.floats(min_value=0.0, max_value=10.0),
    st.lists(st.booleans(), max_size=60),
    st.sampled_from([(0.2, 0.35), (0.1, 0.3), (0.4, 0.6), (0.02, 0.05)]),
)
def test_cusum_bucket_is_detractors_first_and_a_lower_bound(s, answers, shares):
    p0, p1 = shares
    hits, n = sum(answers), len(answers)
    grouped = cusum_update(s, hits, n, p0, p1)
    first = _per_answer(s, sorted(answers, reverse=True), p0, p1)
    assert grouped == pytest.approx(first, abs=1e-9)
    # Any other order ends the bucket at the grouped value or above.
    assert _per_answer(s, answers, p0, p1) >= grouped - 1e-9
    assert _per_answer(s, sorted(answers), p0, p1) >= grouped - 1e-9


def test_cusum_arl_hand_cases():
    p0, p1 = 0.4, 0.6  # w_hit = ln 1.5 = -w_miss = 0.405
    # h below one step: every detractor alarms, the run length is geometric, mean 1/p.
    assert cusum_arl(p0, p1, 0.3) == pytest.approx(1 / 0.4)
    assert cusum_arl(p0, p1, 0.3, p=0.6) == pytest.approx(1 / 0.6)
    # One step <= h < two: alarm on two detractors in a row, any other answer resets to
    # 0. L0 = 1 + q L0 + p L1, L1 = 1 + q L0 give the classic (1 + p) / p^2.
    assert cusum_arl(p0, p1, 0.5) == pytest.approx(1.4 / 0.16)
    assert cusum_arl(p0, p1, 0.5, p=0.6) == pytest.approx(1.6 / 0.36)
    # Longer limits, longer runs; out of control is much shorter than in control.
    assert cusum_arl(0.2, 0.35, 3.0) < cusum_arl(0.2, 0.35, 4.0)
    assert cusum_arl(0.2, 0.35, 4.0, p=0.35) < cusum_arl(0.2, 0.35, 4.0) / 10
    with pytest.raises(ValueError):
        cusum_arl(0.2, 0.35, -1.0)
    with pytest.raises(ValueError):
        cusum_arl(0.2, 0.35, 1.0, p=1.0)


def _simulated_mean_run_length(p0, p1, h, runs, seed):
    """Mean answers to the first alarm of the per-answer CUSUM on in-control data.

    Exact shortcut: the answers between two detractors form a geometric number of
    non-detractors, which only lower S (one grouped update is exactly their per-answer
    path, see the property test above), so S is compared to h only after a detractor.
    """
    rng = random.Random(seed)
    log_miss = math.log1p(-p0)
    total = 0
    for _ in range(runs):
        s, answers = 0.0, 0
        while True:
            misses = int(math.log(1.0 - rng.random()) / log_miss)
            s = cusum_update(s, 0, misses, p0, p1)
            s = cusum_update(s, 1, 1, p0, p1)
            answers += misses + 1
            if s > h:
                break
        total += answers
    return total / runs


@pytest.mark.parametrize(
    ("p0", "p1", "arl0"),
    [
        (0.2, 0.35, 2000),  # a typical detractor share and shift
        (0.4, 0.6, 500),  # w_hit = -w_miss: a coarse lattice, the ARL moves in big steps
    ],
)
def test_cusum_threshold_by_monte_carlo(p0, p1, arl0):
    started = time.perf_counter()
    h = cusum_threshold(p0, p1, arl0)
    exact = cusum_arl(p0, p1, h)
    # The smallest such h: a hair lower and the in-control ARL falls below arl0.
    assert exact >= arl0
    assert cusum_arl(p0, p1, h * (1 - 1e-5)) < arl0
    assert exact < 1.05 * arl0  # the steps happen to be small at these two settings
    # 1,000 runs: run lengths are close to geometric (sd ~ mean), so the standard error
    # of their mean is ~1/sqrt(1000) = 3.2 %; +-12 % is 3.8 standard errors (fixed seed).
    simulated = _simulated_mean_run_length(p0, p1, h, runs=1000, seed=20240601)
    assert simulated == pytest.approx(exact, rel=0.12)
    assert time.perf_counter() - started < 3.0


def test_cusum_threshold_edges():
    assert cusum_threshold(0.2, 0.35, 4.0) == 0.0  # 1/p0 = 5 answers already
    assert cusum_arl(0.2, 0.35, 0.0) == pytest.approx(5.0)
    assert cusum_threshold(0.2, 0.35, 10_000) > cusum_threshold(0.2, 0.35, 1000)
    for bad in ((0.2, 0.35, 0.5), (0.35, 0.2, 1000), (0.2, 0.35, math.nan)):
        with pytest.raises(ValueError):
            cusum_threshold(*bad)


# --- Silence --------------------------------------------------------------------------


def test_silence_by_hand():
    assert silence_p_value(0.0) == 1.0
    assert silence_p_value(4.6) == pytest.approx(0.0100518, abs=1e-7)  # e^-4.6
    assert silence_p_value(math.log(100)) == pytest.approx(0.01)
    # 8.33 answers expected in the silent span: e^-8.33 = 2.4e-4
    assert silence_p_value(25 / 3) == pytest.approx(2.4036e-4, rel=1e-4)
    with pytest.raises(ValueError):
        silence_p_value(-1.0)


# --- Means ----------------------------------------------------------------------------

CSAT_A = [4, 5, 3, 5, 2]  # total 19, squares 79: mean 3.8, var (79 - 19^2/5) / 4 = 1.7
CSAT_B = [1, 2, 2, 3]  # total 8, squares 18: mean 2, var (18 - 16) / 3 = 2/3


def _sums(scores):
    return sum(scores), sum(x * x for x in scores), len(scores)


def test_mean_and_variance_by_hand():
    assert mean_and_variance(*_sums(CSAT_A)) == pytest.approx((3.8, 1.7))
    assert mean_and_variance(*_sums(CSAT_B)) == pytest.approx((2.0, 2 / 3))
    for scores in (CSAT_A, CSAT_B, [7, 7, 1, 4, 6, 5, 5, 2]):
        mean, var = mean_and_variance(*_sums(scores))
        assert mean == pytest.approx(statistics.mean(scores))
        assert var == pytest.approx(statistics.variance(scores))
    assert mean_and_variance(4, 16, 1) == (4.0, 0.0)
    assert mean_and_variance(0, 0, 0) == (0.0, 0.0)
    assert mean_and_variance(15, 45, 5) == (3.0, 0.0)  # all 3s
    with pytest.raises(ValueError):
        mean_and_variance(10, 10, 2)  # 2 * 10 < 10^2: no data gives these sums
    with pytest.raises(ValueError):
        mean_and_variance(1, 1, -1)


def test_two_mean_z_by_hand():
    # (3.8 - 2) / sqrt(1.7/5 + (2/3)/4) = 1.8 / sqrt(0.5066667) = 2.528782
    z = two_mean_z(*_sums(CSAT_A), *_sums(CSAT_B))
    assert z == pytest.approx(1.8 / math.sqrt(1.7 / 5 + (2 / 3) / 4))
    assert z == pytest.approx(2.528782, abs=1e-6)
    assert two_mean_z(*_sums(CSAT_B), *_sums(CSAT_A)) == pytest.approx(-z)
    assert two_mean_z(*_sums([5]), *_sums(CSAT_B)) == 0.0  # n < 2
    assert two_mean_z(*_sums(CSAT_A), 0, 0, 0) == 0.0
    assert two_mean_z(*_sums([5, 5, 5]), *_sums([1, 1])) == 0.0  # SE 0
    # One constant sample is fine: SE from the other alone.
    assert two_mean_z(*_sums(CSAT_A), *_sums([3, 3, 3])) == pytest.approx(0.8 / math.sqrt(0.34))


@pytest.mark.parametrize("p0", [0.05, 0.1, 0.2, 0.3, 0.45])
@pytest.mark.parametrize("arl0", [1_000.0, 20_000.0])
def test_fast_cusum_threshold_is_conservative_against_the_exact_run_length(
    p0: float, arl0: float
) -> None:
    from pipeline.stats import cusum_arl, cusum_threshold_fast

    p1 = p0 + 0.15
    h = cusum_threshold_fast(p0, p1, arl0)
    actual = cusum_arl(p0, p1, h)
    assert arl0 <= actual <= 3 * arl0, (h, actual)
    # and it still detects the shift it is built for within a few hundred answers
    assert cusum_arl(p0, p1, h, p=p1) < 400


def test_fast_cusum_threshold_by_hand() -> None:
    from pipeline.stats import cusum_kl, cusum_threshold_fast

    # KL(0.2 || 0.35) = 0.2 ln(0.2/0.35) + 0.8 ln(0.8/0.65) = -0.111923 + 0.166111
    assert cusum_kl(0.2, 0.35) == pytest.approx(0.054188, abs=1e-6)
    h = cusum_threshold_fast(0.2, 0.35, 2000)
    assert math.expm1(h) - h == pytest.approx(2000 * 0.054188, rel=1e-5)  # e^h - h - 1
    assert h == pytest.approx(4.738, abs=0.01)  # e^4.738 - 5.738 = 108.4


def _fisher_brute(x1: int, n1: int, x2: int, n2: int) -> float:
    from fractions import Fraction
    from math import comb

    s = x1 + x2
    tail = sum(comb(s, k) * comb(n1 + n2 - s, n1 - k) for k in range(x1, min(n1, s) + 1))
    return float(Fraction(tail, comb(n1 + n2, n1)))


def test_fisher_exact_greater_by_hand_and_against_exact_fractions() -> None:
    from pipeline.stats import fisher_exact_greater

    # 3/3 against 0/3: the only table at least as extreme, 1 / C(6, 3) = 1/20
    assert fisher_exact_greater(3, 3, 0, 3) == pytest.approx(0.05)
    # 2/3 vs 1/3: tables with 2 or 3 of the 3 successes in sample 1: (9 + 1) / 20
    assert fisher_exact_greater(2, 3, 1, 3) == pytest.approx(0.5)
    for case in [(16, 31, 45, 250), (7, 30, 300, 2000), (0, 10, 5, 50), (30, 30, 2, 40)]:
        assert fisher_exact_greater(*case) == pytest.approx(_fisher_brute(*case), rel=1e-9)
    # the pooled z is anti-conservative at this size: its p is about 10x smaller
    from pipeline.stats import one_sided_p_value, two_proportion_z

    z_p = one_sided_p_value(two_proportion_z(16, 31, 45, 250), "greater")
    assert z_p < fisher_exact_greater(16, 31, 45, 250) / 5
