"""Bad input, full disks, killed drivers: one clear message and exit status 2, nothing committed
lost, no traceback, no hang.

The fuzz tests mutate real configs (values, keys, raw bytes) with hypothesis, seeded, and run them
through the command line in-process: every outcome must be exit 0 or exit 2 with a message; a
traceback (any other exception) or a hang fails the test. A few hundred cases run by default,
thousands under ``-m slow``; ``benchmarks/robustness.py`` runs the large counts of the closing
figures.
"""

from __future__ import annotations

import errno
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from collapsebench.cli import main
from collapsebench.config import load_config
from collapsebench.layout import RunLayout
from collapsebench.loop import run_experiment
from conftest import REPO

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TOY = REPO / "configs" / "toy" / "gaussian_replace.yaml"
SHORT_TOY = ["iterations=3", "data.source.n=300", "data.holdout=100", "generate.num_samples=200"]


def exit_code(capfd: Any, *argv: str) -> tuple[int, str]:
    capfd.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = exc.code if isinstance(exc.code, int) else 2
    return code, capfd.readouterr().err


# ------------------------------------------------------------------------------------ hostile inputs

def write(tmp_path: Path, text: str | bytes, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize("text, message", [
    (b"name: x\niterations: 1\n\xff\xfe bad: 1\n", "not UTF-8 text (byte 22"),
    ("a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
     "expands to over 100000 values"),
    ("name: ..\niterations: 1\n", "'name': String should match pattern"),
    ("name: x\niterations: 1\nplugins: ['.']\n", "plugins: '.' is neither a .py file nor an absolute module name"),
    ("name: x\niterations: 1\nplugins: ['']\n", "plugins: '' is neither"),
    ("name: x\niterations: 1\nplugins: [/etc/passwd]\n", "plugins: '/etc/passwd' is not a Python file"),
    ("name: x\niterations: 1\nexecutor: builtins:dict\n", "has no signature"),
    ("name: x\niterations: 1\ncurate: {regime: {name: replace, alpha: .nan}}\n", "curate.regime.alpha"),
    ("name: x\niterations: 1\ncurate: {regime: {name: replace, alpha: [0.5]}}\n", "curate.regime.alpha"),
    ("name: x\niterations: 1\ndata: {holdout: .inf}\n", "'data.holdout'"),
    ("name: x\niterations: 1\ndata: {source: {name: local, path: missing.txt}}\n", "file not found"),
    ("name: x\niterations: 1\ndata: {source: gaussian}\ntrain: {trainer: gaussian_mle}\n",
     "generator 'transformers' works on text data, but data.source 'gaussian' gives vector data"),
    ("name: x\niterations: 1\ndata: {source: gaussian}\ntrain: {trainer: gmm}\ngenerate: {generator: gaussian}\n"
     "evaluate: {evaluations: [toy_stats]}\n", "generator 'gaussian' needs a gaussian model, but train.trainer 'gmm' makes "
     "a gmm model"),
    ("name: x\niterations: 1\ndata: {source: gaussian}\ntrain: {trainer: gaussian_mle}\ngenerate: {generator: gaussian}\n"
     "curate: {preprocess: [dedup]}\nevaluate: {evaluations: [toy_stats]}\n", "preprocessor 'dedup' works on text data"),
    ("name: x\niterations: 1\ngenerate: {prompts: {name: prompt_dataset, path: p.txt, template: {text: 1}}}\n",
     "generate.prompts.template"),
    ("name: x\niterations: 1\ntrain: {trainer: {name: gaussian_mle, ddof: 0.5}}\n", "train.trainer.ddof"),
])
def test_bad_configs_get_one_message_and_exit_2(tmp_path, capfd, text, message):
    path = write(tmp_path, text)
    (tmp_path / "p.txt").write_text("a prompt\n")
    code, err = exit_code(capfd, "validate", str(path), "--no-backend")
    assert code == 2 and message in err.replace("\n", " "), err
    assert "Traceback" not in err


def test_an_undecodable_override_is_named(capfd):
    code, err = exit_code(capfd, "validate", str(TOY), "name=caf\udce9", "--no-backend")
    assert code == 2 and "not UTF-8 text" in err


def test_a_hub_model_that_is_not_here_needs_a_download(tmp_path, capfd):
    cfg = yaml.safe_load(TOY.read_text())
    path = write(tmp_path, yaml.safe_dump({**cfg, "name": "d", "model": {"base": "some-org/some-model"}}))
    code, err = exit_code(capfd, "validate", str(path), "--no-backend")
    assert code == 0 and "needs download: some-org/some-model" in err
    code, err = exit_code(capfd, "run", str(path), f"output_dir={tmp_path / 'run'}")
    assert code == 2 and "needs download: some-org/some-model" in err
    assert not (tmp_path / "run").exists()  # refused before any work


def test_the_run_directory_may_not_be_where_the_user_works(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    code, err = exit_code(capfd, "run", str(TOY), "output_dir=.")
    assert code == 2 and "is the working directory" in err
    code, err = exit_code(capfd, "run", str(TOY), f"output_dir={tmp_path}")
    assert code == 2
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "thesis.tex").write_text("mine")
    code, err = exit_code(capfd, "run", str(TOY), "output_dir=other")
    assert code == 2 and "already holds files that are not a collapsebench run" in err
    assert (tmp_path / "notes.txt").read_text() == "mine" and os.listdir(tmp_path / "other") == ["thesis.tex"]


# ------------------------------------------------------------------------------------ full disks

def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if "per_second" not in k} for r in rows]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".lock" not in p.parts and p.name != ".lock"}


@pytest.mark.parametrize("code_name, where, nth, driver", [
    ("ENOSPC", "phases.publish_folder", 6, "general"), ("EROFS", "run.atomic_write", 6, "general"),
    ("ENOSPC", "phases.seal_folder", 6, "batched"),
    ("EROFS", "run.atomic_write", 4, "batched")])  # the batched driver writes the journal once per batch
def test_a_full_or_read_only_disk_stops_cleanly_and_the_run_resumes(tmp_path, monkeypatch, capfd, code_name, where,
                                                                    nth, driver):
    import importlib

    from collapsebench import batch

    if driver == "general":
        monkeypatch.setenv(batch.SWITCH, "0")

    reference = run_experiment(load_config(TOY, [f"output_dir={tmp_path / 'ref'}", *SHORT_TOY]), quiet=True)
    module_name, _, attr = where.rpartition(".")
    module = importlib.import_module(f"collapsebench.{module_name}")
    real = getattr(module, attr)
    calls = {"n": 0}

    def failing(path: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == nth:
            raise OSError(getattr(errno, code_name), os.strerror(getattr(errno, code_name)), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(module, attr, failing)
    run_dir = tmp_path / "run"
    code, err = exit_code(capfd, "run", str(TOY), f"output_dir={run_dir}", *SHORT_TOY)
    assert code == 2 and os.strerror(getattr(errno, code_name)) in err and str(run_dir) in err
    assert "Traceback" not in err
    committed = files(run_dir)
    assert any(name.endswith("stats.json") for name in committed)
    monkeypatch.setattr(module, attr, real)
    code, err = exit_code(capfd, "resume", str(run_dir))
    assert code == 0, err
    for name, data in committed.items():  # what was committed is kept as it was (a sealed work folder is not)
        if "/stats.json" in name and "iter_" in name and ".tmp/" not in name:
            assert (run_dir / name).read_bytes() == data
    assert comparable(RunLayout(run_dir).read_metrics()) == comparable(reference.read_metrics())


# ------------------------------------------------------------------------------------ orphaned workers

def test_a_worker_left_by_a_killed_driver_is_stopped_before_its_step_runs(tmp_path):
    config = load_config(TOY, [f"output_dir={tmp_path / 'run'}", *SHORT_TOY])
    run_experiment(config.model_copy(update={"iterations": 1}), quiet=True)
    lock = Path(config.run_dir()) / ".locks" / "2.train"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom collapsebench.io import FileLock\n"
        f"assert FileLock({str(lock)!r}).acquire()\nprint('held', flush=True)\ntime.sleep(600)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        run = run_experiment(config, quiet=True)
        assert holder.wait(timeout=30) == -signal.SIGTERM  # stopped, not waited for
        record = run.read_state().step("2.train")
        assert record is not None and record.stopped_orphan == holder.pid
        assert [r["iteration"] for r in run.read_metrics()] == [1, 2, 3]
    finally:
        if holder.poll() is None:
            holder.kill()


# ------------------------------------------------------------------------------------ fuzzing

ODD_VALUES = [None, True, False, -1, 0, 1, 0.5, 2.5, -0.0, 1e308, math.nan, math.inf, -math.inf, 2**40, "",
              "x" * 300, "replac", "module:attr", ".", "../..", "/etc/passwd", "{text.__class__}", "{{ 1/0 }}",
              "é\u0000", [], [1, 2], [[0.5]], {}, {"name": "nonexistent"}, {"name": 3}, {"x": {"y": [1]}}]


def paths_of(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += paths_of(v, (*prefix, i))
    return out


# values a researcher might plausibly write: mutants that validate accepts, to run them
PLAUSIBLE_VALUES = [0, 1, 2, 3, 10, 100, 0.0, 0.1, 0.5, 0.9, 1.5, True, False, None, "replace", "accumulate",
                    "accumulate_subsample", "grow", "gaussian", [0.0], [1.0, 2.0], {"name": "accumulate"}]


@st.composite
def mutated(draw: Any, base: dict[str, Any], values: list[Any] = ODD_VALUES, most: int = 4) -> str:
    import copy

    tree = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, most))):
        paths = paths_of(tree)
        path = draw(st.sampled_from(paths))
        parent = tree
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["set", "set", "set", "delete", "rename"]))
        if action == "set":
            parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(values)))  # the pool stays as it is
        elif action == "delete" and isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif action == "rename" and isinstance(parent, dict):
            parent[str(path[-1]) + draw(st.sampled_from(["s", "_", "x"]))] = parent.pop(path[-1])
    text = yaml.safe_dump(tree, allow_unicode=True)
    if draw(st.booleans()) and draw(st.booleans()):  # raw byte damage
        at = draw(st.integers(0, max(len(text) - 1, 0)))
        text = text[:at] + draw(st.sampled_from(["\t", ":", "- ", "{", "&a ", "*a", "\ufffd", "\n  "])) + text[at:]
    return text


BASES = [yaml.safe_load(p.read_text()) for p in (TOY, REPO / "configs" / "quickstart.yaml",
                                                 REPO / "configs" / "training" / "sft.yaml",
                                                 REPO / "configs" / "training" / "stage_placement_stage0.yaml",
                                                 REPO / "configs" / "generation" / "validated_chat.yaml")]


def validate_text(tmp_path: Path, text: str, capfd: Any) -> tuple[int, str]:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    start = time.perf_counter()
    code, err = exit_code(capfd, "validate", str(path), "--no-backend")
    assert time.perf_counter() - start < 30, "validate took too long (a hang?)"
    assert code in (0, 2), err
    assert code == 0 or err.strip(), "exit 2 without a message"
    return code, err


def fuzz(strategy: Any, examples: int, fuzz_seed: int, check: Any) -> None:
    """Run ``check(text)`` on ``examples`` configs drawn from ``strategy`` (seeded, no database)."""
    @seed(fuzz_seed)
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(strategy)
    def each(text: str) -> None:
        check(text)

    each()


ANY_BASE = st.sampled_from(range(len(BASES))).flatmap(lambda i: mutated(BASES[i]))


def test_fuzzed_configs_validate_or_fail_cleanly(tmp_path, capfd):
    fuzz(ANY_BASE, 150, 20261201, lambda text: validate_text(tmp_path, text, capfd))


@pytest.mark.slow
def test_fuzzed_configs_validate_or_fail_cleanly_many(tmp_path, capfd):
    fuzz(ANY_BASE, 3000, 20261201, lambda text: validate_text(tmp_path, text, capfd))


def run_mutant(tmp_path: Path, text: str, capfd: Any) -> int:
    """A validate-accepted toy mutant runs, or stops with exit 2 and a message."""
    import shutil

    code, _ = validate_text(tmp_path, text, capfd)
    if code != 0:
        return code
    shutil.rmtree(tmp_path / "mutant", ignore_errors=True)
    code, err = exit_code(capfd, "run", str(tmp_path / "fuzz.yaml"), f"output_dir={tmp_path / 'mutant'}",
                          "iterations=2")
    assert code in (0, 2), err
    assert code == 0 or err.strip()
    return code


TOY_SMALL = {**yaml.safe_load(TOY.read_text()), "iterations": 2, "generate": {"generator": "gaussian", "num_samples": 150},
             "data": {"source": {"name": "gaussian", "n": 200, "dim": 1, "mean": 0.0, "std": 1.0}, "holdout": 50}}


def test_validate_accepted_toy_mutants_run_or_fail_cleanly(tmp_path, capfd):
    fuzz(mutated(TOY_SMALL, PLAUSIBLE_VALUES, most=2), 25, 20261202, lambda text: run_mutant(tmp_path, text, capfd))


@pytest.mark.slow
def test_validate_accepted_toy_mutants_run_or_fail_cleanly_many(tmp_path, capfd):
    fuzz(mutated(TOY_SMALL, PLAUSIBLE_VALUES, most=2), 500, 20261202, lambda text: run_mutant(tmp_path, text, capfd))


# ------------------------------------------------------------------------------------ random kills

@pytest.mark.slow
def test_random_kill_points_resume_to_equal_data_and_metrics(tmp_path):
    """20 kill points (SIGKILL to the driver and its workers) on a toy config and a mini language-
    model config: every resumed run ends with the uninterrupted run's datasets and metrics."""
    import random

    sys.path.insert(0, str(REPO / "benchmarks"))
    from kill_resume import SETTINGS, run_cli, trial

    env = {**os.environ, "COLLAPSEBENCH_PROGRESS": "0", "OMP_NUM_THREADS": "1",
           "COLLAPSEBENCH_CACHE": str(tmp_path / "cache")}
    rng = random.Random(7)
    for name, argv in SETTINGS.items():
        reference = tmp_path / name / "reference"
        start = time.perf_counter()
        assert run_cli(["run", *argv, f"output_dir={reference}"], env).returncode == 0
        duration = time.perf_counter() - start
        for i in range(10):
            result = trial(argv, tmp_path / name / f"t{i}", rng.uniform(0.5, duration), env, reference)
            assert result["resume_exit"] == 0 and result["same_data"] and result["same_metrics"], result


# ------------------------------------------------------------------------------------ data files

def test_a_missing_text_column_is_named_before_the_run_and_a_preprocessor_may_write_it(tmp_path, capfd):
    import json

    from conftest import tiny_config

    rows = [{"question": f"q{i} why", "answer": f"because {i}"} for i in range(200)]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tiny_config(tmp_path, iterations=1)
    cfg["data"] = {"source": {"name": "local", "path": str(tmp_path / "qa.jsonl")}, "holdout": 40}
    cfg["generate"]["num_samples"] = 30
    path = write(tmp_path, yaml.safe_dump(cfg))
    code, err = exit_code(capfd, "validate", str(path), "--no-backend")
    assert code == 2 and "has no column 'text' (data.text_field); columns: question, answer" in err.replace("\n", " ")
    cfg["data"]["preprocess"] = [{"name": "template", "template": "{question} {answer}"}]
    path = write(tmp_path, yaml.safe_dump(cfg))
    code, err = exit_code(capfd, "run", str(path))
    assert code == 0, err
    assert (tmp_path / "run" / "iter_000" / "curate" / "tokenizer").exists()


def test_a_text_source_of_a_few_huge_documents_is_reported(tmp_path, capfd):
    """WikiText-2's blank lines hold a space: as paragraphs, a whole file is one document."""
    from conftest import tiny_config

    text = " \n \n".join(" = Article {} = \n Some text about {} . ".format(i, "x " * 40000) for i in range(3))
    (tmp_path / "wiki.txt").write_text(text)
    cfg = tiny_config(tmp_path, iterations=1)
    cfg["data"] = {"source": {"name": "local", "path": str(tmp_path / "wiki.txt"), "sample_by": "paragraph"},
                   "holdout": 1}
    code, err = exit_code(capfd, "run", str(write(tmp_path, yaml.safe_dump(cfg))))
    assert "set data.source.sample_by: line" in err.replace("\n", " ")


def test_editing_a_plugin_marks_exactly_the_steps_that_ran_it_stale(tmp_path, capfd):
    plugin = tmp_path / "my_metric.py"
    plugin.write_text("from collapsebench.registry import evaluations\n\n\n"
                      "@evaluations.register('row_count')\ndef row_count(ctx):\n    return {'rows': float(len(ctx.samples()))}\n")
    cfg = yaml.safe_load(TOY.read_text())
    cfg.update(iterations=2, plugins=[str(plugin)], output_dir=str(tmp_path / "run"),
               evaluate={"evaluations": ["toy_stats", "row_count"]})
    path = write(tmp_path, yaml.safe_dump(cfg))
    assert exit_code(capfd, "run", str(path))[0] == 0
    plugin.write_text(plugin.read_text().replace("float(len(ctx.samples()))", "2.0 * len(ctx.samples())"))
    code, err = exit_code(capfd, "run", str(path))
    message = err.replace("\n", " ")
    assert code == 2 and "redo 1.evaluate" in message and "redo 2.evaluate" in message
    assert "redo 2.train" not in message and "keep 7 committed step(s)" in message


def test_an_architecture_field_of_the_wrong_type_is_named(tmp_path):
    """transformers' configs check their fields' types with their own error class (not a ValueError):
    it is still a config error naming model.architecture, not a traceback of the backend check."""
    from collapsebench.config import config_from_dict
    from collapsebench.errors import UserError
    from collapsebench.validate import check_backends
    from conftest import tiny_config

    cfg = tiny_config(tmp_path)
    cfg["model"]["architecture"]["n_head"] = "two"
    with pytest.raises(UserError, match="model.architecture: .*n_head"):
        check_backends(config_from_dict(cfg))
