"""Each run records the environment its numbers depend on (environment.json)."""

import json

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
