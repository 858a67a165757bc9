"""The ``prepare:`` block: folders a run needs, built by the run itself, once, and what `validate`
says of them; and the rule that a missing relative path is a local path, never a guessed download."""

import json

import pytest
import yaml

from collapsebench.cli import main
from collapsebench.config import load_config
from collapsebench.errors import UserError
from collapsebench.prepare import MARKER, check_prepare
from collapsebench.validate import validate_config

TOY = {"seed": 0, "iterations": 1,
       "data": {"source": {"name": "gaussian", "n": 120, "dim": 1}, "holdout": 20},
       "curate": {"regime": {"name": "replace", "alpha": 1.0}},
       "train": {"trainer": {"name": "gaussian_mle"}},
       "generate": {"generator": {"name": "gaussian"}, "num_samples": 100},
       "evaluate": {"evaluations": ["toy_stats"]}}

BUILDER = '''
from pathlib import Path

def build(output: Path, config_dir: Path, text: str = "x") -> None:
    (output / "made.txt").write_text(text + " " + (config_dir / "seed.txt").read_text())
'''


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def recipe(tmp_path):
    """A config whose prepare block runs a nested toy config and calls a function beside it."""
    write(tmp_path / "base.yaml", {**TOY, "name": "base_world"})
    (tmp_path / "builder.py").write_text(BUILDER)
    (tmp_path / "seed.txt").write_text("from the config folder")
    main_cfg = {**TOY, "name": "twin", "output_dir": str(tmp_path / "runs" / "twin"),
                "prepare": [{"output": "standins/base", "run": "base.yaml"},
                            {"output": "standins/made", "call": "builder.py:build", "kwargs": {"text": "hello"}}]}
    return write(tmp_path / "twin.yaml", main_cfg)


def test_validate_lists_the_steps_and_run_builds_them_once(recipe, tmp_path, capfd):
    assert main(["validate", str(recipe), "--no-backend"]) == 0
    out = capfd.readouterr().err  # the console writes to stderr
    assert "prepare[0]: standins/base (to build)" in out and "prepare[1]: standins/made (to build)" in out
    assert not (tmp_path / "standins").exists()  # validate builds nothing

    assert main(["run", str(recipe)]) == 0
    base = tmp_path / "standins" / "base"
    assert (base / MARKER).exists() and (tmp_path / "standins" / "base.run" / "iter_001").is_dir()
    assert {p.name for p in base.iterdir()} >= {MARKER}
    assert (tmp_path / "standins" / "made" / "made.txt").read_text() == "hello from the config folder"
    stamp = (base / MARKER).stat().st_mtime_ns

    assert main(["run", str(recipe), "iterations=2"]) == 0  # extending the run: the stand-ins are kept
    assert (base / MARKER).stat().st_mtime_ns == stamp
    assert "(ready)" in "\n".join(check_prepare(load_config(recipe)))


def test_a_changed_recipe_rebuilds_its_folder(recipe, tmp_path):
    assert main(["run", str(recipe)]) == 0
    first = json.loads((tmp_path / "standins" / "made" / MARKER).read_text())["digest"]
    cfg = yaml.safe_load(recipe.read_text())
    cfg["prepare"][1]["kwargs"]["text"] = "changed"
    write(recipe, cfg)
    assert main(["run", str(recipe)]) == 0
    made = tmp_path / "standins" / "made"
    assert made.joinpath("made.txt").read_text().startswith("changed")
    assert json.loads((made / MARKER).read_text())["digest"] != first
    assert not (tmp_path / "standins" / "made.old").exists() and not (tmp_path / "standins" / "made.tmp").exists()


def test_a_folder_made_by_hand_is_kept(recipe, tmp_path):
    hand = tmp_path / "standins" / "made"
    hand.mkdir(parents=True)
    (hand / "mine.txt").write_text("mine")
    assert main(["run", str(recipe)]) == 0
    assert [p.name for p in hand.iterdir()] == ["mine.txt"]


@pytest.mark.parametrize("step, message", [
    ({"output": "x", "run": "base.yaml", "call": "builder.py:build"}, "exactly one of run"),
    ({"output": "x", "run": "missing.yaml"}, "prepare[0].run: file not found"),
    ({"output": "x", "run": "base.yaml", "take": "../../etc"}, "prepare[0].take"),
    ({"output": "x", "call": "builder.py:nothing"}, "has no attribute 'nothing'"),
    ({"output": "x", "call": "builder.py"}, "prepare[0].call"),
    ({"output": "x", "run": "base.yaml", "kwargs": {"a": 1}}, "kwargs go with call"),
])
def test_bad_steps_are_one_clear_error(recipe, tmp_path, capfd, step, message):
    cfg = yaml.safe_load(recipe.read_text())
    cfg["prepare"] = [step]
    write(recipe, cfg)
    assert main(["validate", str(recipe), "--no-backend"]) == 2
    assert message in capfd.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "runs").exists()


def test_a_missing_relative_path_is_local_not_a_download(tmp_path):
    cfg = {**TOY, "name": "lm"}
    (tmp_path / "standins").mkdir()
    for base, expected in [("./standins/base", "not found"), ("standins/base", "not found"),
                           ("a/b/c", "not found"), ("model.safetensors.json", "not found")]:
        config = load_config(write(tmp_path / "c.yaml", {**cfg, "model": {"base": base}}))
        with pytest.raises(UserError, match=expected):
            validate_config(config)
    prepared = {**cfg, "model": {"base": "standins/base"}, "prepare": [{"output": "standins", "run": "c.yaml"}]}
    assert validate_config(load_config(write(tmp_path / "p.yaml", prepared))).downloads == []
