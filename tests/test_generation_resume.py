"""A generation killed with SIGKILL mid-phase resumes by skipping finished shards: the same
accepted and rejected samples as an uninterrupted run, no duplicates, none lost."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest

from collapsebench.config import config_from_dict
from collapsebench.run import RunDir
from generation_fixtures import build_base, gen_config

HALF = {"name": "jinja", "template": "{{ text | length % 2 == 0 }}"}  # drops about half


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_base(tmp_path_factory.mktemp("base"))


def _kill_when(cmd, env, condition, timeout=240):
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        if proc.poll() is not None:
            raise AssertionError(f"finished before the kill point: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("kill point never reached")


def _phase(base, tmp_path):
    gen = {"validators": [HALF], "num_samples": 160, "shard_size": 10}
    raw = gen_config(base, tmp_path, **gen)
    raw["generate"]["generator"]["max_new_tokens"] = 24
    run = RunDir(tmp_path / "run")
    run.save_config(config_from_dict(raw))
    return run


def test_sigkill_inside_generation_resumes_without_duplicates(base, tmp_path):
    from collapsebench.phases import execute

    ref = _phase(base, tmp_path / "ref")
    execute(ref.path, 1, "generate")
    run = _phase(base, tmp_path / "killed")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    cmd = [sys.executable, "-m", "collapsebench", "phase", str(run.path), "1.generate"]
    _kill_when(cmd, env, lambda: any(run.tmp_dir(1, "generate").glob("shards/shard_r000_*.parquet")))
    assert not run.is_committed(1, "generate")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    stats = run.committed_stats(1, "generate")
    assert stats["shards_resumed"] >= 1
    a = datasets.load_from_disk(str(run.phase_dir(1, "generate") / "samples"))
    b = datasets.load_from_disk(str(ref.phase_dir(1, "generate") / "samples"))
    assert a["id"] == b["id"] and a["text"] == b["text"] and len(set(a["id"])) == 160
    rej_a = datasets.load_from_disk(str(run.phase_dir(1, "generate") / "rejected"))
    rej_b = datasets.load_from_disk(str(ref.phase_dir(1, "generate") / "rejected"))
    assert rej_a["text"] == rej_b["text"]
