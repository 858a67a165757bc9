"""``compare``: statistics over seeds against hand-computed values, and the data the figures draw.

The runs are written by hand (config, metrics rows, per-document perplexities), so every number
below is known in advance."""

import csv
import json
import math

import numpy as np
import pytest
import yaml

from collapsebench.analysis import figures as F
from collapsebench.analysis.compare import analyse, compare, draw, histogram_data
from collapsebench.cli import main
from collapsebench.errors import UserError
from conftest import write_evaluated_run

# metric m at iterations 1 and 2, per cell and seed (A is the 0%-synthetic reference)
M = {"A": {0: [1.0, 5.0], 1: [2.0, 5.0], 2: [3.0, 5.0]},
     "B": {0: [2.0, 6.0], 1: [4.0, 6.0], 2: [6.0, 7.0]},   # B - A at iteration 1: [1, 2, 3]
     "C": {0: [0.0, 5.0], 1: [0.0, 5.0], 2: [-1.0, 5.0]}}  # C - A at iteration 1: [-1, -2, -4]
ALPHA = {"A": 0.0, "B": 0.5, "C": 1.0}


def write_run(path, name, seed, alpha, rows, stop_when=()):
    return write_evaluated_run(path, {"name": name, "seed": seed, "iterations": len(rows),
                                      "curate": {"regime": {"name": "replace", "alpha": alpha}},
                                      "stop_when": list(stop_when)}, rows)


def write_sweep(root, cells):
    """A sweep directory by hand: cells = [(label, seed, dir, baseline_of)]."""
    root.mkdir(parents=True, exist_ok=True)
    manifest = {"version": 1, "name": root.name, "base": {"name": "x", "iterations": 2}, "spec": {}, "axes": ["alpha", "seed"],
                "cells": [{"id": d, "dir": d, "values": {}, "label": label, "seed": seed, "iterations": 2,
                           "baseline_of": of} for label, seed, d, of in cells],
                "notes": [], "history": []}
    (root / "sweep.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture
def sweep(tmp_path):
    cells = []
    for cell, by_seed in M.items():
        for seed, values in by_seed.items():
            rows = [{"iteration": k + 1, "m": v, "curate/synthetic_fraction": 0.0 if k == 0 else ALPHA[cell]}
                    for k, v in enumerate(values)]
            write_run(tmp_path / "s" / f"{cell}{seed}", f"{cell}{seed}", seed, ALPHA[cell], rows)
            cells.append((cell, seed, f"{cell}{seed}", None))
    return write_sweep(tmp_path / "s", cells)


def test_statistics_match_hand_computed_values(sweep, tmp_path):
    comparison, _ = analyse([sweep])
    assert comparison.reference == "A"  # trained on real data only at every iteration
    summary = {(r["cell"], r["iteration"]): r for r in comparison.summary if r["metric"] == "m"}
    assert summary[("A", 1)]["mean"] == 2.0 and summary[("A", 1)]["std"] == 1.0 and summary[("A", 1)]["n"] == 3
    assert summary[("B", 1)]["mean"] == 4.0 and summary[("B", 1)]["std"] == 2.0
    assert summary[("B", 2)]["mean"] == pytest.approx(19 / 3)
    tests = {(r["cell_b"], r["iteration"]): r for r in comparison.tests}
    b, c = tests[("B", 1)], tests[("C", 1)]
    # B - A = [1, 2, 3]: t = 2 / (1 / sqrt 3); two-sided p with 2 df: 1 - t / sqrt(2 + t^2)
    assert b["mean_diff"] == 2.0 and b["t"] == pytest.approx(2 * math.sqrt(3))
    assert b["p_t"] == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14))
    assert b["cohens_d"] == pytest.approx(2.0)
    assert b["w"] == 0.0 and b["p_wilcoxon"] == pytest.approx(0.25)  # all 3 signs positive: 2 / 2**3
    # C - A = [-1, -2, -4]: t = -sqrt 7; p = 1 - sqrt 7 / 3
    assert c["t"] == pytest.approx(-math.sqrt(7)) and c["p_t"] == pytest.approx(1 - math.sqrt(7) / 3)
    # Holm over the 2 comparisons of m at iteration 1: min(1, 2 p_min), then max(that, p_max)
    p_b, p_c = 1 - 2 * math.sqrt(3) / math.sqrt(14), 1 - math.sqrt(7) / 3
    assert b["p_t_adj"] == pytest.approx(2 * p_b) and c["p_t_adj"] == pytest.approx(max(2 * p_b, p_c))
    assert b["correction"] == "holm" and b["family_size"] == 2
    bonf, _ = analyse([sweep], correction="bonferroni")
    c_bonf = next(r for r in bonf.tests if r["cell_b"] == "C" and r["iteration"] == 1)
    assert c_bonf["p_t_adj"] == pytest.approx(2 * p_c)


def test_stats_csv_holds_summaries_and_tests_with_the_correction(sweep, tmp_path):
    out = compare([sweep], out=tmp_path / "out", quiet=True)
    with open(tmp_path / "out" / "stats.csv") as fh:
        rows = list(csv.DictReader(fh))
    kinds = [r["kind"] for r in rows]
    assert kinds.count("summary") == 3 * 2 and kinds.count("comparison") == 2 * 2
    test = next(r for r in rows if r["kind"] == "comparison" and r["cell_b"] == "B" and r["iteration"] == "1")
    assert test["correction"] == "holm" and float(test["p_t_adj"]) == pytest.approx(2 * (1 - 2 * math.sqrt(3) / math.sqrt(14)))
    html = out.read_text()
    assert "holm" in html and "Holm" in html and html.count("<img") == len(list((tmp_path / "out" / "figures").glob("*.png")))
    for png in (tmp_path / "out" / "figures").glob("*.png"):
        assert png.with_suffix(".svg").exists()


def test_line_figure_draws_the_means_and_the_bands(sweep):
    comparison, rows = analyse([sweep])
    series = F.line_series(comparison.summary, "m", comparison.cells)
    assert [s.label for s in series] == ["A", "B", "C"]
    assert series[0].mean == [2.0, 5.0] and series[1].mean == [4.0, pytest.approx(19 / 3)]
    assert series[0].n == [3, 3]
    for s in series:  # the band is the bootstrap interval of the summary, around the mean, within the values
        assert all(lo <= m <= hi for lo, m, hi in zip(s.low, s.mean, s.high))
    assert series[0].low[1] == series[0].high[1] == 5.0  # all seeds equal: no spread
    fig = F.line_figure(series, "m")
    ax = fig.axes[0]
    assert [list(line.get_ydata()) for line in ax.lines] == [s.mean for s in series]
    assert [line.get_label() for line in ax.lines] == ["A", "B", "C"]
    band = ax.collections[0].get_paths()[0].vertices  # fill_between's polygon: the band of A
    assert band[:, 1].min() == pytest.approx(min(series[0].low)) and band[:, 1].max() == pytest.approx(max(series[0].high))
    assert ax.get_xlabel() == "iteration"


def test_clean_baselines_are_dashed_in_their_cells_colour(tmp_path):
    cells = []
    for label, of, values in (("replace alpha=0.5", None, [1.0, 2.0]),
                              ("replace alpha=0.5 [clean]", "replace alpha=0.5", [1.0, 1.5])):
        for seed in (0, 1):
            d = f"{'clean' if of else 'mix'}{seed}"
            write_run(tmp_path / "s" / d, d, seed, 0.5, [{"iteration": k + 1, "m": v + seed} for k, v in enumerate(values)])
            cells.append((label, seed, d, of))
    comparison, _ = analyse([write_sweep(tmp_path / "s", cells)])
    mix, clean = F.line_series(comparison.summary, "m", comparison.cells)
    assert clean.dashed and not mix.dashed and clean.color == mix.color
    assert [line.get_linestyle() for line in F.line_figure([mix, clean], "m").axes[0].lines] == ["-", "--"]
    # each cell is compared with its clean baseline (b - a = cell - baseline), paired by seed: [0.5, 0.5]
    test = next(r for r in comparison.tests if r["iteration"] == 2)
    assert (test["cell_a"], test["cell_b"], test["mean_diff"]) == ("replace alpha=0.5 [clean]", "replace alpha=0.5", 0.5)


def test_histograms_of_generations_with_the_real_data(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    run = write_run(tmp_path / "r", "r", 0, 1.0, [{"iteration": 1, "m": 1.0}, {"iteration": 2, "m": 2.0}])
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["evaluate"]["evaluations"] = ["perplexity", {"name": "reference_perplexity", "reference": 1}]
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    logs = {("per_document", 1): [0.0, 0.0, 1.0, 1.0], ("ref_perplexity", 1): [1.0, 1.0, 1.0, 2.0],
            ("ref_perplexity", 2): [2.0, 2.0, 2.0, float("nan")]}
    for (name, k), values in logs.items():
        pq.write_table(pa.table({"log_ppl": values}), run / f"iter_{k:03d}" / "evaluate" / f"{name}.parquet")
    from collapsebench.analysis.compare import gather

    members, _ = gather([run])
    panels, title, _ = histogram_data(members)
    edges, hists = panels["r"]
    assert "reference model" in title and edges[0] == 0.0 and edges[-1] == 2.0 and len(edges) == 41
    by_label = {h.label: h for h in hists}
    real = by_label["real data (held out, under M(1))"]
    assert real.reference and real.n == 4 and real.fractions[0] == 0.5 and real.fractions[20] == 0.5
    g1, g2 = by_label["generation 1"], by_label["generation 2"]
    assert (g1.fractions[20], g1.fractions[39]) == (0.75, 0.25)
    assert g2.n == 3 and g2.fractions[39] == 1.0 and sum(g2.fractions) == 1.0  # the NaN is not counted
    fig = F.histogram_figure(panels, title=title, xlabel="perplexity")
    assert fig.axes[0].get_xscale() == "log"
    # without samples scored by a reference model: the held-out data under each generation's model
    for k in (1, 2):
        (run / f"iter_{k:03d}" / "evaluate" / "ref_perplexity.parquet").unlink()
    pq.write_table(pa.table({"log_ppl": [2.0, 2.0]}), run / "iter_002" / "evaluate" / "per_document.parquet")
    panels, title, _ = histogram_data(members)
    assert title == "held-out real data under each generation's model"
    assert [(h.label, h.n, h.reference) for h in panels["r"][1]] == [("generation 1", 4, False), ("generation 2", 2, False)]


def test_time_to_failure_and_ece_markers(tmp_path):
    rule = [{"metric": "m", "above": 1.5, "relative_to": "first"}]
    cells = []
    for seed, values in enumerate(([1.0, 1.2, 2.0], [1.0, 1.6, 1.7], [1.0, 1.1, 1.2])):
        rows = [{"iteration": k + 1, "m": v, "cal_ece": 0.1 * v, "cal_ece_alert_level": float(k if seed == 1 else 0)}
                for k, v in enumerate(values)]
        write_run(tmp_path / "s" / f"c{seed}", f"c{seed}", seed, 0.5, rows, rule)
        cells.append(("cell", seed, f"c{seed}", None))
    sweep = write_sweep(tmp_path / "s", cells)
    comparison, rows = analyse([sweep])
    from collapsebench.analysis.compare import alert_levels, failure_points

    points = failure_points(comparison.members)["m > 1.5 x iteration 1"]
    assert [(p.seed, p.iteration, p.evaluated_to) for p in points] == [(0, 3, 3), (1, 2, 2), (2, None, 3)]
    fig = F.failure_figure(points, ["cell"], rule="m > 1.5 x iteration 1")
    failed, censored = fig.axes[0].collections[:2]
    assert sorted(failed.get_offsets()[:, 0]) == [2, 3] and list(censored.get_offsets()[:, 0]) == [3]
    alerts = alert_levels(comparison.members, rows, "cal_ece")
    assert alerts == {"cell": {1: 0, 2: 1, 3: 2}}  # the highest level over the seeds
    ece = F.ece_figure(F.line_series(comparison.summary, "cal_ece", comparison.cells), alerts, "cal_ece")
    warning, critical = ece.axes[0].collections[-2:]
    mean_ece = {2: np.mean([0.12, 0.16, 0.11]), 3: np.mean([0.2, 0.17, 0.12])}
    assert list(warning.get_offsets()[0]) == pytest.approx([2, mean_ece[2]])
    assert list(critical.get_offsets()[0]) == pytest.approx([3, mean_ece[3]])


def test_a_single_seed_gives_a_note_not_a_nan_table(tmp_path):
    a = write_run(tmp_path / "a", "alone", 0, 0.0, [{"iteration": 1, "m": 1.0, "curate/synthetic_fraction": 0.0}])
    b = write_run(tmp_path / "b", "mixed", 0, 0.5, [{"iteration": 1, "m": 2.0, "curate/synthetic_fraction": 0.0}])
    comparison, rows = analyse([a, b])
    assert any("single seed" in n for n in comparison.notes)
    assert all(r["note"] == "1 seed: no spread" for r in comparison.summary)
    assert comparison.tests[0]["note"].startswith("1 paired seed")
    made = draw(comparison, rows, tmp_path / "figures")
    assert [section for section, _, _ in made] == ["metrics"]


def test_standalone_runs_with_different_seeds_are_one_cell(tmp_path):
    runs = [write_run(tmp_path / f"r{s}", "same", s, 0.5, [{"iteration": 1, "m": float(s)}]) for s in (0, 1)]
    comparison, _ = analyse(runs)
    assert [c.label for c in comparison.cells] == ["same"]
    assert comparison.summary[0]["n"] == 2 and comparison.summary[0]["mean"] == 0.5


def test_compare_from_the_command_line_and_its_errors(sweep, tmp_path, capsys):
    assert main(["compare", str(sweep), "--metric", "m", "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "figures" / "metric_m.svg").exists()
    assert main(["compare", str(sweep), "--metric", "nope"]) == 2
    assert "no run has nope" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "nothing")]) == 2
    with pytest.raises(UserError, match="not a cell"):
        analyse([sweep], reference="Z")


def test_a_runs_own_standard_errors_and_constants_are_not_compared_by_default(tmp_path):
    runs = []
    for seed in (0, 1):
        rows = [{"iteration": k, "m": float(k + seed), "m_se": 0.1, "holdout_tokens": 500}
                for k in (1, 2)]
        runs.append(write_run(tmp_path / f"r{seed}", f"r{seed}", seed, 0.0, rows))
    comparison, _ = analyse(runs)
    assert comparison.metrics == ["m"]  # m_se is m's band, holdout_tokens a constant
    chosen, _ = analyse(runs, metrics=["m_se"])  # still there when asked for by name
    assert chosen.metrics == ["m_se"]
