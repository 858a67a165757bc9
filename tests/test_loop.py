"""The loop end to end on a tiny model: run directory, journal, resume after kills, config drift."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collapsebench.config import config_from_dict
from collapsebench.errors import UserError
from collapsebench.loop import run_experiment
from collapsebench.run import RunDir
from conftest import tiny_config, write_config

CLI = [sys.executable, "-m", "collapsebench"]


def metrics(run_dir):
    return [json.loads(line) for line in Path(run_dir, "metrics.jsonl").read_text().splitlines()]


def comparable(rows):
    """Metrics that depend only on data and model (not on wall-clock speed)."""
    return [{k: v for k, v in r.items() if "per_second" not in k} for r in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run, shared by the tests that compare against it."""
    tmp = tmp_path_factory.mktemp("reference")
    config = config_from_dict(tiny_config(tmp))
    run_experiment(config, quiet=True)
    return tmp, config


def test_layout_journal_and_metrics(reference):
    tmp, config = reference
    run = RunDir(config.run_dir())
    assert (run.path / "config.yaml").exists()
    for k in (1, 2):
        for phase in ("curate", "train", "generate", "evaluate"):
            assert (run.phase_dir(k, phase) / "stats.json").exists()
            assert not run.tmp_dir(k, phase).exists()
    assert (run.phase_dir(1, "train") / "model" / "config.json").exists()
    assert (run.phase_dir(1, "evaluate") / "per_document.parquet").exists()
    state = json.loads((run.path / "state.json").read_text())
    assert {v["status"] for v in state["steps"].values()} == {"done"}
    seeds = [v["seed"] for v in state["steps"].values()]
    assert len(set(seeds)) == len(seeds)  # one derived seed per (iteration, phase)
    rows = metrics(run.path)
    assert [r["iteration"] for r in rows] == [1, 2]
    for r in rows:
        assert r["holdout_perplexity"] == pytest.approx(2.718281828 ** r["holdout_cross_entropy"])
        assert 1 < r["holdout_perplexity"] < 300
    assert rows[0]["curate/synthetic_fraction"] == 0
    assert rows[1]["curate/synthetic_fraction_tokens"] == pytest.approx(0.5, abs=0.02)
    assert rows[1]["curate/tokens"] == pytest.approx(rows[0]["curate/tokens"], rel=0.02)  # replace keeps the size in tokens
    page = (run.path / "report" / "report.html").read_text()  # self-contained: the figures are in the page
    assert "holdout_perplexity vs iteration" in page and page.count('src="data:image/svg+xml;base64,') >= 3
    # iteration 2's samples come from iteration 2's model, with lineage
    samples = __import__("datasets").load_from_disk(str(run.phase_dir(2, "generate") / "samples"))
    assert set(samples["generation"]) == {2} and set(samples["origin"]) == {"synthetic"}
    assert sum(samples["n_tokens"]) >= 0.5 * rows[0]["curate/tokens"]  # the tokens replace draws at alpha 0.5


def test_same_config_same_results(reference, tmp_path):
    _, config = reference
    again = config.model_copy(update={"output_dir": str(tmp_path / "again")})
    run_experiment(again, quiet=True)
    assert comparable(metrics(tmp_path / "again")) == comparable(metrics(config.run_dir()))


def test_completed_run_is_not_redone(reference):
    _, config = reference
    run = RunDir(config.run_dir())
    before = (run.phase_dir(1, "train") / "stats.json").stat().st_mtime_ns
    run_experiment(config, quiet=True)
    assert (run.phase_dir(1, "train") / "stats.json").stat().st_mtime_ns == before


def _kill_when(cmd, condition, timeout=240):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        if proc.poll() is not None:
            raise AssertionError(f"finished before the kill point: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("kill point never reached")


@pytest.mark.parametrize("where", ["between_phases", "inside_train", "inside_generate"])
def test_sigkill_then_resume_matches_uninterrupted(reference, tmp_path, where):
    ref_tmp, ref_config = reference
    cfg = ref_config.dump()
    cfg["output_dir"] = str(tmp_path / "run")
    run = RunDir(tmp_path / "run")
    path = write_config(tmp_path, cfg)
    conditions = {
        "between_phases": lambda: run.is_committed(1, "train"),
        "inside_train": lambda: any(run.tmp_dir(2, "train").glob("checkpoints/checkpoint-*/trainer_state.json")),
        "inside_generate": lambda: any(run.tmp_dir(1, "generate").glob("shards/shard_*.parquet")),
    }
    _kill_when(CLI + ["run", str(path)], conditions[where])
    state = json.loads((run.path / "state.json").read_text())
    assert not run.is_committed(2, "evaluate") and len(state["steps"]) < 9  # stopped part-way
    out = subprocess.run(CLI + ["resume", str(run.path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    if where == "inside_train":
        assert run.committed_stats(2, "train")["resumed_from"].startswith("checkpoint-")
    if where == "inside_generate":
        assert run.committed_stats(1, "generate")["shards_resumed"] >= 1
    ours, theirs = comparable(metrics(run.path)), comparable(metrics(ref_config.run_dir()))
    assert [r["iteration"] for r in ours] == [1, 2]
    for a, b in zip(ours, theirs):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5), key


@pytest.fixture(scope="module")
def one_iteration(tmp_path_factory):
    """A finished one-iteration run, copied by the tests that try to change it."""
    tmp = tmp_path_factory.mktemp("one")
    config = config_from_dict({**tiny_config(tmp), "iterations": 1})
    run_experiment(config, quiet=True)
    return config


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (the lock file aside)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_config_drift_is_refused_then_redone(reference, tmp_path):
    _, ref_config = reference
    cfg = ref_config.dump()
    cfg["output_dir"] = str(tmp_path / "run")
    cfg["iterations"] = 1
    run_experiment(config_from_dict(cfg), quiet=True)
    run = RunDir(tmp_path / "run")
    before = snapshot(run.path)
    changed = dict(cfg, generate={**cfg["generate"], "generator": {**cfg["generate"]["generator"], "max_new_tokens": 12}})
    with pytest.raises(UserError) as err:
        run_experiment(config_from_dict(changed), quiet=True)
    message = str(err.value)
    assert "redo 1.generate: stale: generate.generator changed" in message and "redo 1.evaluate" in message
    assert "redo 1.train" not in message and "keep 3 committed step(s): 0.curate .. 1.train" in message
    assert "--yes" in message
    assert snapshot(run.path) == before  # refused: nothing changed
    train_mtime = (run.phase_dir(1, "train") / "stats.json").stat().st_mtime_ns
    run_experiment(config_from_dict(changed), yes=True, quiet=True)  # exactly the stale steps rerun
    assert (run.phase_dir(1, "train") / "stats.json").stat().st_mtime_ns == train_mtime
    assert run.committed_stats(1, "generate")["sampling"]["max_new_tokens"] == 12
    assert not (run.path / "superseded").exists()  # the replacements committed: the old copies are gone
    # more iterations extend a finished run without redoing it
    run_experiment(config_from_dict(dict(changed, iterations=2)), quiet=True)
    assert [r["iteration"] for r in metrics(run.path)] == [1, 2]
    assert (run.phase_dir(1, "train") / "stats.json").stat().st_mtime_ns == train_mtime
    # fewer iterations: explicit, and metrics.jsonl keeps no row of a removed iteration
    with pytest.raises(UserError, match="redo 2.curate: beyond iterations = 1"):
        run_experiment(config_from_dict(changed), quiet=True)
    run_experiment(config_from_dict(changed), yes=True, quiet=True)
    assert [r["iteration"] for r in metrics(run.path)] == [1] and not run.phase_dir(2, "train").exists()


@pytest.mark.parametrize("change, redo_from, pattern", [
    ({"curate": {"regime": {"name": "replac"}}}, "1.curate", "unknown curation regime 'replac'"),
    ({"curate": {"regime": {"name": "replace", "alpah": 0.5}}}, "1.train", "takes no argument 'alpah'"),
    ({"curate": {"regime": {"name": "replace", "alpha": float("nan")}}}, "1.curate", "curate.regime.alpha"),
    ({}, "99.curate", "not a step of this config"),
    ({}, "0.train", "not a step of this config"),
    ({"train": {"trainer": {"name": "causal_lm", "block_size": 32, "args": {"lr_scheduler_type": "nope"}}}},
     "1.train", "train.trainer.args"),
    ({}, "1.train", "--yes"),  # a valid redo still needs consent
])
def test_a_refused_or_invalid_redo_changes_no_file(one_iteration, tmp_path, change, redo_from, pattern):
    import shutil

    shutil.copytree(one_iteration.run_dir(), tmp_path / "run")
    cfg = one_iteration.dump()
    cfg.update(output_dir=str(tmp_path / "run"))
    before = snapshot(tmp_path / "run")
    with pytest.raises(UserError, match=pattern):
        run_experiment(config_from_dict({**cfg, **change}), redo_from=redo_from, quiet=True)
    assert snapshot(tmp_path / "run") == before


def test_lock_refuses_second_driver(tmp_path):
    run = RunDir(tmp_path / "r")
    run.lock()
    try:
        with pytest.raises(UserError, match="in use by pid"):
            RunDir(tmp_path / "r").lock()
    finally:
        run.unlock()
    RunDir(tmp_path / "r").lock()


def test_subprocess_executor_matches_inline(reference, tmp_path):
    """Workers re-read the run directory's config and re-import plug-ins: same results as inline."""
    _, ref_config = reference
    cfg = ref_config.dump()
    cfg.update(output_dir=str(tmp_path / "run"), iterations=1, executor={"train": "subprocess", "generate": "subprocess"})
    run_experiment(config_from_dict(cfg), quiet=True)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["steps"]["1.train"]["executor"] == "subprocess"
    ours = comparable(metrics(tmp_path / "run"))[0]
    theirs = comparable(metrics(ref_config.run_dir()))[0]
    for key in theirs:
        assert ours[key] == pytest.approx(theirs[key], rel=1e-5), key


def test_user_error_in_worker_is_reported(reference, tmp_path):
    _, ref_config = reference
    cfg = ref_config.dump()
    cfg.update(output_dir=str(tmp_path / "run"), iterations=1, executor="subprocess")
    cfg["curate"] = {"regime": {"name": "replace", "alpha": 1.0, "size": 10_000}}
    cfg["generate"]["num_samples"] = 200  # far fewer than the regime will need
    run_experiment(config_from_dict(dict(cfg, iterations=1)), quiet=True)  # iteration 1 trains on real data only
    cfg["iterations"] = 2
    with pytest.raises(UserError, match="2.curate failed"):
        run_experiment(config_from_dict(cfg), quiet=True)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["steps"]["2.curate"]["status"] == "failed"
    assert state["steps"]["1.evaluate"]["status"] == "done"  # nothing already written is lost
