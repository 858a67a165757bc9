"""Each run records the environment its numbers depend on (environment.json)."""

import json
from pathlib import Path

import pytest

from collapsebench.cli import main
from collapsebench.environment import collect, record, same
from conftest import REPO


def test_a_run_records_its_environment(tmp_path):
    out = tmp_path / "run"
    assert main(["run", str(REPO / "configs" / "toy" / "gaussian_replace.yaml"), "iterations=2",
                 f"output_dir={out}"]) == 0
    env = json.loads((out / "environment.json").read_text())
    assert env["cpu"] and env["python"].count(".") == 2
    assert env["packages"]["numpy"] and "previous" not in env


def test_a_resume_elsewhere_keeps_the_earlier_environment(tmp_path):
    first = record(tmp_path)
    assert same(first, collect())
    record(tmp_path)
    assert "previous" not in json.loads((tmp_path / "environment.json").read_text())  # the same: nothing kept
    other = {**first, "cpu": "another CPU"}
    (tmp_path / "environment.json").write_text(json.dumps(other))
    assert not same(other, first)
    assert record(tmp_path)["previous"] == [other]


SEEN_BY_THE_FIRST_STEP: list[bool] = []


def fail(run_dir, *args, **kwargs):
    SEEN_BY_THE_FIRST_STEP.append((Path(run_dir) / "environment.json").exists())
    raise RuntimeError("the first step fails")


def test_the_environment_is_recorded_before_the_first_step(tmp_path, monkeypatch):
    """The environment is written before the first step, so a run that fails (or is killed) in it
    still says what it ran on."""
    monkeypatch.setattr("collapsebench.loop.execute", fail)
    monkeypatch.setenv("COLLAPSEBENCH_BATCH", "0")
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="the first step fails"):
        main(["run", str(REPO / "configs" / "toy" / "gaussian_replace.yaml"), "iterations=2", f"output_dir={out}"])
    assert SEEN_BY_THE_FIRST_STEP == [True]  # written before the first step started
    assert not (out / "iter_001" / "curate").exists()  # no step was committed
    assert json.loads((out / "environment.json").read_text())["packages"]["numpy"]
