"""Statistics over seeds for ``collapsebench compare`` and the sweep report.

Input is long-format records, one number each::

    {"cell": "replace alpha=0.5", "seed": 0, "iteration": 3,
     "metric": "holdout_perplexity", "value": 81.2}

A *cell* is a configuration without its seed; the seeds are its replicates. Everything here
is a pure function over plain data (lists of dicts in, lists of dicts out, Python ints and
floats only), so the results can go straight to CSV, JSON or an HTML table.

What is computed, and by whom
-----------------------------
``summarize`` -- one row per (cell, metric, iteration):

* ``n``: seeds that have a value at that iteration. A run that stopped early counts only
  at the iterations it reached; nothing is carried forward.
* ``mean`` and ``std`` (sample standard deviation, ddof=1): numpy.
* ``ci_low`` / ``ci_high``: bootstrap confidence interval of the mean over seeds,
  ``scipy.stats.bootstrap`` with the percentile method, 1,000 resamples and a fixed seed.
  Every row is resampled from the same seed, so a row's interval does not depend on which
  other rows are in the table. With few seeds the percentile interval is too narrow (it
  can only take values the resampled means can take): with 2 seeds it is simply the two
  values, which the ``note`` says.

``compare_cells`` -- one row per declared comparison ``(cell_a, cell_b)`` at one iteration,
paired by seed (only seeds both cells have; ``n_pairs``); differences are ``b - a``:

* ``mean_diff``: mean of the differences (numpy).
* ``t`` / ``p_t``: paired t-test, ``scipy.stats.ttest_rel`` (two-sided).
* ``w`` / ``p_wilcoxon``: Wilcoxon signed-rank test, ``scipy.stats.wilcoxon`` (two-sided).
  ``w`` is scipy's two-sided statistic, min(R+, R-). Zero differences are dropped before
  ranking (``zero_method="wilcox"``, Wilcoxon's own rule), and differences are rounded
  to 12 significant digits first, so that roundoff in b - a cannot split a tie. The
  method is chosen here, not left to scipy's ``"auto"`` (whose rule changed in 1.15:
  before, ties were referred to the exact no-ties table and zeros sent the test to the
  normal approximation; since, small samples with either get a permutation test), and
  named in ``wilcoxon_method``: ``exact`` (the exact null distribution; no ties, no
  zeros, at most 50 pairs), ``sign-flip`` (all 2**n sign patterns enumerated by
  ``scipy.stats.permutation_test``, exact with ties or zeros; at most 13 pairs), or
  ``normal`` (normal approximation without continuity correction, otherwise).
* ``cohens_d``: paired effect size, mean of differences / their standard deviation
  (ddof=1), a formula computed here.
* ``p_t_adj`` / ``p_wilcoxon_adj``: p-values corrected over the declared family,
  ``statsmodels.stats.multitest.multipletests``. ``correction`` is ``"holm"`` (Holm's
  step-down; controls the family-wise error rate and is never less powerful than
  Bonferroni), ``"bonferroni"`` (p times the family size, capped at 1) or ``"none"``
  (the raw p-values). ``family_size`` says how many comparisons were corrected together.

Small numbers of seeds
----------------------
* ``summarize`` with 1 seed: ``mean`` is the value, ``std`` and the interval are NaN and
  ``note`` is ``"1 seed: no spread"``.
* ``compare_cells`` with fewer than 2 pairs: NaN statistics (``mean_diff`` is the one
  difference when there is one pair), a ``note`` saying so, and the row is left out of the
  correction family (the others are corrected among themselves).
* All differences zero: the two cells are identical on these seeds. The t statistic and
  Cohen's d are 0/0 (NaN); both p-values are set to 1.0, because every sign flip of the
  differences gives the same data, so no test can see a difference; the row stays in the
  family. (Left alone, scipy 1.17 returns NaN for the t-test, and for the Wilcoxon test
  W = 0, p = 1 after a division-by-zero warning.)
* Differences that are all equal but not zero: scipy's t is +-inf and p_t is 0 (or huge
  and tiny, when roundoff leaves a speck of spread), and d likewise; they are kept (they
  are scipy's answer) and the note warns that the t-test has
  no spread to work with -- read the Wilcoxon p-value there. "Equal" and "zero" are judged
  on the differences rounded to 12 significant digits, so roundoff cannot hide them.
* With k non-zero differences, the smallest two-sided Wilcoxon p-value is 2 / 2**k, so
  k <= 5 (5 seeds or fewer) can never reach 0.05; the note says so.

scipy and statsmodels are imported inside the functions that use them: importing this
module costs about as much as importing numpy, so ``collapsebench compare`` starts fast.

Versions: written against scipy 1.17 and statsmodels 0.15. The Wilcoxon methods need
scipy >= 1.15 (``method=PermutationMethod(...)`` and the name ``"asymptotic"`` arrived
there); the bootstrap passes its generator as ``rng`` where scipy has it, else as
``random_state``.

(Over 300 lines: the summaries over seeds and the paired comparisons share the record parsing,
the corrections and the version shims of scipy above.)
"""

from __future__ import annotations

import csv
import inspect
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

Correction = Literal["holm", "bonferroni", "none"]
Row = dict[str, Any]
Key = tuple[str, str, int]  # (cell, metric, iteration)

CORRECTIONS: tuple[str, ...] = ("holm", "bonferroni", "none")
SUMMARY_COLUMNS: tuple[str, ...] = (
    "cell", "metric", "iteration", "n", "mean", "std", "ci_low", "ci_high", "note")
COMPARISON_COLUMNS: tuple[str, ...] = (
    "metric", "iteration", "cell_a", "cell_b", "n_pairs", "mean_diff", "t", "p_t", "p_t_adj",
    "w", "p_wilcoxon", "p_wilcoxon_adj", "wilcoxon_method", "cohens_d", "correction",
    "family_size", "note")

NAN = float("nan")
EXACT_MAX_N = 50  # exact Wilcoxon null distribution up to this many pairs (scipy's own limit)
SIGN_FLIP_MAX_N = 13  # 2**13 = 8192 sign patterns: enumerated in full within 9999 resamples
RANK_DIGITS = 12  # differences are compared to this many significant digits when ranked


# ---------------------------------------------------------------- records


def records_from_rows(cell: str, seed: int, metric_rows: Iterable[Mapping[str, Any]]) -> list[Row]:
    """Records of one run from its ``metrics.jsonl`` rows (``{"iteration": k, metric: value, ...}``).

    Only finite numbers become records: a metric that is missing, a string, a bool or a
    non-finite number (a diverged perplexity) has no value at that iteration, so that seed
    is not counted there rather than poisoning a mean with inf or NaN."""
    records: list[Row] = []
    for row in metric_rows:
        iteration = _as_iteration(row["iteration"])
        for metric, value in row.items():
            if metric != "iteration" and _is_finite_number(value):
                records.append({"cell": cell, "seed": seed, "iteration": iteration,
                                "metric": metric, "value": float(value)})
    return records


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)) and math.isfinite(value)


def _as_iteration(value: Any) -> int:
    """metrics.jsonl may hold the iteration as 3.0; anything not a whole number is an error."""
    if not _is_finite_number(value) or float(value) != int(value):
        raise ValueError(f"iteration must be a whole number, got {value!r}")
    return int(value)


def _grouped(records: Iterable[Mapping[str, Any]]) -> dict[Key, dict[int, float]]:
    """(cell, metric, iteration) -> {seed: value}, keys in order of first appearance.

    A second value for the same seed is an error: averaging it away would hide a bug
    upstream (the same run read twice)."""
    groups: dict[Key, dict[int, float]] = {}
    for record in records:
        key, seed, value = _parse_record(record)
        by_seed = groups.setdefault(key, {})
        if seed in by_seed:
            raise ValueError(f"two values for seed {seed} of {key}")
        by_seed[seed] = value
    return groups


def _parse_record(record: Mapping[str, Any]) -> tuple[Key, int, float]:
    missing = [k for k in ("cell", "seed", "iteration", "metric", "value") if k not in record]
    if missing:
        raise ValueError(f"record {dict(record)!r} lacks {', '.join(missing)}")
    value = record["value"]
    if not _is_finite_number(value):
        raise ValueError(f"record {dict(record)!r}: value must be a finite number")
    key = (str(record["cell"]), str(record["metric"]), _as_iteration(record["iteration"]))
    return key, int(record["seed"]), float(value)


# ---------------------------------------------------------------- summarize


def summarize(records: Iterable[Mapping[str, Any]], *, confidence: float = 0.95,
              n_resamples: int = 1000, random_state: int = 0) -> list[Row]:
    """One row per (cell, metric, iteration): n, mean, std, bootstrap CI of the mean, note.

    Rows are ordered by cell and metric in order of first appearance (the grid order the
    caller built), then by iteration."""
    groups = _grouped(records)
    first: dict[tuple[str, str], int] = {}
    for cell, metric, _ in groups:
        first.setdefault((cell, metric), len(first))
    order = sorted(groups, key=lambda key: (first[key[:2]], key[2]))
    rows = [_summary_row(key, list(groups[key].values())) for key in order]
    _bootstrap_rows(rows, [np.asarray(list(groups[key].values()), dtype=float) for key in order], confidence,
                    n_resamples, random_state)
    return rows


def _summary_row(key: Key, values: list[float]) -> Row:
    cell, metric, iteration = key
    x = np.asarray(values, dtype=float)
    n = len(x)
    row: Row = {"cell": cell, "metric": metric, "iteration": iteration, "n": n,
                "mean": float(np.mean(x)), "std": NAN, "ci_low": NAN, "ci_high": NAN, "note": ""}
    if n < 2:
        row["note"] = "1 seed: no spread"
        return row
    row["std"] = float(np.std(x, ddof=1))
    if n == 2:
        row["note"] = "2 seeds: the bootstrap interval is just the two values"
    return row


def _bootstrap_rows(rows: list[Row], values: list[NDArray[np.float64]], confidence: float, n_resamples: int,
                    random_state: int) -> None:
    """Set each row's percentile bootstrap CI of the mean (rows of two or more seeds).

    Rows with the same number of seeds are resampled in one call of ``scipy.stats.bootstrap`` along
    the last axis: a sweep summarises hundreds of (metric, iteration) rows, and one call each cost
    seconds. Each call gets a fresh generator with the same seed, and the resampled positions depend
    only on that seed and the number of seeds, so every row gets the interval a call of its own
    would give, bit for bit. All values equal: every resample is the sample itself, so both ends are
    the row's mean."""
    by_n: dict[int, list[int]] = {}
    for i, x in enumerate(values):
        if len(x) >= 2:
            by_n.setdefault(len(x), []).append(i)
    if not by_n:
        return
    from scipy.stats import bootstrap

    for indices in by_n.values():
        res = bootstrap((np.stack([values[i] for i in indices]),), np.mean, n_resamples=n_resamples,
                        confidence_level=confidence, method="percentile", vectorized=True, axis=-1,
                        **_rng_argument(bootstrap, np.random.default_rng(random_state)))
        low, high = np.atleast_1d(res.confidence_interval.low), np.atleast_1d(res.confidence_interval.high)
        for j, i in enumerate(indices):
            rows[i]["ci_low"], rows[i]["ci_high"] = float(low[j]), float(high[j])


def _rng_argument(function: Any, generator: np.random.Generator) -> dict[str, Any]:
    """scipy >= 1.15 takes ``rng``; older releases only ``random_state`` (both take a Generator)."""
    name = "rng" if "rng" in inspect.signature(function).parameters else "random_state"
    return {name: generator}


# ---------------------------------------------------------------- compare


def compare_cells(records: Iterable[Mapping[str, Any]], *, metric: str, iteration: int,
                  comparisons: Sequence[tuple[str, str]],
                  correction: Correction = "holm") -> list[Row]:
    """One row per declared comparison (cell_a, cell_b) of ``metric`` at ``iteration``.

    Pairs are matched by seed; differences are b - a. The declared comparisons are the
    correction family: declare only the comparisons the question needs, since every extra
    one makes the others' corrected p-values larger."""
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    groups = _grouped(records)
    _check_comparisons(comparisons, {cell for cell, _, _ in groups})
    by_cell = {cell: seeds for (cell, m, it), seeds in groups.items()
               if m == metric and it == iteration}
    rows = [_compare_pair(by_cell.get(a, {}), by_cell.get(b, {}))
            | {"metric": metric, "iteration": iteration, "cell_a": a, "cell_b": b}
            for a, b in comparisons]
    _apply_correction(rows, correction)
    return [{column: row[column] for column in COMPARISON_COLUMNS} for row in rows]


def _check_comparisons(comparisons: Sequence[tuple[str, str]], cells: set[str]) -> None:
    """Typos and repeats are errors: a repeated comparison would silently enlarge the family."""
    seen: set[tuple[str, str]] = set()
    for a, b in comparisons:
        unknown = [c for c in (a, b) if c not in cells]
        if unknown:
            raise ValueError(f"unknown cell(s) {unknown}; known: {sorted(cells)}")
        if a == b:
            raise ValueError(f"comparison of {a!r} with itself")
        if (a, b) in seen or (b, a) in seen:
            raise ValueError(f"comparison ({a!r}, {b!r}) declared twice")
        seen.add((a, b))


def _compare_pair(a: Mapping[int, float], b: Mapping[int, float]) -> Row:
    """The unadjusted statistics of one comparison (b - a, paired by seed)."""
    seeds = sorted(set(a) & set(b))
    notes = _unpaired_note(a, b)
    row: Row = {"n_pairs": len(seeds), "mean_diff": NAN, "t": NAN, "p_t": NAN, "w": NAN,
                "p_wilcoxon": NAN, "wilcoxon_method": "", "cohens_d": NAN}
    xa, xb = (np.array([cell[s] for s in seeds], dtype=float) for cell in (a, b))
    d = xb - xa
    if len(seeds) < 2:
        notes.append(f"{len(seeds)} paired seed(s): no test, left out of the correction family")
        return row | {"mean_diff": float(d[0]) if len(d) else NAN, "note": "; ".join(notes)}
    row["mean_diff"] = float(np.mean(d))
    rounded = _without_roundoff(d)
    if np.all(rounded == 0):
        notes.append("all differences are zero: t and d undefined, both p-values set to 1")
        return row | {"p_t": 1.0, "w": 0.0, "p_wilcoxon": 1.0, "note": "; ".join(notes)}
    no_spread = bool(np.all(rounded == rounded[0]))
    if no_spread:
        notes.append("differences all equal: no spread, t-test degenerate (|t| huge or inf); "
                     "read the Wilcoxon test")
    row["t"], row["p_t"] = _paired_t(xa, xb, no_spread)
    row["w"], row["p_wilcoxon"], row["wilcoxon_method"] = _wilcoxon(rounded, notes)
    row["cohens_d"] = _cohens_d(d)
    return row | {"note": "; ".join(notes)}


def _unpaired_note(a: Mapping[int, float], b: Mapping[int, float]) -> list[str]:
    only = {"a": sorted(set(a) - set(b)), "b": sorted(set(b) - set(a))}
    parts = [f"{side} only {seeds}" for side, seeds in only.items() if seeds]
    return [f"unpaired seeds left out ({', '.join(parts)})"] if parts else []


def _paired_t(a: NDArray[np.float64], b: NDArray[np.float64], no_spread: bool) -> tuple[float, float]:
    """scipy's paired t-test of b against a (two-sided; t > 0 when b is larger).

    Differences with no spread make scipy warn of catastrophic cancellation; the row's note
    says that in words, so only then is the warning silenced."""
    from scipy.stats import ttest_rel

    with warnings.catch_warnings():
        if no_spread:
            warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        res = ttest_rel(b, a)
    return float(res.statistic), float(res.pvalue)


def _wilcoxon(d: NDArray[np.float64], notes: list[str]) -> tuple[float, float, str]:
    """scipy's Wilcoxon signed-rank test on (rounded) differences, the method named explicitly."""
    from scipy.stats import PermutationMethod, wilcoxon

    nonzero = d[d != 0]
    k, zeros = len(nonzero), len(d) - len(nonzero)
    ties = len(np.unique(np.abs(nonzero))) < k
    method: Any
    if not (ties or zeros) and len(d) <= EXACT_MAX_N:
        method, name = "exact", "exact"
    elif len(d) <= SIGN_FLIP_MAX_N:
        method, name = PermutationMethod(n_resamples=2 ** len(d)), "sign-flip"
    else:
        method, name = "asymptotic", "normal"
    if zeros:
        notes.append(f"{zeros} zero difference(s) dropped before ranking (zero_method='wilcox')")
    if name != "normal" and 2 / 2 ** k > 0.05:  # the exact / enumerated floor
        notes.append(f"{k} non-zero differences: smallest possible Wilcoxon p is {2 / 2 ** k:.4g}")
    res = wilcoxon(d, zero_method="wilcox", method=method)
    return float(res.statistic), float(res.pvalue), name


def _without_roundoff(d: NDArray[np.float64]) -> NDArray[np.float64]:
    """d rounded to 12 significant digits of its largest entry, for ranking.

    b - a carries roundoff (0.3 - 0.1 != 0.9 - 0.7), which would give equal differences
    different ranks and hide ties from the choice of method; scipy's documentation asks
    callers to round. Differences agreeing to 1e-12 of the largest one are equal here."""
    scale = float(np.max(np.abs(d)))
    return np.round(d, RANK_DIGITS - math.floor(math.log10(scale))) if scale > 0 else d


def _cohens_d(d: NDArray[np.float64]) -> float:
    """Paired Cohen's d (d_z): mean of differences / their sd (ddof=1); +-inf when sd is 0."""
    mean, sd = float(np.mean(d)), float(np.std(d, ddof=1))
    if sd == 0:
        return math.copysign(math.inf, mean) if mean else NAN
    return mean / sd


# ---------------------------------------------------------------- correction


def adjust_pvalues(pvalues: Sequence[float], correction: Correction) -> list[float]:
    """Corrected p-values over the family of the finite ones; NaN entries stay NaN.

    NaN marks a comparison with no test: it is not a member of the family (statsmodels
    would otherwise count it in the family size, or fail), so it does not make the others'
    corrections larger."""
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    members = [i for i, p in enumerate(pvalues) if math.isfinite(p)]
    out = [float(p) if math.isfinite(p) else NAN for p in pvalues]
    if correction == "none" or not members:
        return out
    from statsmodels.stats.multitest import multipletests

    adjusted = multipletests([pvalues[i] for i in members], method=correction)[1]
    for i, p in zip(members, adjusted):
        out[i] = float(p)
    return out


def _apply_correction(rows: list[Row], correction: Correction) -> None:
    p_t = adjust_pvalues([row["p_t"] for row in rows], correction)
    p_w = adjust_pvalues([row["p_wilcoxon"] for row in rows], correction)
    family = sum(math.isfinite(p) for p in p_t)
    for row, pt, pw in zip(rows, p_t, p_w):
        row.update(p_t_adj=pt, p_wilcoxon_adj=pw, correction=correction, family_size=family)


# ---------------------------------------------------------------- output


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *,
              columns: Sequence[str] | None = None) -> None:
    """Write rows as CSV: columns in the given order, else in order of first appearance.

    The order is that of the dicts ``summarize`` and ``compare_cells`` build, so a file's
    header is stable from run to run; NaN is written as ``nan`` (float() reads it back)."""
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), restval="", extrasaction="raise")
        writer.writeheader()
        writer.writerows(rows)
