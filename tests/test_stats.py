"""The statistics layer (analysis/stats.py).

Every expected number is derived by hand in a comment (closed forms, small tables of
arithmetic, enumerations written out in the test). None is obtained by calling the scipy
function under test again; where a tail probability is needed it comes from a closed form
or from ``scipy.stats.t.sf`` applied to a hand-computed t, which is a different function.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import t as t_dist

from collapsebench.analysis.stats import (
    COMPARISON_COLUMNS,
    SUMMARY_COLUMNS,
    adjust_pvalues,
    compare_cells,
    records_from_rows,
    summarize,
    write_csv,
)

SRC = Path(__file__).resolve().parents[1] / "src"
METRIC = "holdout_perplexity"


def rec(cell: str, seed: int, value: float, iteration: int = 1, metric: str = METRIC) -> dict[str, Any]:
    return {"cell": cell, "seed": seed, "iteration": iteration, "metric": metric, "value": value}


def paired(a: list[float], diffs: list[float], cell_a: str = "a", cell_b: str = "b") -> list[dict[str, Any]]:
    """Records of two cells over seeds 0..n-1 with b - a = diffs at each seed."""
    return ([rec(cell_a, s, x) for s, x in enumerate(a)]
            + [rec(cell_b, s, x + d) for s, (x, d) in enumerate(zip(a, diffs))])


def one(records: list[dict[str, Any]], comparisons: list[tuple[str, str]] | None = None,
        correction: str = "holm") -> list[dict[str, Any]]:
    return compare_cells(records, metric=METRIC, iteration=1,
                         comparisons=comparisons or [("a", "b")], correction=correction)  # type: ignore[arg-type]


def signed_rank_p(d: list[float]) -> float:
    """Exact two-sided Wilcoxon p by enumerating all 2**n sign patterns (no ties, no zeros).

    Under H0 each |d_i| is positive or negative with probability 1/2 independently; R+ is
    the sum of the ranks given a + sign; p = P(|R+ - n(n+1)/4| >= |observed - n(n+1)/4|)."""
    ranks = {v: r for r, v in enumerate(sorted(abs(x) for x in d), start=1)}
    observed = sum(ranks[abs(x)] for x in d if x > 0)
    centre = len(d) * (len(d) + 1) / 4
    patterns = list(itertools.product((0, 1), repeat=len(d)))
    extreme = sum(abs(sum(ranks[abs(x)] for x, sign in zip(d, p) if sign) - centre)
                  >= abs(observed - centre) for p in patterns)
    return extreme / len(patterns)


# ---------------------------------------------------------------- paired t, Cohen's d


def test_paired_t_against_the_closed_form_for_3_df() -> None:
    # differences b - a = [2, 2, 2, 6]:
    #   mean = 12/4 = 3; deviations -1, -1, -1, 3; SS = 1+1+1+9 = 12; var = 12/3 = 4; sd = 2
    #   t = mean / (sd / sqrt(n)) = 3 / (2/2) = 3, df = 3
    # t CDF for 3 df: F(t) = 1/2 + (theta + sin(theta)cos(theta)) / pi, theta = atan(t/sqrt(3)).
    #   t = 3: theta = atan(sqrt 3) = pi/3, sin*cos = (sqrt3/2)(1/2) = sqrt3/4
    #   F = 1/2 + 1/3 + sqrt3/(4 pi); two-sided p = 2(1 - F) = 1/3 - sqrt3/(2 pi) = 0.05767
    #   (t-table, 3 df: t_.95 = 2.353 < 3 < t_.975 = 3.182, so 0.05 < p < 0.10)
    # Cohen's d (paired) = mean / sd = 3/2 = 1.5
    (row,) = one(paired([10.0, 20.0, 30.0, 40.0], [2.0, 2.0, 2.0, 6.0]))
    p_hand = 1 / 3 - math.sqrt(3) / (2 * math.pi)
    assert row["n_pairs"] == 4
    assert row["mean_diff"] == pytest.approx(3.0)
    assert row["t"] == pytest.approx(3.0)
    assert row["p_t"] == pytest.approx(p_hand, rel=1e-9)
    assert 0.05 < row["p_t"] < 0.10
    assert row["cohens_d"] == pytest.approx(1.5)


def test_paired_t_and_d_on_five_pairs() -> None:
    # differences [1, -2, 3, 4, 5]: mean = 11/5 = 2.2
    #   deviations -1.2, -4.2, 0.8, 1.8, 2.8; squares 1.44 + 17.64 + 0.64 + 3.24 + 7.84 = 30.8
    #   var = 30.8/4 = 7.7; sd = sqrt(7.7) = 2.77489
    #   t = 2.2 / (sqrt(7.7)/sqrt(5)) = 2.2 sqrt(5/7.7) = 1.77281, df = 4
    #   d = 2.2 / sqrt(7.7) = 0.79282
    # p: 2 * t.sf(1.77281, 4), the t distribution's tail at the hand-computed t
    (row,) = one(paired([80.0, 82.0, 79.0, 85.0, 81.0], [1.0, -2.0, 3.0, 4.0, 5.0]))
    t_hand = 2.2 * math.sqrt(5 / 7.7)
    assert t_hand == pytest.approx(1.77281, abs=1e-5)
    assert row["t"] == pytest.approx(t_hand)
    assert row["p_t"] == pytest.approx(2 * t_dist.sf(t_hand, 4))
    assert row["cohens_d"] == pytest.approx(2.2 / math.sqrt(7.7))
    assert row["cohens_d"] == pytest.approx(0.79282, abs=1e-5)


def test_difference_is_b_minus_a() -> None:
    # swapping the cells flips the sign of mean_diff, t and d, and leaves the p-values alone
    records = paired([80.0, 82.0, 79.0, 85.0, 81.0], [1.0, -2.0, 3.0, 4.0, 5.0])
    (ab,) = one(records, [("a", "b")])
    (ba,) = one(records, [("b", "a")])
    assert ba["mean_diff"] == pytest.approx(-2.2)
    assert (ba["t"], ba["cohens_d"]) == pytest.approx((-ab["t"], -ab["cohens_d"]))
    assert (ba["p_t"], ba["w"], ba["p_wilcoxon"]) == pytest.approx((ab["p_t"], ab["w"], ab["p_wilcoxon"]))


# ---------------------------------------------------------------- Wilcoxon


def test_wilcoxon_exact_on_five_pairs() -> None:
    # differences [1, -2, 3, 4, 5]; |d| ranks 1, 2, 3, 4, 5 (no ties, no zeros)
    #   R- = 2 (the -2), R+ = 1+3+4+5 = 13; scipy's two-sided W = min(R+, R-) = 2
    # exact p: R+ <= 2 for the sign patterns whose positive ranks are {}, {1}, {2} -> 3 of 32;
    #   by symmetry R+ >= 13 for 3 more; p = 6/32 = 0.1875 (also enumerated below)
    d = [1.0, -2.0, 3.0, 4.0, 5.0]
    (row,) = one(paired([80.0, 82.0, 79.0, 85.0, 81.0], d))
    assert row["w"] == 2.0
    assert signed_rank_p(d) == 6 / 32
    assert row["p_wilcoxon"] == pytest.approx(6 / 32)
    assert row["wilcoxon_method"] == "exact"
    # 5 non-zero differences: the smallest possible p is 2/2**5 = 0.0625 > 0.05
    assert "smallest possible Wilcoxon p is 0.0625" in row["note"]


def test_wilcoxon_drops_a_zero_difference() -> None:
    # differences [0, 1, -2, 3, 4, 5]: the zero is dropped (zero_method="wilcox"), leaving the
    # five above, so W = 2. The method is the sign-flip enumeration (a zero is present): 2**6 =
    # 64 patterns, each of the 32 patterns of the non-zero signs twice (the zero's sign changes
    # nothing), so p = 12/64 = 6/32 = 0.1875, the same as without the zero.
    (row,) = one(paired([80.0, 81.0, 82.0, 79.0, 85.0, 81.0], [0.0, 1.0, -2.0, 3.0, 4.0, 5.0]))
    assert row["n_pairs"] == 6
    assert row["w"] == 2.0
    assert row["p_wilcoxon"] == pytest.approx(12 / 64)
    assert row["wilcoxon_method"] == "sign-flip"
    assert "1 zero difference(s) dropped" in row["note"]


def test_wilcoxon_with_ties_uses_the_sign_flip_enumeration() -> None:
    # differences [2, 2, 2, 6]: |d| = 2, 2, 2 share ranks 1..3 -> average rank 2 each; 6 -> 4
    #   R+ = 2+2+2+4 = 10, R- = 0; W = 0
    #   of the 16 sign patterns only all-plus (R+ = 10) and all-minus (R+ = 0) are as extreme:
    #   p = 2/16 = 0.125
    (row,) = one(paired([10.0, 20.0, 30.0, 40.0], [2.0, 2.0, 2.0, 6.0]))
    assert row["w"] == 0.0
    assert row["p_wilcoxon"] == pytest.approx(2 / 16)
    assert row["wilcoxon_method"] == "sign-flip"


def test_roundoff_does_not_split_ties() -> None:
    # b - a in floating point: 0.3-0.1, 0.9-0.7, 1.3-1.1, 2.5-2.3 are all 0.2 on paper but four
    # different doubles (0.19999999999999998, 0.20000000000000007, ...). Ranked as they are,
    # they would look untied; rounded they are one tie -> the sign-flip enumeration; all four
    # positive, so W = 0 and p = 2/16 (all-plus and all-minus).
    # The t-test sees (almost) no spread: the note says so.
    records = ([rec("a", s, v) for s, v in enumerate([0.1, 0.7, 1.1, 2.3])]
               + [rec("b", s, v) for s, v in enumerate([0.3, 0.9, 1.3, 2.5])])
    (row,) = one(records)
    assert row["wilcoxon_method"] == "sign-flip"
    assert (row["w"], row["p_wilcoxon"]) == (0.0, pytest.approx(2 / 16))
    assert "differences all equal" in row["note"]


def test_all_differences_zero() -> None:
    # identical cells: t = 0/0 and d = 0/0 are undefined; both p-values are 1 by this module's
    # rule (every sign flip of all-zero differences is the same data); the row stays in the family
    records = paired([80.0, 82.0, 79.0], [0.0, 0.0, 0.0])
    (row,) = one(records)
    assert row["mean_diff"] == 0.0
    assert math.isnan(row["t"]) and math.isnan(row["cohens_d"])
    assert (row["p_t"], row["w"], row["p_wilcoxon"]) == (1.0, 0.0, 1.0)
    assert (row["p_t_adj"], row["p_wilcoxon_adj"], row["family_size"]) == (1.0, 1.0, 1)
    assert "all differences are zero" in row["note"]


def test_equal_nonzero_differences() -> None:
    # differences [1, 1, 1]: sd = 0, so t = 1/(0/sqrt 3) = +inf and d = +inf (scipy: p_t = 0)
    # Wilcoxon: tied ranks 2, 2, 2, all positive; 2 of 8 sign patterns as extreme: p = 0.25
    (row,) = one(paired([80.0, 82.0, 79.0], [1.0, 1.0, 1.0]))
    assert row["t"] == math.inf and row["cohens_d"] == math.inf
    assert row["p_t"] == 0.0
    assert row["p_wilcoxon"] == pytest.approx(2 / 8)
    assert "no spread" in row["note"]
    assert "smallest possible Wilcoxon p is 0.25" in row["note"]


# ---------------------------------------------------------------- corrections


def test_holm_and_bonferroni_by_hand() -> None:
    p = [0.01, 0.04, 0.03, 0.20]
    # Bonferroni: p * 4 = 0.04, 0.16, 0.12, 0.80
    assert adjust_pvalues(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.80])
    # Holm: sort 0.01, 0.03, 0.04, 0.20; multiply by 4, 3, 2, 1 -> 0.04, 0.09, 0.08, 0.20;
    #   running maximum -> 0.04, 0.09, 0.09, 0.20; back in the original order:
    assert adjust_pvalues(p, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.20])
    assert adjust_pvalues(p, "none") == pytest.approx(p)
    # capped at 1: 0.6 * 2 = 1.2 -> 1
    assert adjust_pvalues([0.6, 0.01], "bonferroni") == pytest.approx([1.0, 0.02])
    # NaN is not a family member: m = 2, Holm: 0.01*2 = 0.02, max(0.02, 0.04*1) = 0.04
    out = adjust_pvalues([0.01, math.nan, 0.04], "holm")
    assert math.isnan(out[1]) and (out[0], out[2]) == pytest.approx((0.02, 0.04))
    with pytest.raises(ValueError, match="correction"):
        adjust_pvalues(p, "fdr")  # type: ignore[arg-type]


def family_records() -> list[dict[str, Any]]:
    """a vs b: 5 pairs, diffs [1,-2,3,4,5]; a vs c: 4 pairs, diffs [2,2,2,6]; a vs d: 1 pair."""
    a = [80.0, 82.0, 79.0, 85.0, 81.0]
    records = paired(a, [1.0, -2.0, 3.0, 4.0, 5.0])
    records += [rec("c", s, x + dd) for s, (x, dd) in enumerate(zip(a[:4], [2.0, 2.0, 2.0, 6.0]))]
    records += [rec("d", 0, 90.0)]
    return records


def test_comparison_family_leaves_out_rows_without_a_test() -> None:
    # raw p-values (tests above): a-b p_t = 2 t.sf(1.77281, 4) = 0.15094, p_w = 0.1875
    #                             a-c p_t = 1/3 - sqrt3/(2 pi) = 0.05767, p_w = 0.125
    # a-d has one pair: no test, not in the family, so m = 2.
    # Holm, t-test:    0.05767*2 = 0.11534 (a-c); max(0.11534, 0.15094*1) = 0.15094 (a-b)
    # Holm, Wilcoxon:  0.125*2 = 0.25 (a-c);     max(0.25, 0.1875*1) = 0.25 (a-b: running max)
    p_ab, p_ac = 2 * t_dist.sf(2.2 * math.sqrt(5 / 7.7), 4), 1 / 3 - math.sqrt(3) / (2 * math.pi)
    ab, ac, ad = one(family_records(), [("a", "b"), ("a", "c"), ("a", "d")])
    assert (ac["p_t_adj"], ab["p_t_adj"]) == pytest.approx((2 * p_ac, p_ab))
    assert (ac["p_wilcoxon_adj"], ab["p_wilcoxon_adj"]) == pytest.approx((0.25, 0.25))
    assert ad["n_pairs"] == 1 and ad["mean_diff"] == pytest.approx(10.0)  # 90 - 80
    assert all(math.isnan(ad[k]) for k in ("t", "p_t", "p_t_adj", "w", "p_wilcoxon", "p_wilcoxon_adj", "cohens_d"))
    assert "left out of the correction family" in ad["note"]
    assert "unpaired seeds left out (a only [1, 2, 3, 4])" in ad["note"]
    assert {r["correction"] for r in (ab, ac, ad)} == {"holm"}
    assert {r["family_size"] for r in (ab, ac, ad)} == {2}


def test_comparison_family_bonferroni_and_none() -> None:
    # Bonferroni, m = 2: a-b 0.1875*2 = 0.375, a-c 0.125*2 = 0.25; "none": the raw values
    ab, ac = one(family_records(), [("a", "b"), ("a", "c")], correction="bonferroni")
    assert (ab["p_wilcoxon_adj"], ac["p_wilcoxon_adj"]) == pytest.approx((0.375, 0.25))
    assert ab["correction"] == "bonferroni"
    ab, ac = one(family_records(), [("a", "b"), ("a", "c")], correction="none")
    assert (ab["p_wilcoxon_adj"], ac["p_wilcoxon_adj"]) == pytest.approx((0.1875, 0.125))
    assert ab["p_t_adj"] == ab["p_t"]


def test_compare_pairs_by_seed_and_reads_one_iteration() -> None:
    # b lacks seed 2; seed 3 exists only in b; another iteration and metric are ignored.
    # pairs at iteration 2: seeds 0, 1, 4 with diffs 1, 2, 3 -> mean 2, sd 1, t = 2/(1/sqrt3) = 2 sqrt3
    records = [rec("a", s, v, iteration=2) for s, v in [(0, 10.0), (1, 10.0), (2, 10.0), (4, 10.0)]]
    records += [rec("b", s, v, iteration=2) for s, v in [(0, 11.0), (1, 12.0), (3, 50.0), (4, 13.0)]]
    records += [rec("a", 0, 0.0, iteration=1), rec("b", 0, 100.0, iteration=1)]
    records += [rec("a", 0, 0.0, iteration=2, metric="other"), rec("b", 0, 5.0, iteration=2, metric="other")]
    (row,) = compare_cells(records, metric=METRIC, iteration=2, comparisons=[("a", "b")])
    assert row["n_pairs"] == 3 and row["iteration"] == 2 and row["metric"] == METRIC
    assert row["mean_diff"] == pytest.approx(2.0)
    assert row["t"] == pytest.approx(2 * math.sqrt(3))
    assert "a only [2]" in row["note"] and "b only [3]" in row["note"]
    assert tuple(row) == COMPARISON_COLUMNS


def test_compare_rejects_bad_declarations() -> None:
    records = family_records()
    with pytest.raises(ValueError, match="unknown cell"):
        one(records, [("a", "typo")])
    with pytest.raises(ValueError, match="itself"):
        one(records, [("a", "a")])
    with pytest.raises(ValueError, match="twice"):
        one(records, [("a", "b"), ("b", "a")])
    with pytest.raises(ValueError, match="correction"):
        one(records, correction="fdr")


def test_a_cell_without_values_at_that_iteration() -> None:
    # a cell whose runs all stopped before the iteration: 0 pairs, a note, not an error
    records = [rec("a", 0, 1.0, iteration=3), rec("a", 1, 2.0, iteration=3), rec("b", 0, 1.0, iteration=1)]
    (row,) = compare_cells(records, metric=METRIC, iteration=3, comparisons=[("a", "b")])
    assert row["n_pairs"] == 0 and math.isnan(row["mean_diff"])
    assert "0 paired seed(s)" in row["note"] and row["family_size"] == 0


# ---------------------------------------------------------------- summarize


def test_identical_values_collapse_the_interval() -> None:
    # every resample of [5, 5, 5] has mean 5: the interval is [5, 5]; sd = 0
    (row,) = summarize([rec("a", s, 5.0) for s in range(3)])
    assert (row["n"], row["mean"], row["std"], row["ci_low"], row["ci_high"]) == (3, 5.0, 0.0, 5.0, 5.0)
    # 0.1 is not exact in binary: the mean of three is 0.10000000000000002; the interval is
    # that same float, so it never excludes the mean it is reported with
    (row,) = summarize([rec("a", s, 0.1) for s in range(3)])
    assert row["ci_low"] == row["mean"] == row["ci_high"] == pytest.approx(0.1)


def test_bootstrap_interval_of_a_known_sample() -> None:
    # sample [1, 2, 3, 4]: mean 2.5; SS = 2.25+0.25+0.25+2.25 = 5; std = sqrt(5/3)
    # exact bootstrap distribution of the mean: 4 draws from {1,2,3,4}, 256 equally likely tuples
    #   sum 4: 1 tuple; sum 5: 4 (one 2); sum 6: 6 (two 2s) + 4 (one 3) = 10
    #   P(mean <= 1.25) = 5/256 = 0.0195 < 0.025 <= P(mean <= 1.5) = 15/256 = 0.0586
    #   so the exact 2.5% quantile is 1.5, and by symmetry the 97.5% quantile is 3.5;
    #   1,000 resamples put the Monte Carlo quantiles on a neighbouring grid value at worst.
    records = [rec("a", s, float(s + 1)) for s in range(4)]
    (row,) = summarize(records)
    assert row["mean"] == 2.5 and row["std"] == pytest.approx(math.sqrt(5 / 3))
    assert 1.25 <= row["ci_low"] <= 1.5 and 3.5 <= row["ci_high"] <= 3.75
    assert 1.0 <= row["ci_low"] < row["mean"] < row["ci_high"] <= 4.0
    (again,) = summarize(records)
    assert (again["ci_low"], again["ci_high"]) == (row["ci_low"], row["ci_high"])  # fixed seed
    (other,) = summarize(records, random_state=7)
    assert 1.0 <= other["ci_low"] <= other["ci_high"] <= 4.0
    (wide,) = summarize(records, confidence=0.5)  # a 50% interval sits inside the 95% one
    assert row["ci_low"] <= wide["ci_low"] <= wide["ci_high"] <= row["ci_high"]


def test_rows_summarised_together_get_the_interval_of_a_call_of_their_own() -> None:
    # many (metric, iteration) rows share one bootstrap call per number of seeds; each row's interval
    # must be the one scipy gives that row alone with the same seed
    from scipy.stats import bootstrap

    rng = np.random.default_rng(3)
    values = {(m, k): rng.normal(size=5) for m in ("x", "y") for k in (1, 2, 3)}
    records = [{"cell": "c", "seed": s, "metric": m, "iteration": k, "value": float(v[s])}
               for (m, k), v in values.items() for s in range(5)]
    rows = summarize(records, random_state=11)
    assert len(rows) == 6
    for row in rows:
        alone = bootstrap((values[row["metric"], row["iteration"]],), np.mean, n_resamples=1000,
                          confidence_level=0.95, method="percentile", vectorized=True,
                          rng=np.random.default_rng(11)).confidence_interval
        assert (row["ci_low"], row["ci_high"]) == (float(alone.low), float(alone.high))


def test_two_seeds_interval_is_the_two_values() -> None:
    # resample means of [10, 20]: 10 (prob 1/4), 15 (1/2), 20 (1/4); the 2.5% and 97.5% points
    # of 1,000 resamples are 10 and 20 unless fewer than 25 of them are all-10 (or all-20),
    # about 16 standard deviations below the expected 250.
    (row,) = summarize([rec("a", 0, 10.0), rec("a", 1, 20.0)])
    assert (row["ci_low"], row["ci_high"]) == (10.0, 20.0)
    assert row["std"] == pytest.approx(math.sqrt(50.0))  # (25 + 25) / 1
    assert "2 seeds" in row["note"]


def test_one_seed_has_a_note_not_just_nans() -> None:
    (row,) = summarize([rec("a", 0, 7.5)])
    assert (row["n"], row["mean"]) == (1, 7.5)
    assert all(math.isnan(row[k]) for k in ("std", "ci_low", "ci_high"))
    assert row["note"] == "1 seed: no spread"


def test_n_per_iteration_when_a_run_stopped_early() -> None:
    # seeds 0 and 1 reach iteration 3; seed 2 stopped after iteration 1 (no carry-forward)
    records = [rec("a", s, 10.0 * s + k, iteration=k) for s in (0, 1) for k in (1, 2, 3)]
    records.append(rec("a", 2, 99.0, iteration=1))
    rows = summarize(records)
    assert [(r["iteration"], r["n"]) for r in rows] == [(1, 3), (2, 2), (3, 2)]
    # iteration 1: (1 + 11 + 99)/3 = 37; iteration 3: (3 + 13)/2 = 8
    assert (rows[0]["mean"], rows[2]["mean"]) == pytest.approx((37.0, 8.0))


def test_rows_are_ordered_and_have_the_summary_columns() -> None:
    records = [rec("z", 0, 1.0, iteration=2), rec("a", 0, 1.0, iteration=1, metric="m2"),
               rec("z", 0, 1.0, iteration=1), rec("a", 0, 1.0, iteration=1)]
    rows = summarize(records)
    assert [(r["cell"], r["metric"], r["iteration"]) for r in rows] == [
        ("z", METRIC, 1), ("z", METRIC, 2), ("a", "m2", 1), ("a", METRIC, 1)]
    assert all(tuple(r) == SUMMARY_COLUMNS for r in rows)


def test_summary_mean_and_std_match_numpy() -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(50.0, 10.0, size=(3, 6, 4))  # cell x seed x iteration
    records = [rec(f"cell{c}", s, float(table[c, s, k]), iteration=k)
               for c in range(3) for s in range(6) for k in range(4)]
    rows = summarize(records, n_resamples=200)
    assert len(rows) == 12
    for row in rows:
        values = table[int(row["cell"][-1]), :, row["iteration"]]
        assert row["n"] == 6
        assert row["mean"] == pytest.approx(values.mean())
        assert row["std"] == pytest.approx(values.std(ddof=1))
        assert values.min() <= row["ci_low"] <= row["mean"] <= row["ci_high"] <= values.max()


def test_bad_records_are_errors() -> None:
    with pytest.raises(ValueError, match="two values for seed 0"):
        summarize([rec("a", 0, 1.0), rec("a", 0, 2.0)])
    with pytest.raises(ValueError, match="finite"):
        summarize([rec("a", 0, math.inf)])
    with pytest.raises(ValueError, match="lacks value"):
        summarize([{"cell": "a", "seed": 0, "iteration": 1, "metric": METRIC}])


# ---------------------------------------------------------------- records and CSV


def test_records_from_metrics_rows() -> None:
    rows: list[dict[str, Any]] = [{"iteration": 1.0, METRIC: 80.0, "n_docs": 3, "flag": True, "name": "x",
             "bad": math.inf, "missing": None, "gone": math.nan},
            {"iteration": 2, METRIC: 90.5}]
    records = records_from_rows("replace alpha=0.5", 4, rows)
    assert records == [
        {"cell": "replace alpha=0.5", "seed": 4, "iteration": 1, "metric": METRIC, "value": 80.0},
        {"cell": "replace alpha=0.5", "seed": 4, "iteration": 1, "metric": "n_docs", "value": 3.0},
        {"cell": "replace alpha=0.5", "seed": 4, "iteration": 2, "metric": METRIC, "value": 90.5},
    ]
    assert isinstance(records[0]["iteration"], int)
    with pytest.raises(ValueError, match="whole number"):
        records_from_rows("c", 0, [{"iteration": 1.5, METRIC: 1.0}])


def test_write_csv_round_trip(tmp_path: Path) -> None:
    rows = one(family_records(), [("a", "b"), ("a", "d")])
    path = tmp_path / "compare.csv"
    write_csv(rows, path)
    with open(path, newline="") as f:
        header, *body = list(csv.reader(f))
    assert tuple(header) == COMPARISON_COLUMNS
    assert float(body[0][header.index("p_wilcoxon")]) == pytest.approx(0.1875)
    assert body[1][header.index("p_t")] == "nan"
    assert body[1][header.index("note")] == rows[1]["note"]
    empty = tmp_path / "empty.csv"
    write_csv([], empty, columns=SUMMARY_COLUMNS)
    assert empty.read_text().strip() == ",".join(SUMMARY_COLUMNS)


def test_import_is_light() -> None:
    # `collapsebench compare` imports this module: scipy and statsmodels load only when used
    code = ("import sys, collapsebench.analysis.stats; "
            "print(sorted(m for m in ('scipy', 'statsmodels', 'torch', 'datasets') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
