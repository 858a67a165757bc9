"""What the terminal shows of a run (collapsebench.summary), on small real toy runs: the headline
metrics with their change since iteration 1, progress and ETA from the journal, the final summary
as text and as ``--json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from collapsebench.config import load_config
from collapsebench.layout import RunLayout
from collapsebench.loop import run_experiment
from collapsebench.summary import (
    ProgressEstimate,
    duration,
    final_summary,
    iteration_line,
    iteration_seconds,
    render_summary,
)

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "configs" / "toy"


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> RunLayout:
    out = tmp_path_factory.mktemp("summary") / "run"
    config = load_config(TOY / "gaussian_replace.yaml", ["iterations=3", f"output_dir={out}"])
    return RunLayout(run_experiment(config, quiet=True).path)


def test_iteration_line_shows_headline_metrics_with_change_since_iteration_1(toy_run: RunLayout) -> None:
    rows, config = toy_run.read_metrics(), toy_run.load_config()
    first, third = rows[0], rows[2]
    line = iteration_line(rows, config, 3)
    change = (third["fitted_var"] - first["fitted_var"]) / abs(first["fitted_var"])
    assert f"fitted_var {third['fitted_var']:.4g} ({change:+.1%} vs it.1)" in line
    assert f"holdout_loglik_mean {third['holdout_loglik_mean']:.4g} (" in line
    assert "curate/" not in line and "sample_mean" not in line  # the declared headline only
    assert "vs it." not in iteration_line(rows, config, 1)  # nothing to compare the first with


def test_progress_estimate_from_the_journal(toy_run: RunLayout) -> None:
    state = toy_run.read_state()
    seconds = iteration_seconds(state)
    assert sorted(seconds) == [1, 2, 3]  # iteration 0 (the real data's preparation) is paid once
    assert seconds[2] == pytest.approx(sum(state.step(f"2.{p}").duration_s
                                           for p in ("curate", "train", "generate", "evaluate")))
    state.steps = {k: v for k, v in state.steps.items() if not k.startswith("3.")}
    estimate = ProgressEstimate.from_state(state, 5)
    assert estimate.done == 2 and estimate.eta_s == pytest.approx(3 * (seconds[1] + seconds[2]) / 2)
    assert ProgressEstimate(5, 3, 50.0).line() == "iteration 3/5, ETA 1 min 40 s"
    assert ProgressEstimate(5, 0, None).line() == "iteration 0/5, ETA unknown"
    assert ProgressEstimate(5, 5, 50.0).line() == "iteration 5/5, done"
    assert duration(7325) == "2 h 02 min"


def test_final_summary_and_its_plain_text(toy_run: RunLayout) -> None:
    summary = final_summary(toy_run.path)
    rows = toy_run.read_metrics()
    by_metric = {m["metric"]: m for m in summary["metrics"]}
    assert list(by_metric) == ["holdout_loglik_mean", "fitted_var"]
    fv = by_metric["fitted_var"]
    assert (fv["first"], fv["last"], fv["last_iteration"]) == (rows[0]["fitted_var"], rows[-1]["fitted_var"], 3)
    assert fv["change"] == pytest.approx((fv["last"] - fv["first"]) / abs(fv["first"]))
    assert summary["report"] == str(toy_run.report_dir / "report.html") and Path(summary["report"]).exists()
    assert summary["wall_s"] >= summary["compute_s"] * 0.9 > 0 and summary["time_to_failure"] == []
    text = render_summary(summary, rich=False)
    assert isinstance(text, str) and "\x1b" not in text
    assert f"{fv['change']:+.1%}" in text and f"report: {summary['report']}" in text
    assert "iterations evaluated: 3/3" in text


def test_time_to_failure_in_the_summary(tmp_path: Path) -> None:
    """A rule that fails at once (a fitted variance is always above 0) stops the run at iteration 1."""
    config = load_config(TOY / "gaussian_replace.yaml",
                         ["iterations=3", f"output_dir={tmp_path / 'run'}",
                          "stop_when=[{metric: fitted_var, above: 0.0}]"])
    summary = final_summary(run_experiment(config, quiet=True).path)
    assert summary["stopped_at"] == 1 and summary["evaluated"] == 1
    assert summary["time_to_failure"] == [{"rule": "fitted_var > 0", "iteration": 1, "evaluated_to": 1, "stop": True}]
    assert "fitted_var > 0: failed at iteration 1 (run stopped)" in render_summary(summary, rich=False)


def test_cli_json_prints_the_summary_on_stdout(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "collapsebench", "run", str(TOY / "gaussian_accumulate.yaml"),
                           "iterations=3", f"output_dir={out}", "--json"],
                          capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    summary = json.loads(proc.stdout)  # stdout holds the JSON alone; progress and the table go to stderr
    assert summary == final_summary(out)
    assert "metric" in proc.stderr and f"report: {out / 'report' / 'report.html'}" in proc.stderr


def test_without_a_declared_headline_the_first_evaluation_metrics_are_shown(toy_run: RunLayout) -> None:
    from collapsebench.summary import iteration_line

    config = toy_run.load_config().model_copy(deep=True)
    config.evaluate.evaluations = []  # nothing declares a headline
    rows = [{"iteration": 1, "curate/size": 10.0, "b_metric": 2.0, "a_metric": 1.0, "lm_eval/t/acc": 0.5,
             "x_alert_level": 1.0}]
    line = iteration_line(rows, config, 1)
    assert line == "a_metric 1  b_metric 2  lm_eval/t/acc 0.5"  # no phase statistics, no alert levels
