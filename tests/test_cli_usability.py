"""The command line at first contact: a clean --help, overrides anywhere on the line, listings and
the status table readable at 80 columns."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from collapsebench import console as console_module
from collapsebench.cli import build_parser, main, parse_args
from collapsebench.console import plain
from conftest import tiny_config, write_config

SRC = Path(__file__).resolve().parents[1] / "src"


def test_help_shows_no_hidden_verbs(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "SUPPRESS" not in out and "check-backends" not in out and "\n    task" not in out
    assert "validate" in out


@pytest.mark.parametrize("argv", [
    ["run", "c.yaml", "--yes", "iterations=3", "--from", "1.train", "seed=4"],
    ["validate", "c.yaml", "--no-backend", "iterations=3", "seed=4"],
    ["sweep", "c.yaml", "--name", "g", "iterations=3", "--dry-run", "seed=4"],
    ["plan", "c.yaml", "--gpus", "2", "iterations=3", "--json", "seed=4"],
])
def test_overrides_anywhere(argv):
    args = parse_args(build_parser(), argv)
    assert args.config == "c.yaml" and args.overrides == ["iterations=3", "seed=4"]


@pytest.mark.parametrize("argv", [["status", "r", "iterations=3"], ["validate", "c.yaml", "--bogus"],
                                  ["ls", "regimes", "x=1"]])
def test_leftovers_are_still_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(build_parser(), argv)
    assert exc.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_an_override_after_an_option_reaches_the_config(tmp_path, capfd):
    path = write_config(tmp_path, tiny_config(tmp_path))
    assert main(["validate", str(path), "--no-backend", "iterations=-1"]) == 2  # applied, hence refused
    assert "iterations" in capfd.readouterr().err
    assert main(["validate", str(path), "--no-backend", "iterations=1"]) == 0


def test_a_sweep_takes_overrides_after_its_options(tmp_path, monkeypatch):
    import json

    from conftest import REPO

    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(REPO / "configs" / "toy" / "gaussian_replace.yaml"), "--name", "g", "iterations=3",
                 "--grid", "seed=[0, 1]", "--dry-run", "data.source.n=50"]) == 0
    manifest = json.loads((tmp_path / "runs" / "g" / "sweep.json").read_text())
    assert manifest["base"]["iterations"] == 3 and manifest["base"]["data"]["source"]["n"] == 50


def test_plain_strips_rest_markup():
    assert plain("rows (``size_tokens`` or :func:`mod.draw`, :class:`~a.B`)") == "rows (size_tokens or mod.draw, B)"


def narrow_console(monkeypatch, width):
    term = Console(width=width, record=True, force_terminal=False, soft_wrap=True)
    monkeypatch.setattr(console_module, "console", term)
    for module in ("collapsebench.status", "collapsebench.listing"):
        monkeypatch.setattr(f"{module}.console", term)
    return term


@pytest.mark.parametrize("registry", ["regimes", None])
def test_ls_reads_at_80_columns(monkeypatch, registry):
    term = narrow_console(monkeypatch, 80)
    assert main(["ls", *([registry] if registry else [])]) == 0
    text = term.export_text()
    assert "…" not in text and "`" not in text
    assert "accumulate_subsample" in text and "size_tokens" in text
    assert all(len(line) <= 80 for line in text.splitlines())
    assert ("data_sources" in text) == (registry is None)  # the registry named only when listing all


def test_ls_wide_table_has_a_registry_column_only_for_all(monkeypatch):
    term = narrow_console(monkeypatch, 200)
    main(["ls", "regimes"])
    assert "registry" not in term.export_text()
    main(["ls"])
    assert "registry" in term.export_text()


@pytest.mark.parametrize("width", [80, 120])
def test_status_reads_at_80_and_120_columns(width):
    from collapsebench.status import cell, status_view

    metrics = ["holdout_perplexity", "holdout_cross_entropy", "calibration_ece_alert_level"]
    from collapsebench.journal import StepRecord

    record = StepRecord.from_json({"status": "done", "duration_s": 12.25, "stats": {"metrics": {"loss": 5.3571, "size": 1200}}})
    done = cell(record, True, False, "train")
    failed = cell(StepRecord.from_json({"status": "failed",
                                        "error": "UserError: curate.regime: replace with alpha=0.5 needs more"}),
                  False, False, "curate")
    rows = [["0 (real)", done, "", "", "", "", "", ""],
            ["1", done, done, done, done, "244.7", "5.5", "[yellow]warning[/]"],
            ["2", failed, "[dim]pending[/]", "[dim]pending[/]", "[dim]pending[/]", "", "", ""]]
    term = Console(width=width, record=True, force_terminal=False)
    term.print(status_view("tiny  (/tmp/some/run)", metrics, rows))
    text = term.export_text()
    assert "…" not in text and "`" not in text
    assert all(len(line) <= width for line in text.splitlines())
    for metric in metrics:  # every abbreviation explained
        assert metric in text
    assert "244.7" in text and "loss=5.357" in text and "warning" in text


def test_a_warning_is_printed_once(tmp_path):
    import yaml

    from collapsebench.config import load_config

    lumpy = tmp_path / "lumpy.txt"
    lumpy.write_text(" ".join(["alpha beta gamma delta"] * 30_000) + "\n")  # one document over 100 000 characters
    cfg = tiny_config(tmp_path)
    cfg["data"]["source"] = {"name": "local", "path": str(lumpy), "sample_by": "document"}
    run = tmp_path / "run"
    run.mkdir()
    config = load_config(str(write_config(tmp_path, cfg)), [])
    (run / "config.yaml").write_text(yaml.safe_dump(config.dump()))
    # a process of its own: the logging set-up of a real command, not pytest's capture of log records
    out = subprocess.run([sys.executable, "-m", "collapsebench", "phase", str(run), "0.curate"], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"})
    err = out.stderr  # the one document cannot also give a holdout: exit 2 after the warning
    assert err.count("documents from") == 1 and "warning: data.source: 1 documents from" in err
