"""NPS, proportion intervals and z-tests: small pure functions, stdlib only.

Formulas and references are in ``/work/shared/notes/nps-statistics.md``. Conventions:

* NPS values, intervals and standard errors are in NPS *points* (-100..+100).
* Proportions (Wilson) are in 0..1.
* ``confidence`` is two-sided (0.95 gives z = 1.96).
* A z statistic is ``(first - second) / SE``: positive when the first sample is higher.
  :func:`one_sided_p_value` turns it into the p-value of the one-sided alternative.
* No data is not an error: an empty sample gives the widest interval and a z of 0
  ("no evidence"), so alert code never divides by zero.
"""

from __future__ import annotations

import math
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
