"""The docs' examples run as written."""

from __future__ import annotations

import re

import pytest

from collapsebench.cli import main
from collapsebench.config import load_config
from collapsebench.loop import run_experiment
from conftest import REPO


def code_blocks(path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def test_the_plugin_page_example_runs(tmp_path, capfd):
    page = REPO / "docs" / "plugins.md"
    (python,) = code_blocks(page, "python")
    yaml_blocks = code_blocks(page, "yaml")
    assert len(yaml_blocks) == 1
    (tmp_path / "my_plugins.py").write_text(python)
    config_file = tmp_path / "my_experiment.yaml"
    config_file.write_text(yaml_blocks[0])

    assert main(["validate", str(config_file), "curate.regime.share=2", "--no-backend"]) == 2
    assert "curate.regime.share: Input should be less than or equal to 1" in capfd.readouterr().err

    run = run_experiment(load_config(config_file, [f"output_dir={tmp_path / 'run'}"]), quiet=True)
    rows = run.read_metrics()
    assert [r["iteration"] for r in rows] == [1, 2]
    for row in rows:
        assert row["mean_words"] > 0 and 0 < row["generate/max_words_acceptance"] <= 1
    assert rows[0]["curate/synthetic_fraction"] == 0.0  # iteration 1 trains on the real data
    real = rows[0]["curate/size"]
    assert rows[1]["curate/size"] == real + 30  # the real data plus half of the 60 samples
    assert rows[1]["curate/synthetic_fraction"] == pytest.approx(30 / (real + 30))


def test_the_metrics_page_covers_every_builtin_evaluation():
    from collapsebench.registry import evaluations

    page = (REPO / "docs" / "metrics.md").read_text()
    builtins = [name for name in evaluations.names() if evaluations.entry(name).builtin]
    assert builtins and [name for name in builtins if f"`{name}`" not in page] == []
