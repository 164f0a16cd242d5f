"""NPS, proportion intervals and z-tests: small pure functions, stdlib only.

Formulas and references are in ``/work/shared/notes/nps-statistics.md``. Conventions:

* NPS values, intervals and standard errors are in NPS *points* (-100..+100).
* Proportions (Wilson) are in 0..1.
* ``confidence`` is two-sided (0.95 gives z = 1.96).
* A z statistic is ``(first - second) / SE``: positive when the first sample is higher.
  :func:`one_sided_p_value` turns it into the p-value of the one-sided alternative.
* No data is not an error: an empty sample gives the widest interval and a z of 0
  ("no evidence"), so alert code never divides by zero.

Besides the one-window estimates, the module holds what the alert engine needs to test
many segments continuously: Benjamini-Hochberg across the segments of one evaluation
round, Fisher's exact test for small windows, a Bernoulli CUSUM on "is detractor", the
silence test, and a two-sample z for CSAT/CES means.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Literal, NamedTuple

_STANDARD_NORMAL = NormalDist()

#: Pseudo-counts of the adjusted-Wald NPS interval (Rocks 2016): 3/4 promoter,
#: 3/4 detractor and 3 answers in all (so 3/2 passives).
ADJUST_CATEGORY = 0.75
ADJUST_N = 3.0


class Interval(NamedTuple):
    """A two-sided confidence interval; unpacks as ``low, high``."""

    low: float
    high: float


def z_for_confidence(confidence: float = 0.95) -> float:
    """The standard-normal quantile of a two-sided interval (0.95 -> 1.95996...)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    return _STANDARD_NORMAL.inv_cdf(0.5 + confidence / 2.0)


def _check_nps_counts(promoters: int, detractors: int, n: int) -> None:
    if promoters < 0 or detractors < 0 or promoters + detractors > n:
        raise ValueError(
            f"need 0 <= promoters, 0 <= detractors, promoters + detractors <= n; "
            f"got P={promoters}, D={detractors}, n={n}"
        )


def nps(promoters: int, detractors: int, n: int) -> float | None:
    """Net Promoter Score ``100 * (P - D) / n``; ``None`` when there are no answers."""
    _check_nps_counts(promoters, detractors, n)
    if n == 0:
        return None
    return 100.0 * (promoters - detractors) / n


def _adjusted(promoters: int, detractors: int, n: int) -> tuple[float, float, float]:
    """Adjusted-Wald ``(centre, variance of one answer, adjusted n)``, centre in -1..1."""
    _check_nps_counts(promoters, detractors, n)
    n_adj = n + ADJUST_N
    p = (promoters + ADJUST_CATEGORY) / n_adj
    d = (detractors + ADJUST_CATEGORY) / n_adj
    return p - d, p + d - (p - d) ** 2, n_adj


def adjusted_nps(promoters: int, detractors: int, n: int) -> float:
    """The adjusted-Wald point estimate ``100 * (P + 3/4 - D - 3/4) / (n + 3)``.

    It is the centre of :func:`nps_interval` and what :func:`two_nps_z` compares;
    it shrinks small samples towards 0. Defined (as 0) for ``n == 0``.
    """
    centre, _, _ = _adjusted(promoters, detractors, n)
    return 100.0 * centre


def nps_standard_error(promoters: int, detractors: int, n: int) -> float:
    """Adjusted-Wald standard error of the NPS, in points.

    ``100 * sqrt(var / (n + 3))`` with ``var = p + d - (p - d)^2`` computed from the
    adjusted proportions ``p = (P + 3/4) / (n + 3)``, ``d = (D + 3/4) / (n + 3)``.
    Always positive (the pseudo-counts keep it away from 0, even for n = 0).
    """
    _, var, n_adj = _adjusted(promoters, detractors, n)
    return 100.0 * math.sqrt(max(var, 0.0) / n_adj)


def nps_interval(promoters: int, detractors: int, n: int, confidence: float = 0.95) -> Interval:
    """Adjusted-Wald confidence interval of the NPS, clipped to [-100, 100].

    Centre :func:`adjusted_nps`, half-width ``z * nps_standard_error`` (Rocks 2016;
    best coverage for small samples). With no answers the interval is the whole
    scale ``(-100, 100)``: the pseudo-counts alone would suggest a false precision.
    """
    z = z_for_confidence(confidence)
    if n == 0:
        _check_nps_counts(promoters, detractors, n)
        return Interval(-100.0, 100.0)
    centre = adjusted_nps(promoters, detractors, n)
    half = z * nps_standard_error(promoters, detractors, n)
    return Interval(max(-100.0, centre - half), min(100.0, centre + half))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval of a proportion, in 0..1 (``(0, 1)`` when ``n == 0``).

    ``(p + z^2/2n ± z * sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``; the bounds are
    exactly 0 for 0 successes and exactly 1 when all are successes.
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    z = z_for_confidence(confidence)
    if n == 0:
        return Interval(0.0, 1.0)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(low, high)


def two_nps_z(p1: int, d1: int, n1: int, p2: int, d2: int, n2: int) -> float:
    """z of the NPS difference (sample 1 minus sample 2), adjusted-Wald estimates.

    ``(adjNPS_1 - adjNPS_2) / sqrt(SE_1^2 + SE_2^2)`` (MeasuringU 2021). Negative when
    sample 1 (e.g. the short window) scores lower than sample 2 (e.g. the baseline).
    Returns 0.0 when either sample is empty.
    """
    if n1 == 0 or n2 == 0:
        _check_nps_counts(p1, d1, n1)
        _check_nps_counts(p2, d2, n2)
        return 0.0
    diff = adjusted_nps(p1, d1, n1) - adjusted_nps(p2, d2, n2)
    se = math.hypot(nps_standard_error(p1, d1, n1), nps_standard_error(p2, d2, n2))
    return diff / se


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> float:
    """Pooled two-proportion z of ``x1/n1 - x2/n2`` (e.g. detractor share vs baseline).

    ``SE = sqrt(q (1 - q) (1/n1 + 1/n2))`` with the pooled ``q = (x1 + x2) / (n1 + n2)``.
    Returns 0.0 when a sample is empty or when the pooled share is 0 or 1 (no variance).
    """
    for x, n in ((x1, n1), (x2, n2)):
        if n < 0 or not 0 <= x <= n:
            raise ValueError(f"need 0 <= x <= n, got {x}/{n}")
    if n1 == 0 or n2 == 0:
        return 0.0
    pooled = (x1 + x2) / (n1 + n2)
    var = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
    if var <= 0.0:
        return 0.0
    return (x1 / n1 - x2 / n2) / math.sqrt(var)


def fisher_exact_greater(x1: int, n1: int, x2: int, n2: int) -> float:
    """One-sided Fisher exact p-value that sample 1's share is *higher*: ``P(X >= x1)``.

    ``X`` is hypergeometric: of the ``x1 + x2`` successes among ``n1 + n2`` trials,
    how many fall in sample 1 if both samples share one rate (Fisher 1935; the
    conditional exact test of a 2x2 table). Exact for small samples, where the pooled
    z of :func:`two_proportion_z` gives p-values up to ~10x too small. Terms are summed
    in log space (``math.lgamma``); cost O(min(n1, x1 + x2) - x1).
    For "lower", call it on the complements: ``fisher_exact_greater(n1 - x1, n1, n2 - x2, n2)``.
    """
    for x, n in ((x1, n1), (x2, n2)):
        if n < 0 or not 0 <= x <= n:
            raise ValueError(f"need 0 <= x <= n, got {x}/{n}")
    total, successes = n1 + n2, x1 + x2
    high = min(n1, successes)
    if n1 == 0 or x1 > high:
        return 1.0 if n1 == 0 else 0.0

    def log_choose(n: int, k: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)

    denominator = log_choose(total, n1)
    p = 0.0
    for k in range(x1, high + 1):
        term = math.exp(
            log_choose(successes, k) + log_choose(total - successes, n1 - k) - denominator
        )
        p += term
        if term < 1e-17 * p:
            break  # the tail decreases geometrically beyond the mode
    return min(1.0, p)


def one_sided_p_value(z: float, alternative: Literal["greater", "less"] = "greater") -> float:
    """p-value of a one-sided test from its z statistic.

    ``"greater"``: H1 is "sample 1 is higher" (e.g. detractor share went up), ``P(Z >= z)``.
    ``"less"``: H1 is "sample 1 is lower" (e.g. NPS dropped), ``P(Z <= z)``.
    Computed from the lower tail on both sides, so tiny p-values keep their precision.
    """
    if alternative == "greater":
        return _STANDARD_NORMAL.cdf(-z)
    if alternative == "less":
        return _STANDARD_NORMAL.cdf(z)
    raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")


# --- Many segments at once: Benjamini-Hochberg ---------------------------------------


def _checked_p_values(p_values: Sequence[float]) -> list[float]:
    values = [float(p) for p in p_values]
    for p in values:
        if not 0.0 <= p <= 1.0:  # also rejects NaN
            raise ValueError(f"p-values must be in [0, 1], got {p}")
    return values


def bh_adjusted(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values, in input order.

    With the m p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the adjusted value
    of ``p_(i)`` is ``min(1, min_{j >= i} m * p_(j) / j)`` (Benjamini & Hochberg 1995;
    the same as R's ``p.adjust(method="BH")``). They are monotone in the p-values, never
    below them, capped at 1, and equal for equal p-values. A hypothesis is rejected at
    false discovery rate ``q`` exactly when its adjusted value is ``<= q``, which is how
    :func:`benjamini_hochberg` decides, so the two always agree.
    """
    values = _checked_p_values(p_values)
    m = len(values)
    order = sorted(range(m), key=values.__getitem__)
    adjusted = [0.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        index = order[rank - 1]
        # m / rank >= 1 first: the product never rounds below the p-value itself.
        running = min(running, values[index] * (m / rank))
        adjusted[index] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float], q: float) -> list[bool]:
    """Which hypotheses the Benjamini-Hochberg step-up procedure rejects, in input order.

    Sort the m p-values ascending, find the largest ``k`` with ``p_(k) <= k * q / m`` and
    reject the hypotheses of ``p_(1) .. p_(k)`` (Benjamini & Hochberg, "Controlling the
    false discovery rate", JRSS B 57(1), 1995). For independent tests the expected share
    of false alarms among the alarms of one round is at most ``q``; with 300 segments
    that is far less conservative than Bonferroni's ``q / m`` per segment. When every
    segment is stable, FDR is the chance of any alarm at all: at most ``q`` per round
    (so the false-alarm budget of a day is about ``q`` times the rounds). Empty input
    gives ``[]``. Decided as ``bh_adjusted(p) <= q`` (the same set, by definition).
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be between 0 and 1 (exclusive), got {q}")
    return [adjusted <= q for adjusted in bh_adjusted(p_values)]


# --- Sequential: Bernoulli CUSUM on "is detractor" -----------------------------------


def _check_cusum_shares(p0: float, p1: float) -> None:
    if not 0.0 < p0 < p1 < 1.0:
        raise ValueError(f"need 0 < p0 < p1 < 1, got p0={p0}, p1={p1}")


def cusum_weights(p0: float, p1: float) -> tuple[float, float]:
    """Per-answer log-likelihood ratios ``(w_hit, w_miss)`` of the Bernoulli CUSUM.

    ``w_hit = ln(p1 / p0)`` (added for a detractor, positive) and
    ``w_miss = ln((1 - p1) / (1 - p0))`` (added for any other answer, negative), where
    ``p0`` is the in-control detractor share and ``p1`` the shifted share to detect
    (Reynolds & Stoumbos, J. Quality Technology 31(1), 1999). Requires
    ``0 < p0 < p1 < 1``.
    """
    _check_cusum_shares(p0, p1)
    return math.log(p1 / p0), math.log1p(-p1) - math.log1p(-p0)


def cusum_update(s: float, hits: int, n: int, p0: float, p1: float) -> float:
    """The CUSUM after a bucket of ``n`` answers, ``hits`` of them detractors.

    ``S = max(0, S + hits * w_hit + (n - hits) * w_miss)`` with :func:`cusum_weights`.
    For ``n == 1`` this is the per-answer Bernoulli CUSUM of Reynolds & Stoumbos (1999);
    for a bucket it is the binomial CUSUM for grouped data, whose increment
    ``hits * ln(p1/p0) + (n - hits) * ln((1-p1)/(1-p0))`` is the binomial log-likelihood
    ratio (the binomial coefficients cancel).

    Adding the bucket at once equals applying its answers one by one *with the
    detractors first* (the sum only rises, then only falls, so the floor at 0 can only
    bite at the end). Any other order ends the bucket at this value or higher, so the
    grouped value is a **lower** bound of the per-answer value at the end of the bucket,
    while ``S + hits * w_hit`` is the highest value any order reaches inside it.
    Checking ``S > h`` once per bucket therefore alarms no sooner than the per-answer
    chart: its in-control run length is at least :func:`cusum_arl` (fewer false alarms),
    at the price of up to a bucket's delay in detection.
    """
    if n < 0 or not 0 <= hits <= n:
        raise ValueError(f"need 0 <= hits <= n, got {hits}/{n}")
    if s < 0.0:
        raise ValueError(f"a CUSUM is never negative, got {s}")
    w_hit, w_miss = cusum_weights(p0, p1)
    return max(0.0, s + hits * w_hit + (n - hits) * w_miss)


def cusum_arl(p0: float, p1: float, h: float, p: float | None = None) -> float:
    """Average run length, in answers, of the per-answer Bernoulli CUSUM (start 0, alarm S > h).

    ``p`` is the true detractor share: ``None`` (or ``p0``) gives the in-control ARL0,
    the mean number of answers between false alarms; ``p = p1`` gives the mean delay
    to detect a shift to ``p1``.

    Computed exactly, not approximated: the chart restarts whenever it falls to 0, so a
    run is a sequence of independent cycles (Wald SPRTs between 0 and ``h``) and
    ``ARL = E[cycle length] / P(a cycle ends in an alarm)`` (Page, "Continuous
    inspection schemes", Biometrika 41, 1954). Inside a cycle that started at 0 with
    ``k`` detractors and ``j`` other answers, ``S = k * w_hit + j * w_miss`` exactly, so
    the probability of every reachable state is a sum over lattice paths that stay in
    ``(0, h]``, found row by row (one row per detractor) until the live probability is
    negligible (< 1e-15 of the total). Cost: rows x ``h / |w_miss|`` cells; measured
    ~2 ms for p0 = 0.2 and ~40 ms for p0 = 0.01 (ARL0 1e5), growing as p0 shrinks.

    This replaces Siegmund's approximation ``ARL0 ~ (e^h - h - 1) / KL(p0 || p1)``, which
    ignores the overshoot over ``h``: for p0 = 0.2, p1 = 0.35 its ``h`` for ARL0 = 2000
    gives about 2,800 answers (measured), and the lattice of the Bernoulli steps makes
    corrected diffusion approximations miss by up to 40 % for p0 near 0.4.
    """
    w_hit, w_miss = cusum_weights(p0, p1)
    if h < 0.0:
        raise ValueError(f"h must be >= 0, got {h}")
    share = p0 if p is None else p
    if not 0.0 < share < 1.0:
        raise ValueError(f"p must be between 0 and 1 (exclusive), got {share}")
    other = 1.0 - share
    steps = 1.0  # the cycle's first answer, taken from S = 0
    alarm = 0.0
    row: dict[int, float] = {0: 1.0}  # j -> P(cycle reaches k detractors, j others)
    k = 0
    while row:
        k += 1
        last = max(row)
        nxt: dict[int, float] = {}
        j = min(row)
        carry = 0.0  # probability arriving at (k, j) by an answer that is not a detractor
        while True:
            level = k * w_hit + j * w_miss
            from_hit = row.get(j, 0.0) * share
            if level > h:
                alarm += from_hit
                mass = 0.0
            elif level <= 0.0:
                mass = 0.0  # back to 0: the cycle ends, the next one starts afresh
            else:
                mass = from_hit + carry
            if mass > 0.0:
                nxt[j] = mass
            carry = mass * other
            j += 1
            if j > last and carry == 0.0:
                break
        row = nxt
        live = sum(row.values())
        steps += live
        if live < 1e-15 * steps:
            break
    return math.inf if alarm == 0.0 else steps / alarm


@functools.lru_cache(maxsize=256)
def cusum_threshold(p0: float, p1: float, arl0: float) -> float:
    """The decision limit ``h`` of the Bernoulli CUSUM for an in-control ARL of ``arl0`` answers.

    The smallest ``h`` (to a relative 1e-6, plus a 1e-9 margin so that float noise in a
    running sum never lands on a lattice value of ``S``) with ``cusum_arl(p0, p1, h) >=
    arl0``, found by bisection on the exact run length of :func:`cusum_arl` (ARL grows
    with ``h``). The steps of a Bernoulli CUSUM are discrete, so the ARL0 is a step
    function of ``h``: the result is at least ``arl0`` and can be well above it when the
    weights are commensurate (e.g. p0 = 0.4, p1 = 0.6, where ``w_hit = -w_miss``); read
    the actual value with ``cusum_arl(p0, p1, h)``. Returns 0.0 (alarm on the first
    detractor) when ``arl0 <= 1 / p0``. Cached: rules ask for the same few limits.
    """
    _check_cusum_shares(p0, p1)
    if not arl0 >= 1.0:
        raise ValueError(f"arl0 must be >= 1 answer, got {arl0}")
    if cusum_arl(p0, p1, 0.0) >= arl0:
        return 0.0
    low, high = 0.0, 1.0
    while cusum_arl(p0, p1, high) < arl0:
        low, high = high, 2.0 * high
    while high - low > 1e-6 * high:
        middle = (low + high) / 2.0
        if cusum_arl(p0, p1, middle) >= arl0:
            high = middle
        else:
            low = middle
    return high + 1e-9 * max(1.0, high)


def cusum_kl(p0: float, p1: float) -> float:
    """``KL(p0 || p1)``: minus the mean CUSUM increment per in-control answer."""
    _check_cusum_shares(p0, p1)
    return p0 * math.log(p0 / p1) + (1.0 - p0) * math.log((1.0 - p0) / (1.0 - p1))


@functools.lru_cache(maxsize=4096)
def cusum_threshold_fast(p0: float, p1: float, arl0: float) -> float:
    """A conservative decision limit ``h`` for an in-control ARL of *at least* ``arl0``.

    Solves Siegmund's approximation ``ARL0 = (e^h - h - 1) / KL(p0 || p1)`` for ``h``
    (Siegmund, *Sequential Analysis*, 1985, ch. X; bisection, microseconds). The
    approximation ignores the overshoot over ``h``, so the true ARL0 of this ``h`` is
    longer than asked (fewer false alarms than budgeted): the test suite checks it
    against the exact :func:`cusum_arl` over a grid (between 1x and 3x ``arl0``).
    Online alert rounds use it; :func:`cusum_threshold` is exact but takes up to a
    second per limit.
    """
    if not arl0 >= 1.0:
        raise ValueError(f"arl0 must be >= 1 answer, got {arl0}")
    target = arl0 * cusum_kl(p0, p1)
    low, high = 0.0, 1.0
    while math.expm1(high) - high < target:
        low, high = high, 2.0 * high
    while high - low > 1e-9 * high:
        middle = (low + high) / 2.0
        if math.expm1(middle) - middle >= target:
            high = middle
        else:
            low = middle
    return high


# --- Silence -------------------------------------------------------------------------


def silence_p_value(expected: float) -> float:
    """P(no answer at all) for a Poisson count of mean ``expected``: ``exp(-expected)``.

    The p-value of a silence: small when many answers were due (4.6 expected gives
    0.010). Arrivals are burstier than Poisson in practice (daily cycles), so use the
    rate of a comparable time of day for ``expected``.
    """
    if not expected >= 0.0:
        raise ValueError(f"expected must be >= 0, got {expected}")
    return math.exp(-expected)


# --- Means: CSAT and CES averages ----------------------------------------------------


def mean_and_variance(total: float, sum_squares: float, n: int) -> tuple[float, float]:
    """Sample mean and variance (``n - 1`` denominator) from running sums.

    ``mean = total / n`` and ``var = (n * sum_squares - total^2) / (n (n - 1))``, the
    textbook computing formula; written with one division so that integer scores give
    exact sums. The variance is 0 for ``n < 2``; ``(0, 0)`` for ``n == 0`` (no data: the
    caller checks ``n``). Sums that no data could give (``n * sum_squares`` clearly below
    ``total^2``) raise ``ValueError``; rounding below 0 is clipped to 0.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n == 0:
        return 0.0, 0.0
    mean = total / n
    if n == 1:
        return mean, 0.0
    spread = n * sum_squares - total * total
    if spread < -1e-9 * max(1.0, n * abs(sum_squares)):
        raise ValueError(f"impossible sums: total={total}, sum_squares={sum_squares}, n={n}")
    return mean, max(0.0, spread) / (n * (n - 1))


def two_mean_z(sum1: float, sq1: float, n1: int, sum2: float, sq2: float, n2: int) -> float:
    """Welch-style z of ``mean1 - mean2`` from running sums (e.g. window vs baseline CSAT).

    ``(mean1 - mean2) / sqrt(v1 / n1 + v2 / n2)`` with the sample variances of
    :func:`mean_and_variance` (unpooled, as in Welch's t; with the tens of answers an
    alert needs, the normal is a fine stand-in for Student's t). Returns 0.0 when a
    sample has fewer than 2 answers or both are constant (SE 0: the test has nothing to
    say, even if the means differ; pair it with a minimum effect size).
    """
    mean1, var1 = mean_and_variance(sum1, sq1, n1)
    mean2, var2 = mean_and_variance(sum2, sq2, n2)
    if n1 < 2 or n2 < 2:
        return 0.0
    se = math.sqrt(var1 / n1 + var2 / n2)
    if se == 0.0:
        return 0.0
    return (mean1 - mean2) / se
