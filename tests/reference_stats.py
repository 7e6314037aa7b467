"""Slow, obviously correct float64 references for the statistics tests: a printed Student t table, a t quantile
by numerical integration of the density, a paired t-interval and Spearman's rank correlation by explicit loops. Independent of
selfdistill.stats (no shared code, a different method)."""

from __future__ import annotations

import math

#: the 0.975 quantile of Student's t, as printed in standard tables (3 decimals), by degrees of freedom
T975_TABLE = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
    11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
    21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042,
    40: 2.021, 60: 2.000, 120: 1.980,
}  # fmt: skip
#: the 0.995 quantile (99% two-sided), same source
T995_TABLE = {1: 63.657, 2: 9.925, 3: 5.841, 4: 4.604, 5: 4.032, 10: 3.169, 20: 2.845, 30: 2.750}


def t_density(x: float, dof: int) -> float:
    """Student t density from its textbook formula."""
    log_c = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
    return math.exp(log_c - (dof + 1) / 2 * math.log1p(x * x / dof))


def t_cdf_central(t: float, dof: int, steps: int = 4000) -> float:
    """P(0 < T < t) by composite Simpson integration of the density (the density is smooth: Simpson is ~1e-12)."""
    h = t / steps
    total = t_density(0.0, dof) + t_density(t, dof)
    for i in range(1, steps):
        total += (4 if i % 2 else 2) * t_density(i * h, dof)
    return total * h / 3


def t_quantile_by_integration(p: float, dof: int) -> float:
    """The p quantile (p > 0.5) by bisection on the integrated density."""
    lo, hi = 0.0, 1.0
    while t_cdf_central(hi, dof) < p - 0.5:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if t_cdf_central(mid, dof) < p - 0.5:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def paired_interval(a: list[float], b: list[float], t975: float) -> tuple[float, float, float]:
    """Mean of a[i] - b[i] and its 95% t-interval, with the quantile ``t975`` given, by explicit loops."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    n = len(d)
    total = 0.0
    for x in d:
        total += x
    mean = total / n
    ss = 0.0
    for x in d:
        ss += (x - mean) ** 2
    half = t975 * math.sqrt(ss / (n - 1)) / math.sqrt(n)
    return mean, mean - half, mean + half


def loop_ranks(values) -> list[float]:
    """1-based ranks by counting, ties sharing their mean rank."""
    values = list(values)
    out = []
    for v in values:
        below = sum(1 for w in values if w < v)
        equal = sum(1 for w in values if w == v)
        out.append(below + (equal + 1) / 2)
    return out


def loop_spearman(x, y) -> float:
    """Pearson's correlation of the counted ranks, by loops."""
    rx, ry = loop_ranks(x), loop_ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy)
