"""Failure rules: the time to failure of a run, and stop_when ending a run early."""

import json

import pytest

from collapsebench.config import FailureRule, config_from_dict, load_config
from collapsebench.errors import UserError
from collapsebench.failure import describe, first_crossing, journal_entry, time_to_failure
from collapsebench.layout import RunLayout
from collapsebench.loop import run_experiment
from conftest import REPO

ROWS = [{"iteration": 1, "ppl": 10.0, "kr": 0.80, "real_d2": 0.5, "d2": 0.48},
        {"iteration": 2, "ppl": 13.0, "kr": 0.78, "real_d2": 0.5, "d2": 0.41},
        {"iteration": 3, "ppl": None, "kr": 0.74, "real_d2": 0.5, "d2": 0.39},  # a diverged value: skipped
        {"iteration": 4, "ppl": 15.5, "kr": 0.70, "real_d2": 0.5, "d2": 0.38}]


def rule(**kw):
    return FailureRule.model_validate(kw)


@pytest.mark.parametrize("kw, iteration, value, ratio", [
    ({"metric": "kr", "below": 0.75}, 3, 0.74, None),                               # absolute
    ({"metric": "ppl", "above": 1.5, "relative_to": "first"}, 4, 15.5, 1.55),       # 13/10 = 1.3; 15.5/10 = 1.55
    ({"metric": "ppl", "above": 1.3, "relative_to": "first"}, 4, 15.5, 1.55),       # 1.3 is not above 1.3
    ({"metric": "d2", "below": 0.8, "relative_to": "metric", "reference": "real_d2"}, 3, 0.39, 0.78),
    ({"metric": "ppl", "above": 20.0}, None, None, None),                            # never: censored
])
def test_first_crossing_on_fixed_rows(kw, iteration, value, ratio):
    c = first_crossing(rule(**kw), ROWS)
    assert c.iteration == iteration and c.value == value
    assert c.ratio == (pytest.approx(ratio) if ratio is not None else None)
    if iteration is None:
        assert c.evaluated_to == 4  # the last iteration with a value: the censoring point


def test_relative_to_another_run_pairs_iterations():
    clean = [{"iteration": 1, "ppl": 10.0}, {"iteration": 2, "ppl": 10.0}, {"iteration": 4, "ppl": 12.0}]
    c = first_crossing(rule(metric="ppl", above=1.25, relative_to="run", reference="../clean"), ROWS, clean)
    # 10/10, 13/10 = 1.3 > 1.25 at iteration 2
    assert (c.iteration, c.ratio) == (2, pytest.approx(1.3))
    c = first_crossing(rule(metric="ppl", above=1.31, relative_to="run", reference="../clean"), ROWS, clean)
    assert c.iteration is None and c.evaluated_to == 4  # 15.5/12 = 1.29; iteration 3 has no value anywhere


def test_rule_checks_and_words():
    with pytest.raises(ValueError, match="exactly one"):
        rule(metric="x", above=1, below=2)
    with pytest.raises(ValueError, match="reference"):
        rule(metric="x", above=1, relative_to="run")
    assert describe(rule(metric="ppl", above=1.5, relative_to="first")) == "ppl > 1.5 x iteration 1"
    assert describe(rule(metric="kr", below=0.75, name="KR split 0")) == "KR split 0"
    with pytest.raises(UserError, match="positive reference"):
        first_crossing(rule(metric="ll", below=1.1, relative_to="first"), [{"iteration": 1, "ll": -1.4}])


def test_the_earliest_stopping_rule_stops():
    config = config_from_dict({"name": "x", "iterations": 4, "stop_when": [
        {"metric": "ppl", "above": 1.5, "relative_to": "first"}, {"metric": "kr", "below": 0.75},
        {"metric": "d2", "below": 0.45, "stop": False}]})
    entry = journal_entry(config, [first_crossing(r, ROWS) for r in config.stop_when])
    assert entry.stopped_at == 3 and entry.stopped_by == "kr < 0.75"
    assert [c.iteration for c in entry.time_to_failure] == [4, 3, 2]


def toy(tmp_path, *overrides):
    return load_config(REPO / "configs" / "toy" / "gaussian_replace.yaml",
                       ["iterations=6", f"output_dir={tmp_path / 'run'}", *overrides])


def test_stop_when_ends_the_run_and_a_raised_threshold_continues_it(tmp_path, capsys):
    # the Gaussian's fitted variance drifts; stop once it moves 5% from iteration 1, in either direction
    free = run_experiment(toy(tmp_path / "free"), quiet=True)
    rows = free.read_metrics()
    ratios = [r["fitted_var"] / rows[0]["fitted_var"] for r in rows]
    expected = next(k for k, q in enumerate(ratios, 1) if abs(q - 1) > 0.05)
    above = ratios[expected - 1] > 1
    threshold = ("above", 1.05) if above else ("below", 0.95)
    rule_text = f"stop_when=[{{metric: fitted_var, {threshold[0]}: {threshold[1]}, relative_to: first}}]"
    run = run_experiment(toy(tmp_path, rule_text), quiet=True)
    state = json.loads(run.state_file.read_text())
    assert state["failure"]["stopped_at"] == expected
    assert [r["iteration"] for r in run.read_metrics()] == list(range(1, expected + 1))
    assert not run.phase_dir(expected + 1, "curate").exists()
    assert [c.iteration for c in time_to_failure(RunLayout(run.path), toy(tmp_path, rule_text))] == [expected]
    # the same metrics as the run without the rule, up to the stop
    assert run.read_metrics() == rows[:expected]
    from collapsebench.cli import main

    assert main(["status", str(run.path)]) == 0
    assert f"failed at iteration {expected}: fitted_var" in capsys.readouterr().err
    # no threshold crossed any more: the run continues to the end, and matches the free run
    run = run_experiment(toy(tmp_path, rule_text.replace(str(threshold[1]), "1.0e9" if above else "1.0e-9")), quiet=True)
    assert run.read_metrics() == rows
    assert json.loads(run.state_file.read_text())["failure"]["stopped_at"] is None
    # removing the rule removes the record
    run = run_experiment(toy(tmp_path), quiet=True)
    assert "failure" not in json.loads(run.state_file.read_text())
