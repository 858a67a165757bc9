"""The report drawn by a forked process (what ``run`` does for a vector world) is the report the
run's own process draws, and a report process that is gone leaves the report to the run."""

import re
import sys

import pytest

from collapsebench.analysis.report import write_report
from collapsebench.analysis.report_process import report_writer
from collapsebench.config import load_config
from collapsebench.layout import RunLayout
from collapsebench.loop import run_experiment
from conftest import REPO

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the report process is forked (Linux)")


def toy_run(path):
    config = load_config(REPO / "configs" / "toy" / "gaussian_accumulate.yaml", ["iterations=3", f"output_dir={path}"])
    return RunLayout(run_experiment(config, quiet=True).path)


def page(run):
    """The report page without its images (drawn again, the same) and its run's wall times."""
    text = (run.report_dir / "report.html").read_text()
    return re.sub(r"data:image/[^\"']+", "IMAGE", text)


def test_the_forked_report_is_the_report(tmp_path):
    run = toy_run(tmp_path / "run")
    here = page(run)
    cards = {p: p.read_text() for p in run.path.glob("iter_*/*/*/README.md")}
    assert len(cards) == 9  # D(k), M(k), S(k) of 3 iterations, listed by the page
    (run.report_dir / "report.html").unlink()
    for card in cards:  # written again by the run's process while the forked one draws the page
        card.unlink()
    with report_writer(forked=True) as write:
        out = write(run)
    assert out == run.report_dir / "report.html"
    assert page(run) == here
    assert 'data-panels=' in here and all(f"{c.parent.name}/README.md" in here for c in cards)
    assert {p: p.read_text() for p in run.path.glob("iter_*/*/*/README.md")} == cards


def test_a_report_process_that_is_gone_leaves_the_report_to_the_run(tmp_path):
    run = toy_run(tmp_path / "run")
    (run.report_dir / "report.html").unlink()
    with report_writer(forked=True) as write:
        process = write.__self__.process
        process.kill()
        process.join()
        assert write(run) == run.report_dir / "report.html"
    assert (run.report_dir / "report.html").exists()


def test_without_fork_it_is_the_report_function():
    with report_writer(forked=False) as write:
        assert write is write_report


def test_the_process_forked_before_the_config_is_read_is_stopped_when_unused(tmp_path, monkeypatch):
    import multiprocessing

    from collapsebench.cli import main

    config = str(REPO / "configs" / "toy" / "gaussian_accumulate.yaml")
    assert main(["run", config, "iterations=-1", f"output_dir={tmp_path / 'bad'}"]) == 2  # a bad config
    assert not multiprocessing.active_children()
    monkeypatch.setenv("COLLAPSEBENCH_BATCH", "0")  # the general driver: the report is drawn here
    assert main(["run", config, "iterations=2", f"output_dir={tmp_path / 'run'}"]) == 0
    assert not multiprocessing.active_children()
    assert 'data-panels=' in page(RunLayout(tmp_path / "run"))
