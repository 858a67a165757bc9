"""Declared contrasts: each statistic against values computed by hand, the family's adjustment, the
verdict rules, the schema, and ``compare`` on hand-written runs and on the committed toy sweep."""

import csv
import json
import math

import numpy as np
import pytest
import yaml

from collapsebench.analysis import contrast_stats as S
from collapsebench.analysis.compare import compare
from collapsebench.cli import main
from collapsebench.config import config_from_dict, identity
from collapsebench.config.contrasts import Contrast, ContrastsConfig, Precondition
from collapsebench.errors import UserError
from collapsebench.sweep.runner import create, run_sweep
from conftest import REPO, write_evaluated_run

TOY = REPO / "configs" / "toy" / "gaussian_contrasts.yaml"


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))

# ------------------------------------------------------------------------------------ run level


def test_paired_t_interval_by_hand():
    a, b = [3.0, 5.0, 4.0, 8.0], [1.0, 2.0, 2.0, 3.0]
    # d = [2, 3, 2, 5]: mean 3, sd sqrt(((-1)^2 + 0 + (-1)^2 + 2^2) / 3) = sqrt 2, se = sqrt(2) / 2
    t_975_3df = 3.182446305284263  # the 97.5% quantile of t with 3 degrees of freedom (tables)
    est = S.paired_t(a, b)
    assert est.effect == 3.0 and est.n_pairs == 4
    low, high = est.interval(0.95)
    assert low == pytest.approx(3 - t_975_3df * math.sqrt(2) / 2)
    assert high == pytest.approx(3 + t_975_3df * math.sqrt(2) / 2)
    # t = 3 / (sqrt 2 / 2) = 3 sqrt 2; with 3 df: two-sided p of t = 4.2426 is 0.02401 (tables)
    assert est.p == pytest.approx(0.0240, abs=2e-4)


def test_welch_interval_by_hand():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0]
    va, vb = 5 / 3, 4.0  # sample variances
    se2 = va / 4 + vb / 3
    df = se2 ** 2 / ((va / 4) ** 2 / 3 + (vb / 3) ** 2 / 2)  # Welch-Satterthwaite
    from scipy.stats import t

    q = t.ppf(0.975, df)
    est = S.welch_t(a, b)
    assert est.effect == pytest.approx(2.5 - 4.0) and est.n_pairs is None
    low, high = est.interval(0.95)
    assert (low, high) == (pytest.approx(-1.5 - q * math.sqrt(se2)), pytest.approx(-1.5 + q * math.sqrt(se2)))


def test_too_few_seeds_and_no_spread():
    one = S.paired_t([1.0], [0.0])
    assert math.isnan(one.p) and one.effect == 1.0 and all(math.isnan(x) for x in one.interval(0.95))
    flat = S.paired_t([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert flat.interval(0.99) == (1.0, 1.0) and flat.p == 0.0 and "no spread" in flat.notes[0]
    same = S.paired_t([2.0, 3.0, 4.0], [2.0, 3.0, 4.0])
    assert same.interval(0.95) == (0.0, 0.0) and same.p == 1.0


# ------------------------------------------------------------------------------------ the family


def test_holm_adjustment_and_levels_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, float("nan")]
    adjusted, levels = S.family_levels(p, "holm", 0.95)
    # sorted: 0.005 x 4 = 0.02 (< 0.05/4: rejected), 0.01 x 3 = 0.03 (< 0.05/3: rejected),
    # 0.03 x 2 = 0.06 (> 0.05/2: Holm stops here), 0.04 x 1 -> max(0.06, 0.04) = 0.06
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(adjusted[4])
    assert levels[:4] == pytest.approx([1 - 0.05 / 3, 0.975, 0.975, 1 - 0.05 / 4]) and math.isnan(levels[4])
    adjusted, levels = S.family_levels(p, "bonferroni", 0.95)
    assert adjusted[:4] == pytest.approx([0.04, 0.16, 0.12, 0.02]) and levels[:4] == pytest.approx([0.9875] * 4)
    adjusted, levels = S.family_levels(p, "none", 0.9)
    assert adjusted[:4] == p[:4] and levels[:4] == [0.9] * 4


def test_holm_intervals_exclude_zero_exactly_when_holm_rejects():
    rng = np.random.default_rng(3)
    ests = [S.paired_t(rng.normal(shift, 1, 6), rng.normal(0, 1, 6)) for shift in (0, 0.5, 1, 1.5, 2, 3)]
    adjusted, levels = S.family_levels([e.p for e in ests], "holm", 0.95)
    for est, p_adj, level in zip(ests, adjusted, levels):
        low, high = est.interval(level)
        assert (low > 0 or high < 0) == (p_adj < 0.05)
    assert any(p < 0.05 for p in adjusted) and any(p >= 0.05 for p in adjusted)  # both kinds occurred


# ------------------------------------------------------------------------------------ item level


def test_cmh_statistic_by_hand():
    # per seed: rows arm A / arm B, columns correct / wrong
    tables = [[[30, 10], [20, 20]], [[25, 15], [22, 18]], [[35, 5], [28, 12]]]
    num, var, r, s = 0.0, 0.0, 0.0, 0.0
    for (a, b), (c, d) in tables:
        n = a + b + c + d
        num += a - (a + b) * (a + c) / n
        var += (a + b) * (c + d) * (a + c) * (b + d) / (n ** 2 * (n - 1))
        r += a * d / n
        s += b * c / n
    stat = num ** 2 / var
    out = S.cmh(np.moveaxis(np.array(tables), 0, -1))
    assert out["cmh_statistic"] == pytest.approx(stat)
    assert out["cmh_p"] == pytest.approx(math.erfc(math.sqrt(stat / 2)))  # chi-square, 1 df
    assert out["mh_odds_ratio"] == pytest.approx(r / s)


def test_hierarchical_bootstrap():
    # within each seed every item differs by the same amount: only the seeds vary
    diffs = [np.full(50, 0.1), np.full(80, 0.3), np.full(20, 0.2)]
    est = S.hierarchical_bootstrap(diffs, 2000)
    assert est.effect == pytest.approx(0.2) and est.n_pairs == 3 and est.p == 0.0
    low, high = est.interval(0.95)
    assert 0.1 - 1e-12 <= low < 0.2 < high <= 0.3 + 1e-12
    again = S.hierarchical_bootstrap(diffs, 2000)
    assert again.interval(0.95) == (low, high)  # a fixed seed
    # two seeds of one item each, differences -1 and 1: a resample's two seeds give -1 (1/4), 0 (1/2)
    # or 1 (1/4); p = 2 min(P(<= 0), P(>= 0)) = 2 x 3/4, capped at 1; the 95% interval is [-1, 1]
    est = S.hierarchical_bootstrap([np.array([-1.0]), np.array([1.0])], 4000)
    assert est.effect == 0.0 and est.p == 1.0 and est.interval(0.95) == (-1.0, 1.0)
    shares = np.mean(S._resample([np.array([-1.0]), np.array([1.0])], 4000, np.random.default_rng(0))[:, None]
                     == np.array([-1.0, 0.0, 1.0]), axis=0)
    assert shares == pytest.approx([0.25, 0.5, 0.25], abs=0.03)  # 4000 draws: sd of a share < 0.008
    # one seed of two items (differences 0 and 1) and one of a single item (difference 1): within the
    # first seed an item draw's mean is 0 (1/4), 1/2 (1/2) or 1 (1/4), so the statistic is 0 only when
    # both seed draws are the first seed and both its item draws are 0: (1/2)^2 x (1/4)^2 = 1/64
    stats = S._resample([np.array([0.0, 1.0]), np.array([1.0])], 20000, np.random.default_rng(1))
    assert np.mean(stats == 0) == pytest.approx(1 / 64, abs=0.004)
    # 0/1 items with no systematic difference: the interval holds 0, p is large
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 2, 200) - rng.integers(0, 2, 200) for _ in range(4)]
    est = S.hierarchical_bootstrap([x.astype(float) for x in noise], 2000)
    low, high = est.interval(0.95)
    assert low < 0 < high and est.p > 0.05
    assert est.effect == pytest.approx(np.mean([x.mean() for x in noise]))


# ------------------------------------------------------------------------------------ verdicts


@pytest.mark.parametrize("interval, direction, effect, margin, n, expected", [
    ((0.1, 0.5), "increase", None, None, 3, "reproduced"),
    ((-0.5, -0.1), "increase", None, None, 3, "reversed"),
    ((-0.5, -0.1), "decrease", 0.9 * -1, None, 5, "reproduced"),
    ((-0.1, 0.5), "increase", 0.3, None, 3, "inconclusive"),
    ((-0.1, 0.2), "increase", 0.3, None, 3, "not shown"),
    ((-0.1, 0.2), "increase", None, None, 3, "inconclusive"),
    ((-0.04, 0.04), "none", None, 0.05, 3, "equivalent"),
    ((-0.04, 0.06), "none", None, 0.05, 3, "inconclusive"),
    ((0.05, 0.2), "none", None, 0.05, 3, "reversed"),
    ((0.1, 0.5), "increase", None, None, 2, "not shown"),
    ((-0.04, 0.04), "none", None, 0.05, 2, "not shown"),
])
def test_verdict_rules(interval, direction, effect, margin, n, expected):
    verdict, why = S.verdict(*interval, direction, effect, margin, n)
    assert verdict == expected and why
    if n < 3:
        assert "fewer than 3 seeds" in why


# ------------------------------------------------------------------------------------ schema


def test_schema():
    claim = {"name": "c", "a": {"curate.regime.alpha": 0.2}, "b": {"runs": ["../x"]}, "metric": "m",
             "direction": "decrease", "effect": -0.5}
    block = ContrastsConfig.model_validate({"claims": [claim]})
    assert block.correction == "holm" and block.claims[0].a.where == {"curate.regime.alpha": 0.2}
    assert block.claims[0].iteration == "last" and block.claims[0].b.runs == ["../x"]
    for bad, words in [({"direction": "none", "effect": None}, "margin"),
                       ({"effect": 0.5}, "sign"),
                       ({"margin": 0.1}, "null claims"),
                       ({"a": {"where": {"seed": 0}, "runs": ["x"]}}, "either"),
                       ({"iteration": 0}, "iteration")]:
        with pytest.raises(ValueError, match=words):
            Contrast.model_validate({**claim, **bad})
    with pytest.raises(ValueError, match="unique"):
        ContrastsConfig.model_validate({"claims": [claim, claim]})
    with pytest.raises(UserError, match="contrasts.correction"):
        config_from_dict({"name": "x", "iterations": 1, "contrasts": {"correction": "sidak", "claims": [claim]}})


def test_contrasts_do_not_change_a_runs_identity():
    plain = config_from_dict({"name": "x", "iterations": 2})
    declared = config_from_dict({"name": "x", "iterations": 2, "contrasts": {"claims": [
        {"name": "c", "a": {"seed": 1}, "b": {"seed": 0}, "metric": "m", "direction": "none", "margin": 1}]}})
    assert identity(plain) == identity(declared)


# ------------------------------------------------------------------------------------ compare on runs


def write_run(path, seed, alpha, values, contrasts, items=None):
    rows = [{"iteration": k, **v} for k, v in enumerate(values, 1)]
    write_evaluated_run(path, {"name": path.name, "seed": seed, "iterations": len(values),
                               "curate": {"regime": {"name": "replace", "alpha": alpha}}, "contrasts": contrasts}, rows)
    if items is not None:
        folder = path / "iter_002" / "evaluate"
        (folder / "knowledge_items.jsonl").write_text(
            "".join(json.dumps({"id": f"q{i}", "correct": bool(c)}) + "\n" for i, c in enumerate(items)))
        # lm-eval's samples: one row per document and filter; the other filter's values are the complement
        (folder / "lm_eval_samples_gsm.jsonl").write_text("".join(
            json.dumps({"doc_id": i, "filter": f, "exact_match": float(c if f == "strict-match" else 1 - c)}) + "\n"
            for i, c in enumerate(items) for f in ("strict-match", "flexible-extract")))
    return path


CLAIMS = {"correction": "bonferroni", "n_resamples": 2000, "claims": [
    {"name": "drop", "a": {"curate.regime.alpha": 0.5}, "b": {"curate.regime.alpha": 0.0}, "metric": "m",
     "direction": "decrease"},
    {"name": "knowledge_same", "a": {"curate.regime.alpha": 0.5}, "b": {"curate.regime.alpha": 0.0},
     "metric": "knowledge_accuracy", "iteration": 2, "direction": "none", "margin": 0.3},
    {"name": "gsm", "a": {"curate.regime.alpha": 0.5}, "b": {"curate.regime.alpha": 0.0},
     "metric": "lm_eval/gsm/exact_match/strict-match", "level": "item", "direction": "decrease"}]}


@pytest.fixture
def runs(tmp_path):
    """alpha 0 and 0.5 x seeds 0-3; m drops by 1, 2, 3, 2 at iteration 2; 10 knowledge items each."""
    rng = np.random.default_rng(1)
    out = []
    for seed, drop in enumerate([1.0, 2.0, 3.0, 2.0]):
        truth = rng.integers(0, 2, 10)
        for alpha, m, items in [(0.0, 5.0 + seed, truth), (0.5, 5.0 + seed - drop, truth ^ (rng.random(10) < 0.2))]:
            values = [{"m": 5.0 + seed, "knowledge_accuracy": 0.5},
                      {"m": m, "knowledge_accuracy": float(np.mean(items)),
                       "lm_eval/gsm/exact_match/strict-match": float(np.mean(items))}]
            out.append(write_run(tmp_path / f"a{alpha}s{seed}", seed, alpha, values, CLAIMS, items.tolist()))
    return out


def item_effect(runs):
    """mean over seeds of the mean item-wise difference alpha 0.5 - alpha 0, from the files written"""
    def read(run):
        lines = (run / "iter_002" / "evaluate" / "knowledge_items.jsonl").read_text().splitlines()
        return np.array([float(json.loads(line)["correct"]) for line in lines])
    return np.mean([np.mean(read(runs[i + 1]) - read(runs[i])) for i in range(0, len(runs), 2)])


def test_compare_prints_and_writes_the_verdicts(runs, tmp_path, capsys):
    assert main(["compare", *map(str, runs), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "contrasts (3 claims; effect = A - B; Bonferroni intervals, 95% family-wise)" in err
    rows = {r["name"]: r for r in read_csv(tmp_path / "out" / "contrasts.csv")}
    drop = rows["drop"]
    # d = [-1, -2, -3, -2] at the last iteration (2): mean -2, sd sqrt(2/3), interval at 1 - 0.05/3
    from scipy.stats import t

    half = t.ppf(1 - 0.05 / 3 / 2, 3) * math.sqrt(2 / 3) / 2
    assert drop["iteration"] == "2" and drop["level"] == "run" and drop["n_pairs"] == "4"
    assert float(drop["effect"]) == -2.0 and float(drop["ci_low"]) == pytest.approx(-2 - half)
    assert float(drop["ci_high"]) == pytest.approx(-2 + half) and drop["verdict"] == "reproduced"
    assert "DROP".lower() in err and "REPRODUCED" in err
    items = rows["knowledge_same"]
    assert items["level"] == "item" and items["method"].startswith("hierarchical bootstrap")
    assert items["cmh_statistic"] != "" and items["verdict"] in {"equivalent", "inconclusive", "reversed"}
    assert float(items["ci_confidence"]) == pytest.approx(1 - 0.05 / 3)
    assert float(items["effect"]) == pytest.approx(item_effect(runs)) and "10 shared items" in items["note"]
    gsm = rows["gsm"]  # the same 0/1 values, read from lm-eval's samples of the strict-match filter only
    assert gsm["level"] == "item" and float(gsm["effect"]) == pytest.approx(item_effect(runs))
    assert gsm["cmh_statistic"] == items["cmh_statistic"] and gsm["ci_low"] == items["ci_low"]
    table = (tmp_path / "out" / "contrasts.md").read_text().splitlines()
    assert len(table) == 5 and table[2].startswith("| drop | m at iteration 2 | -2 [") and table[2].endswith(
        "| 4 | reproduced |")
    js = json.loads((tmp_path / "out" / "contrasts.json").read_text())
    assert [r["name"] for r in js] == ["drop", "knowledge_same", "gsm"] and js[0]["verdict"] == "reproduced"


def test_compare_contrast_errors(runs, tmp_path):
    bad = {"claims": [{**CLAIMS["claims"][0], "a": {"curate.regime.alpha": 0.7}}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"contrasts": bad}))
    with pytest.raises(UserError, match="claim 'drop', arm a: no compared run has curate.regime.alpha=0.7"):
        compare(runs, out=tmp_path / "o", contrasts=tmp_path / "c.yaml", quiet=True)
    both = {"claims": [{**CLAIMS["claims"][0], "a": {"curate.regime.name": "replace"}}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"contrasts": both}))
    with pytest.raises(UserError, match="matches several runs of seed 0"):
        compare(runs, out=tmp_path / "o", contrasts=tmp_path / "c.yaml", quiet=True)
    (tmp_path / "c.yaml").write_text("name: x\n")
    with pytest.raises(UserError, match="no 'contrasts:' block"):
        compare(runs, out=tmp_path / "o", contrasts=tmp_path / "c.yaml", quiet=True)


def test_too_few_seeds_is_not_shown(runs, tmp_path):
    few = [r for r in runs if r.name.endswith(("s0", "s1"))]
    compare(few, out=tmp_path / "o", quiet=True)
    rows = {r["name"]: r for r in read_csv(tmp_path / "o" / "contrasts.csv")}
    assert rows["drop"]["verdict"] == "not shown" and "fewer than 3 seeds" in rows["drop"]["why"]


def test_an_arm_read_at_its_own_iteration_compares_runs_with_themselves(runs, tmp_path, capsys):
    """alpha 0.5's m drops by 1, 2, 3, 2 from iteration 1 to 2: the change over rounds is a claim of
    the same runs at two iterations, paired by seed; the same runs at one iteration are refused."""
    half = {"curate.regime.alpha": 0.5}
    over = {"claims": [{"name": "falls", "a": {"where": half, "iteration": 2}, "b": {"where": half, "iteration": 1},
                        "metric": "m", "direction": "decrease"}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"contrasts": over}))
    compare(runs, out=tmp_path / "o", contrasts=tmp_path / "c.yaml")
    row = read_csv(tmp_path / "o" / "contrasts.csv")[0]
    assert float(row["effect"]) == -2.0 and row["n_pairs"] == "4" and row["iteration"] == "2 vs 1"
    assert row["a"] == "curate.regime.alpha=0.5 at iteration 2" and row["verdict"] == "reproduced"
    assert "at iteration 2 vs 1" in capsys.readouterr().err
    over["claims"][0]["a"]["iteration"] = 1
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"contrasts": over}))
    with pytest.raises(UserError, match="a run is in both arms .* at the same iteration"):
        compare(runs, out=tmp_path / "o", contrasts=tmp_path / "c.yaml", quiet=True)


def test_a_failed_precondition_makes_its_claims_not_testable(runs, tmp_path, capsys):
    """m is 5 + seed at iteration 1 in every run: 'at_least 6' fails seed 0 of both arms; restricted
    by where to alpha 0.5, only that arm's run fails; a precondition that every run meets changes nothing."""
    def verdicts(preconditions):
        (tmp_path / "c.yaml").write_text(yaml.safe_dump({"contrasts": {**CLAIMS, "preconditions": preconditions}}))
        compare(runs, out=tmp_path / "o", contrasts=tmp_path / "c.yaml")
        return {r["name"]: r for r in read_csv(tmp_path / "o" / "contrasts.csv")}, capsys.readouterr().err

    met, err = verdicts([{"name": "started", "metric": "m", "at_least": 5}])
    assert met["drop"]["verdict"] == "reproduced" and met["drop"]["preconditions"] == "started"
    assert "started: m >= 5 at iteration 1: met by 8 of 8 runs" in err
    failed, err = verdicts([{"name": "high_start", "metric": "m", "iteration": 1, "at_least": 6}])
    assert all(r["verdict"] == "not testable" for r in failed.values())
    assert failed["drop"]["effect"] == met["drop"]["effect"]  # the interval is still computed
    assert "a precondition fails in 2 of 8 runs" in failed["drop"]["why"] and "high_start (5 < 6)" in failed["drop"]["why"]
    assert "met by 6 of 8 runs; not by" in err and "NOT TESTABLE" in err
    one_arm, err = verdicts([{"name": "top", "metric": "m", "iteration": "last", "at_most": 7.5,
                              "where": {"curate.regime.alpha": 0.5}}])
    assert "met by 4 of 4 runs" in err and one_arm["drop"]["verdict"] == "reproduced"
    missing, _ = verdicts([{"name": "gone", "metric": "knowledge_accuracy", "iteration": 3, "at_least": 0}])
    assert "no knowledge_accuracy at iteration 3" in missing["drop"]["why"]
    with pytest.raises(UserError, match="precondition 'x': no compared run has seed=9"):
        verdicts([{"name": "x", "metric": "m", "at_least": 0, "where": {"seed": 9}}])
    with pytest.raises(ValueError, match="at_least or at_most"):
        Precondition.model_validate({"name": "x", "metric": "m"})


# ------------------------------------------------------------------------------------ the toy sweep


@pytest.mark.slow
def test_the_committed_toy_sweep_prints_its_verdicts(tmp_path, monkeypatch, capsys):
    """The config of the docs' example, smaller: 3 seeds, 2 iterations, cells run inline (12 cells:
    about 45 s on a loaded 2-core machine, hence slow)."""
    monkeypatch.chdir(tmp_path)
    sweep = create(TOY, ["iterations=2", "sweep.executor=inline", "sweep.grid.seed=[0, 1, 2]"], name="toy")
    run_sweep(sweep.path, poll=0.1, report=False)
    capsys.readouterr()
    assert main(["compare", "runs/toy", "--metric", "fitted_var", "--metric", "holdout_loglik_mean"]) == 0
    err = capsys.readouterr().err
    assert "contrasts (3 claims; effect = A - B; Holm-stepped intervals, 95% family-wise)" in err
    for name in ("replace_shrinks_variance", "ten_percent_synthetic_no_effect", "replace_lowers_holdout_loglik"):
        assert f"  {name}: " in err
    rows = read_csv(tmp_path / "runs" / "toy" / "report" / "contrasts.csv")
    assert [r["n_pairs"] for r in rows] == ["3", "3", "3"] and all(r["iteration"] == "2" for r in rows)
    verdicts = {"reproduced", "reversed", "equivalent", "inconclusive", "not shown"}
    assert all(r["verdict"] in verdicts and r["verdict"].upper() in err for r in rows)


def test_a_claim_that_names_no_cell_is_refused_before_the_sweep_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="claim 'ten_percent_synthetic_no_effect', arm a: no cell of the sweep has "
                       "curate.regime.alpha=0.1"):
        create(TOY, ["sweep.executor=inline"], grid=["curate.regime=[{name: replace, alpha: 0.0}, {name: accumulate}, "
                                                     "{name: replace, alpha: 1.0}]"], name="typo")
    assert not (tmp_path / "runs" / "typo").exists()
    with pytest.raises(UserError, match="matches several runs of seed 0"):
        create(TOY, ["sweep.executor=inline", "contrasts.claims.0.a={curate.regime.name: replace}"], name="twice")
    with pytest.raises(UserError, match="precondition 'p': no cell of the sweep has seed=7"):
        create(TOY, ["sweep.executor=inline", "contrasts.preconditions=[{name: p, metric: fitted_var, at_least: 0, "
                     "where: {seed: 7}}]"], name="typo2")
    assert not (tmp_path / "runs" / "typo2").exists()
    assert create(TOY, ["sweep.executor=inline"], name="fine").exists()
