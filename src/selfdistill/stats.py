"""Paired comparisons over seeds: t-intervals, p-values, the Holm correction, and the verdict rules every summary
uses (docs/science.md, "Verdicts").

Why paired: runs with the same seed share the data split, the noisy labels, the initialisation and the batch
order, so "mode A − mode B" per seed removes most of the seed-to-seed spread that an unpaired comparison of two
means would carry.

The verdict rules (one place, used by the accuracy summary, the frequency summary and the study overview):

- no paired seed: "no paired seeds";
- 1 seed: "not testable (1 seed)": one difference says nothing about the seed-to-seed spread, so it is never
  reported as "no difference";
- n ≥ 2 seeds whose differences are all equal: the interval has zero width, which is not evidence of anything but
  the resolution of the measure (accuracies move in steps of 1/n_test): "all n seeds differ by exactly x", and no
  verdict;
- otherwise "difference found (higher)" / "difference found (lower)" when the 95% t-interval excludes 0, else
  "no difference detected (95% interval includes 0)", which is not evidence of absence.

Quantiles and p-values come from ``scipy.special``'s Student t functions (``stdtrit``, ``stdtr``: what
``scipy.stats.t`` calls, without the 0.7 s import of ``scipy.stats`` in every job).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special as _special

#: the confidence level of every interval in the summaries, and how the outputs name the interval
CONFIDENCE = 0.95
INTERVAL_NAME = "95% t-interval over seeds"
#: the family-wise error rate of the Holm correction
ALPHA = 1 - CONFIDENCE

#: what a :class:`Verdict` can be
FOUND, NOT_DETECTED, CONSTANT, NOT_TESTABLE, NO_PAIRS = "found", "not_detected", "constant", "not_testable", "no_pairs"
NOT_DETECTED_TEXT = "no difference detected (95% interval includes 0)"
#: paired differences this close to their mean are equal (floating-point rounding of equal differences; accuracy
#: steps are at least 1/n_test, ~1e-4, and frequency measures differ between seeds far above 1e-9 relative)
EQUAL_RTOL, EQUAL_ATOL = 1e-9, 1e-12


def t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t with ``dof`` degrees of freedom (``scipy.special.stdtrit``);
    ``t_quantile(0.975, n - 1)`` is a 95% interval's multiplier."""
    if not 0.5 < p < 1:
        raise ValueError(f"p must lie in (0.5, 1), got {p}")
    if dof < 1:
        raise ValueError(f"dof must be at least 1, got {dof}")
    return float(_special.stdtrit(dof, p))


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` paired differences, their sample sd and the t-interval (``sd``, ``low``, ``high`` NaN when ``n``
    < 2)."""

    n: int
    mean: float
    low: float
    high: float
    sd: float = math.nan

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (False for a NaN or zero-width interval)."""
        return self.sd > 0 and (self.low > 0 or self.high < 0)

    @property
    def p_value(self) -> float:
        """Two-sided p-value of the paired t-test of mean 0 (NaN with fewer than 2 values or zero spread)."""
        if self.n < 2 or not self.sd > 0:
            return math.nan
        t = abs(self.mean) / (self.sd / math.sqrt(self.n))
        return float(2 * _special.stdtr(self.n - 1, -t))


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
    # equal values up to the rounding of their computation (0.70 − 0.80 and 0.72 − 0.82 differ in the 17th digit):
    # zero spread, not a spread of 1e-17 that would give a vanishing interval and a verdict
    if all(math.isclose(x, mean, rel_tol=EQUAL_RTOL, abs_tol=EQUAL_ATOL) for x in xs):
        sd = 0.0
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return Interval(n, mean, mean - half, mean + half, sd)


@dataclass(frozen=True)
class Verdict:
    """What a paired comparison says: ``kind`` (:data:`FOUND`, :data:`NOT_DETECTED`, :data:`CONSTANT`,
    :data:`NOT_TESTABLE`, :data:`NO_PAIRS`) and its words."""

    kind: str
    text: str

    @property
    def is_result(self) -> bool:
        """True for a verdict that states something about the difference (found, or not detected)."""
        return self.kind in (FOUND, NOT_DETECTED)


def _plain(x: float) -> str:
    return f"{x:+.4g}"


def verdict(interval: Interval, fmt: Callable[[float], str] = _plain, reject: bool | None = None) -> Verdict:
    """The verdict of one paired comparison (module doc). ``fmt`` writes a difference (e.g. in percentage points) for
    the all-equal case; ``reject`` overrides the interval's own test (a multiple-comparison correction's decision)."""
    n = interval.n
    if n == 0:
        return Verdict(NO_PAIRS, "no paired seeds")
    if n == 1:
        return Verdict(NOT_TESTABLE, "not testable (1 seed)")
    if interval.sd == 0:
        return Verdict(CONSTANT, f"all {n} seeds differ by exactly {fmt(interval.mean)}")
    found = interval.excludes_zero if reject is None else reject
    if found:
        return Verdict(FOUND, f"difference found ({'higher' if interval.mean > 0 else 'lower'})")
    return Verdict(NOT_DETECTED, NOT_DETECTED_TEXT)


def holm(p_values: Sequence[float], alpha: float = ALPHA) -> tuple[list[float], list[bool]]:
    """Holm's step-down correction of the ``p_values`` of one family (NaNs are not tested and stay NaN/False): the
    adjusted p-values ``min(1, max_{j≤i} (m − j + 1) p_(j))`` in the input order and whether each is rejected at
    family-wise level ``alpha``; ``m`` is the number of finite p-values."""
    finite = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    m = len(finite)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(finite)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted, [not math.isnan(a) and a <= alpha for a in adjusted]


def spearman(x: Sequence[float], y: Sequence[float], *, min_pairs: int = 2) -> float:
    """Spearman's rank correlation of the pairs with both values finite: Pearson's correlation of their average
    ranks (ties share their mean rank). NaN with fewer than ``min_pairs`` such pairs or when either side is
    constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < max(2, min_pairs):
        return math.nan
    rx, ry = average_ranks(x[ok]), average_ranks(y[ok])
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / den) if den > 0 else math.nan


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks of ``values``, tied values sharing their mean rank (pandas' ``rank(method="average")``)."""
    import pandas as pd

    return pd.Series(np.asarray(values, dtype=np.float64)).rank(method="average").to_numpy()
