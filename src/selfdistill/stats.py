"""Small exact statistics for per-seed paired comparisons: Student t quantiles and 95% t-intervals over seeds.

Why paired: runs with the same seed share the data split, the noisy labels, the initialisation and the batch
order, so "mode A − mode B" per seed removes most of the seed-to-seed spread that an unpaired comparison of two
means would carry.

The t quantile is computed exactly, not from a table or an approximation: the two-sided Student t probability
``P(|T| < t)`` for an integer ``dof`` has a finite closed form (Abramowitz & Stegun 26.7.3-26.7.4, a sum of
``dof/2`` powers of ``cos(arctan(t / sqrt(dof)))``), and the quantile is found by bisection on it to machine
precision. Only the standard library is used (no scipy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: the confidence level of every interval in the summaries, and how the outputs name the interval
CONFIDENCE = 0.95
INTERVAL_NAME = "95% t-interval over seeds"


def t_two_sided_prob(t: float, dof: int) -> float:
    """``P(|T| < t)`` for Student's t with integer ``dof`` >= 1 (A&S 26.7.3-26.7.4, exact finite series)."""
    if dof < 1 or int(dof) != dof:
        raise ValueError(f"dof must be a positive integer, got {dof}")
    if t <= 0:
        return 0.0
    theta = math.atan(t / math.sqrt(dof))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    # sin θ (1 + 1/2 cos²θ + 1·3/(2·4) cos⁴θ + ... up to cos^(dof-2)θ)
    if dof % 2 == 0:
        term, total = 1.0, 1.0
        for k in range(1, dof // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return min(1.0, s * total)
    # odd: 2/π (θ + sin θ cos θ (1 + 2/3 cos²θ + 2·4/(3·5) cos⁴θ + ... up to cos^(dof-3)θ)); dof 1: 2θ/π
    total = 0.0
    if dof > 1:
        term, total = 1.0, 1.0
        for k in range(1, (dof - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        total *= s * math.sqrt(c2)
    return min(1.0, 2 / math.pi * (theta + total))


def t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t with integer ``dof``, by bisection on
    :func:`t_two_sided_prob` to machine precision; ``t_quantile(0.975, n - 1)`` is a 95% interval's multiplier."""
    if not 0.5 < p < 1:
        raise ValueError(f"p must lie in (0.5, 1), got {p}")
    target = 2 * p - 1
    lo, hi = 0.0, 1.0
    while t_two_sided_prob(hi, dof) < target:
        lo, hi = hi, 2 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if t_two_sided_prob(mid, dof) < target else (lo, mid)
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` paired differences and its t-interval (``low``/``high`` NaN when ``n`` < 2)."""

    n: int
    mean: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (False for a NaN interval)."""
        return self.low > 0 or self.high < 0


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student t-interval (n − 1 dof) of ``values`` (NaNs dropped); with fewer than two values the
    interval is NaN, since one seed says nothing about the seed-to-seed spread."""
    xs = [float(v) for v in values if not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan)
    mean = math.fsum(xs) / n
    if n == 1:
        return Interval(1, mean, math.nan, math.nan)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return Interval(n, mean, mean - half, mean + half)


def verdict(interval: Interval, positive: str = "better", negative: str = "worse") -> str:
    """``positive`` / ``negative`` when the interval lies wholly above / below 0, else "inconclusive"."""
    if interval.low > 0:
        return positive
    if interval.high < 0:
        return negative
    return "inconclusive"


def why_inconclusive(interval: Interval) -> str:
    """Why an interval gives no verdict, in words for the Markdown ("" when it does give one)."""
    if interval.n == 0:
        return "no paired seeds"
    if interval.n == 1:
        return "1 seed: no interval, the seed-to-seed spread is unknown"
    return "" if interval.excludes_zero else "the interval contains 0"
