"""The command line as a user runs it: exit codes, messages, status, and no torch where none is needed.

The verbs run in-process through ``collapsebench.cli.main`` (output captured); only the checks that
need a fresh interpreter (what a command imports, the installed entry point) start a process."""

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest

from collapsebench.cli import main
from conftest import tiny_config, write_config


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capfd):
    def run(*args):
        capfd.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help, usage errors
            code = exc.code if isinstance(exc.code, int) else 2
        out = capfd.readouterr()
        return Result(code, out.out, out.err)

    return run


def test_help_lists_the_verbs(cli):
    out = cli("--help")
    assert out.returncode == 0
    for verb in ("run", "resume", "sweep", "status", "compare", "validate", "ls", "phase", "report", "schema",
                 "knowledge-items"):
        assert verb in out.stdout


def test_the_installed_command_runs():
    out = subprocess.run([sys.executable, "-m", "collapsebench", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("collapsebench ")


@pytest.mark.parametrize("argv", [["--help"], ["ls"], ["validate", "{config}", "--no-backend"], ["status", "{run}"],
                                  ["schema"]])
def test_light_commands_import_no_torch(tmp_path, argv):
    cfg = tiny_config(tmp_path)
    path = write_config(tmp_path, cfg)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(path.read_text())
    argv = [a.format(config=path, run=run) for a in argv]
    code = ("import sys\nfrom collapsebench.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY ['datasets']" in out.stdout or "HEAVY []" in out.stdout, out.stdout + out.stderr
    assert "torch" not in out.stdout.split("HEAVY")[1]


def test_user_errors_exit_2_without_traceback(tmp_path, cli):
    cfg = tiny_config(tmp_path)
    cfg["curate"]["regime"]["name"] = "replac"
    path = write_config(tmp_path, cfg)
    out = cli("validate", str(path), "--no-backend")
    assert out.returncode == 2
    assert "unknown curation regime 'replac'" in out.stderr and "did you mean 'replace'" in out.stderr
    assert "Traceback" not in out.stderr

    out = cli("run", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2 and "config file not found" in out.stderr and "Traceback" not in out.stderr

    cfg = tiny_config(tmp_path)
    cfg["data"]["source"]["path"] = str(tmp_path / "nowhere.txt")
    out = cli("run", str(write_config(tmp_path, cfg, "b.yaml")))
    assert out.returncode == 2 and "nowhere.txt" in out.stderr and "Traceback" not in out.stderr

    cfg = tiny_config(tmp_path, plugins=["no_such_plugin_module"])
    out = cli("validate", str(write_config(tmp_path, cfg, "c.yaml")), "--no-backend")
    assert out.returncode == 2 and "plugins: module 'no_such_plugin_module' not found" in out.stderr


def test_validate_builds_backend_arguments(tmp_path, cli):
    cfg = tiny_config(tmp_path)
    cfg["train"]["trainer"]["args"]["lr_scheduler_type"] = "no_such_schedule"
    out = cli("validate", str(write_config(tmp_path, cfg)))
    assert out.returncode == 2 and "train.trainer.args" in out.stderr
    cfg = tiny_config(tmp_path)
    cfg["generate"]["generator"]["sampling"] = {"tempreature": 0.7}
    out = cli("validate", str(write_config(tmp_path, cfg, "t.yaml")))
    assert out.returncode == 2 and "generate.generator.sampling" in out.stderr and "'temperature'" in out.stderr
    cfg["generate"]["generator"]["sampling"] = {"max_new_tokens": -5}
    out = cli("validate", str(write_config(tmp_path, cfg, "t.yaml")))
    assert out.returncode == 2 and "max_new_tokens" in out.stderr
    cfg = tiny_config(tmp_path)
    cfg["train"]["trainer"]["block_sise"] = 16
    out = cli("validate", str(write_config(tmp_path, cfg, "u.yaml")), "--no-backend")
    assert out.returncode == 2 and "takes no argument 'block_sise'" in out.stderr and "block_size" in out.stderr


def test_run_status_report_end_to_end(tmp_path, cli):
    path = write_config(tmp_path, tiny_config(tmp_path, iterations=1))
    out = cli("run", str(path), "generate.num_samples=60", "train.trainer.args.num_train_epochs=1")
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["generate/samples"] == 60
    snapshot = (run / "config.yaml").read_text()
    assert "num_samples: 60" in snapshot  # the resolved config, overrides included
    status = cli("status", str(run))
    assert status.returncode == 0
    assert "done" in status.stderr and "pending" not in status.stderr
    assert f"{rows[0]['holdout_perplexity']:.4g}" in status.stderr
    rep = cli("report", str(run))
    assert rep.returncode == 0 and (run / "report" / "report.html").exists()
    ls = cli("ls", "regimes")
    assert "accumulate_subsample" in ls.stderr and "alpha: float" in ls.stderr  # names, summaries, arguments
    assert cli("status", str(tmp_path)).returncode == 2
