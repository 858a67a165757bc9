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


def test_the_figures_are_split_between_the_process_and_a_copy_and_a_failed_copy_leaves_them_here():
    import os

    from collapsebench.analysis.report import draw_figures, figure

    parent = os.getpid()

    def drawn(name):
        return lambda: f"{name} by {os.getpid()}"

    figures = [figure("metrics", str(i), drawn(f"figure {i}")) for i in range(4)]
    draw_figures(figures, split=True)
    assert [f["uri"].split(" by ")[0] for f in figures] == [f"figure {i}" for i in range(4)]  # in order
    drawers = {int(f["uri"].split(" by ")[1]) for f in figures}
    assert parent in drawers and len(drawers) == 2  # half here, half by the copy

    def fails_in_the_copy(name):
        def draw():
            if os.getpid() != parent:
                raise RuntimeError("the copy fails")
            return f"{name} here"
        return draw

    figures = [figure("metrics", str(i), fails_in_the_copy(f"figure {i}")) for i in range(3)]
    draw_figures(figures, split=True)
    assert [f["uri"] for f in figures] == [f"figure {i} here" for i in range(3)]


def test_the_command_forks_the_report_process_first_and_stops_it_for_a_bad_config(tmp_path):
    """``python -m collapsebench run`` (collapsebench.launch) forks the report process before the
    command line is imported: a toy run gets its report, and a refused config leaves no process
    behind (the command returns, status 2)."""
    import subprocess

    config = str(REPO / "configs" / "toy" / "gaussian_accumulate.yaml")
    ok = subprocess.run([sys.executable, "-m", "collapsebench", "run", config, "iterations=2",
                         f"output_dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert page(RunLayout(tmp_path / "run")).count("IMAGE") >= 4
    bad = subprocess.run([sys.executable, "-m", "collapsebench", "run", config, "iterations=-1",
                          f"output_dir={tmp_path / 'bad'}"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "iterations" in bad.stderr + bad.stdout
