"""The statistics of declared contrasts: an effect ``A - B``, its interval, and a verdict on a claim.

Every estimate is two steps, because the width of an interval depends on the whole family: first
the effect and the two-sided p-value of "A - B = 0" (:class:`Estimate`), then, once every claim's
p-value is known, the interval at the confidence the correction gives that claim
(:func:`family_levels`), and the verdict from that interval (:func:`verdict`).

Estimates (all from scipy / statsmodels; nothing here writes out a distribution):

* :func:`paired_t` -- run-level metric, the same seeds in both arms: ``scipy.stats.ttest_rel(a, b)``,
  its p-value and ``confidence_interval`` (mean difference +- t quantile x sd / sqrt n, n - 1 df).
* :func:`welch_t` -- run-level metric, different seeds: ``scipy.stats.ttest_ind(a, b,
  equal_var=False)`` (Welch's t with the Welch-Satterthwaite degrees of freedom).
* :func:`hierarchical_bootstrap` -- item-level metric (one 0/1 or number per item, the same items in
  both arms): per seed the item-wise differences ``A - B`` over the items both arms have; each
  resample draws the seeds with replacement, then, within each drawn seed, its items with
  replacement; the statistic is the mean over drawn seeds of the mean drawn difference. Interval:
  the percentiles; p-value: twice the smaller share of resamples on either side of 0 (so the
  percentile interval at level 1 - p just reaches 0, up to the resamples' resolution).
* :func:`cmh` -- binary items, a check that needs no resampling: the Cochran-Mantel-Haenszel test
  of a common odds ratio of 1 over the seeds (one 2x2 table per seed: arm x correct), and the
  Mantel-Haenszel pooled odds ratio, from ``statsmodels.stats.contingency_tables.StratifiedTable``.
  It ignores the pairing by item (the bootstrap uses it).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from collapsebench.analysis.stats import Correction, adjust_pvalues

NAN = float("nan")
MIN_SEEDS = 3  # fewer seeds per arm than this: the verdict is "not shown", whatever the interval
BOOTSTRAP_CELLS = 2_000_000  # item draws per vectorised block of the bootstrap (memory bound)


@dataclass
class Estimate:
    """An effect A - B, its two-sided p-value against 0, and its interval at any confidence."""

    method: str
    effect: float
    p: float
    n_a: int
    n_b: int
    n_pairs: int | None  # None: unpaired
    interval: Callable[[float], tuple[float, float]]
    notes: list[str] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)


def no_interval(confidence: float) -> tuple[float, float]:
    return NAN, NAN


def no_test(method: str, a: Sequence[float], b: Sequence[float], paired: bool, why: str) -> Estimate:
    """Too few values for a test: the effect where there is one, no p-value, no interval."""
    effect = float(np.mean(a) - np.mean(b)) if len(a) and len(b) else NAN
    n_pairs = len(a) if paired else None
    return Estimate(method, effect, NAN, len(a), len(b), n_pairs, no_interval, [why])


# ------------------------------------------------------------------------------------ run level


def paired_t(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """Paired t over seeds (``a[i]`` and ``b[i]`` share a seed): scipy's ttest_rel and its interval."""
    from scipy.stats import ttest_rel

    method = "paired t (scipy.stats.ttest_rel)"
    if len(a) < 2:
        return no_test(method, a, b, True, f"{len(a)} paired seed(s): no test")
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = x - y
    if np.all(d == d[0]):  # no spread: scipy's t is 0/0 or inf; the interval is the one difference
        p = 1.0 if d[0] == 0 else 0.0
        point = float(d[0])
        return Estimate(method, point, p, len(d), len(d), len(d), lambda _c: (point, point),
                        ["the differences are all equal: no spread, the interval is that one value"])
    res = ttest_rel(x, y)
    return Estimate(method, float(np.mean(d)), float(res.pvalue), len(d), len(d), len(d),
                    lambda c: _bounds(res.confidence_interval(confidence_level=c)))


def welch_t(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """Welch's t over the runs of each arm (seeds not shared): scipy's ttest_ind(equal_var=False)."""
    from scipy.stats import ttest_ind

    method = "Welch t (scipy.stats.ttest_ind, equal_var=False)"
    if min(len(a), len(b)) < 2:
        return no_test(method, a, b, False, f"{len(a)} and {len(b)} run(s): Welch's t needs 2 per arm")
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        point = float(x[0] - y[0])
        return Estimate(method, point, 1.0 if point == 0 else 0.0, len(x), len(y), None,
                        lambda _c: (point, point), ["no spread in either arm: the interval is the one difference"])
    res = ttest_ind(x, y, equal_var=False)
    return Estimate(method, float(np.mean(x) - np.mean(y)), float(res.pvalue), len(x), len(y), None,
                    lambda c: _bounds(res.confidence_interval(confidence_level=c)))


def _bounds(ci: Any) -> tuple[float, float]:
    return float(ci.low), float(ci.high)


# ------------------------------------------------------------------------------------ item level


def hierarchical_bootstrap(diffs: Sequence[NDArray[np.float64]], n_resamples: int, seed: int = 0) -> Estimate:
    """Bootstrap over seeds, then items, of the mean item-wise difference A - B (see the module
    docstring). ``diffs[s]``: the differences of seed s over the items both arms have there."""
    method = "hierarchical bootstrap (seeds, then items; paired by seed and item id; percentile)"
    d = [np.asarray(x, dtype=float) for x in diffs if len(x)]
    if len(d) < 2:
        return Estimate(method, float(np.mean(d[0])) if d else NAN, NAN, len(d), len(d), len(d), no_interval,
                        [f"{len(d)} seed(s) with shared items: no resampling over seeds"])
    effect = float(np.mean([x.mean() for x in d]))
    stats = _resample(d, n_resamples, np.random.default_rng(seed))
    p = min(1.0, 2 * min(float(np.mean(stats <= 0)), float(np.mean(stats >= 0))))

    def interval(confidence: float) -> tuple[float, float]:
        low, high = np.quantile(stats, [(1 - confidence) / 2, (1 + confidence) / 2])
        return float(low), float(high)

    items = sorted({len(x) for x in d})
    span = f"{items[0]}" if len(items) == 1 else f"{items[0]}-{items[-1]}"
    return Estimate(method, effect, p, len(d), len(d), len(d), interval,
                    [f"{span} shared items per seed, {n_resamples} resamples"])


def _resample(d: list[NDArray[np.float64]], n_resamples: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """The bootstrap statistics: each row draws len(d) seeds, each drawn seed its own fresh item draw."""
    chosen = rng.integers(len(d), size=(n_resamples, len(d)))
    means = np.empty(chosen.shape)
    for s, x in enumerate(d):
        slots = np.flatnonzero(chosen.ravel() == s)
        block = max(1, BOOTSTRAP_CELLS // len(x))
        for start in range(0, len(slots), block):
            part = slots[start:start + block]
            means.ravel()[part] = x[rng.integers(len(x), size=(len(part), len(x)))].mean(axis=1)
    return means.mean(axis=1)


def cmh(tables: NDArray[np.int64]) -> dict[str, float]:
    """CMH statistic (no continuity correction), its p-value and the MH pooled odds ratio of a
    2 x 2 x K array (rows: arm A, arm B; columns: correct, wrong; one table per seed)."""
    from statsmodels.stats.contingency_tables import StratifiedTable

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a table with an empty margin: NaN, said by the value
        table = StratifiedTable(np.asarray(tables, dtype=float))
        test = table.test_null_odds(correction=False)
        return {"cmh_statistic": float(test.statistic), "cmh_p": float(test.pvalue),
                "mh_odds_ratio": float(table.oddsratio_pooled)}


# ------------------------------------------------------------------------------------ the family


def family_levels(pvalues: Sequence[float], correction: str, confidence: float) -> tuple[list[float], list[float]]:
    """(adjusted p-values, the confidence of each claim's interval) over the claims with a p-value.

    ``none``: every interval at ``confidence``. ``bonferroni``: every interval at 1 - alpha / m
    (simultaneous coverage: all m intervals hold together with probability >= ``confidence``).
    ``holm``: the claims in order of p-value, the k-th (from 0) at 1 - alpha / (m - k) while Holm
    rejects; from the first claim Holm does not reject on, all at that claim's level. So an interval
    excludes 0 exactly when Holm's adjusted p-value is below alpha (for the t-intervals; the
    bootstrap's up to its resolution). These are not simultaneous intervals; Bonferroni's are.
    The adjusted p-values are :func:`collapsebench.analysis.stats.adjust_pvalues`' (statsmodels'
    ``multipletests`` over the claims with a p-value; the others get NaN)."""
    alpha = 1 - confidence
    adjusted = adjust_pvalues(pvalues, cast(Correction, correction))
    levels = [NAN] * len(pvalues)
    members = sorted((i for i, p in enumerate(pvalues) if math.isfinite(p)), key=lambda i: pvalues[i])
    m = len(members)
    stopped: float | None = None
    for k, i in enumerate(members):  # in order of p-value
        level = confidence if correction == "none" else 1 - alpha / m if correction == "bonferroni" \
            else 1 - alpha / (m - k)
        if correction == "holm" and (stopped is not None or not adjusted[i] <= alpha):  # Holm stops rejecting here
            stopped = level if stopped is None else stopped
            level = stopped
        levels[i] = level
    return adjusted, levels


# ------------------------------------------------------------------------------------ the verdict


def verdict(low: float, high: float, direction: str, effect: float | None, margin: float | None,
            n_min: int) -> tuple[str, str]:
    """(verdict, why) of a claim from its family-adjusted interval [low, high] of A - B.

    Fewer than 3 seeds in an arm: ``not shown``, whatever the interval. A directional claim
    (``increase``: A - B > 0; ``decrease``: < 0): ``reproduced`` when the interval excludes 0 on the
    published side, ``reversed`` on the other side; an interval holding 0 is ``inconclusive`` when it
    also holds the published effect (or none was published), else ``not shown``. A null claim
    (``none``, margin M): ``equivalent`` when the interval lies inside (-M, M), ``reversed`` when it
    lies wholly at or beyond one margin (an effect the claim says is absent), else ``inconclusive``."""
    if n_min < MIN_SEEDS:
        return "not shown", f"fewer than {MIN_SEEDS} seeds in an arm ({n_min}): no verdict on a claim"
    if not (math.isfinite(low) and math.isfinite(high)):
        return "not shown", "no interval"
    if direction == "none":
        assert margin is not None  # the schema requires it
        if -margin < low and high < margin:
            return "equivalent", f"the interval lies inside +-{margin:g}"
        if low >= margin or high <= -margin:
            return "reversed", f"the interval lies beyond the margin +-{margin:g}"
        return "inconclusive", f"the interval crosses the margin +-{margin:g}"
    sign = 1.0 if direction == "increase" else -1.0
    if low > 0 or high < 0:
        same = (low > 0) == (sign > 0)
        outside = effect is not None and not low <= effect <= high
        why = "the interval excludes 0 on the " + ("published" if same else "opposite") + " side"
        if same and outside:
            why += f" (and excludes the published effect {effect:g})"
        return ("reproduced" if same else "reversed"), why
    if effect is None:
        return "inconclusive", "the interval holds 0; no effect was published to test against"
    if low <= effect <= high:
        return "inconclusive", f"the interval holds both 0 and the published effect {effect:g}"
    return "not shown", f"the interval holds 0 and excludes the published effect {effect:g}"
