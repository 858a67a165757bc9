"""The vLLM generators on vLLM's CPU build (marked `engines`; minutes; COLLAPSEBENCH_VLLM_PYTHON as
in tests/test_engines_vllm.py): a generate phase whose vLLM worker is killed mid-phase resumes by
generating only the shards it lacks and ends with the samples of an uninterrupted run; and
`vllm_ray`, Ray Data's LLM processor with Ray, vLLM and the project in vLLM's environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import datasets
import psutil
import pytest

from collapsebench.config import config_from_dict
from collapsebench.run import RunDir
from conftest import REPO
from engines_setup import CPU_ENGINE, ENGINES, VLLM_PYTHON
from generation_fixtures import build_base, gen_config

pytestmark = ENGINES

ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "RAY_AUTH_MODE": "disabled"}
HALF = {"name": "jinja", "template": "{{ text | length % 2 == 0 }}"}  # drops about half: several rounds


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_base(tmp_path_factory.mktemp("base"), n_embd=64, n_head=2)


def phase_run(base, tmp_path, generator: dict, **generate) -> RunDir:
    raw = gen_config(base, tmp_path, **generate)
    raw["generate"]["generator"] = generator
    run = RunDir(tmp_path / "run")
    run.save_config(config_from_dict(raw))
    return run


def phase(run: RunDir, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "collapsebench", "phase", str(run.path), "1.generate"], env=ENV,
                          capture_output=True, text=True)


def vllm_worker(run: RunDir) -> psutil.Process | None:
    """The phase's vLLM worker process (``collapsebench worker <run>/.workers/...``)."""
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "worker" in cmd and any(str(run.path / ".workers") in part for part in cmd):
            return proc
    return None


def test_a_killed_vllm_worker_resumes_with_only_the_missing_shards(base, tmp_path):
    generator = {"name": "vllm", "max_new_tokens": 48, "python": VLLM_PYTHON, "engine": CPU_ENGINE}
    setup = {"num_samples": 600, "shard_size": 6, "validators": [HALF]}
    ref = phase_run(base, tmp_path / "ref", generator, **setup)
    assert phase(ref).returncode == 0
    run = phase_run(base, tmp_path / "killed", generator, **setup)
    shards = run.tmp_dir(1, "generate") / "shards"
    proc = subprocess.Popen([sys.executable, "-m", "collapsebench", "phase", str(run.path), "1.generate"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while len(list(shards.glob("raw_r000_*.parquet"))) < 5:  # the engine is up and writing round 0
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
        assert time.time() < deadline, "no shard written"
        time.sleep(0.02)
    worker = vllm_worker(run)
    assert worker is not None
    family = [worker, *worker.children(recursive=True)]  # with its engine core
    for p in family:
        p.send_signal(signal.SIGKILL)
    psutil.wait_procs(family, timeout=30)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "exited with status -9" in err.decode(), err.decode()[-3000:]
    assert not run.is_committed(1, "generate")
    done = {p.name.split("_", 1)[1] for p in shards.glob("*_r*_*.parquet") if not p.name.startswith("prompts")}
    assert done and not (shards / "shard_r000_00000.parquet").exists()  # killed inside round 0

    out = phase(run)
    assert out.returncode == 0, out.stderr[-3000:]
    stats, ref_stats = run.committed_stats(1, "generate"), ref.committed_stats(1, "generate")
    assert stats["shards"] == ref_stats["shards"] > ref_stats["shards_generated"] - stats["shards_generated"] == len(done)
    assert ref_stats["metrics"]["rounds"] >= 2
    a = datasets.load_from_disk(str(run.phase_dir(1, "generate") / "samples"))
    b = datasets.load_from_disk(str(ref.phase_dir(1, "generate") / "samples"))
    assert len(a) == 600 and a["id"] == b["id"] and a["text"] == b["text"]


def test_vllm_ray_generates_through_ray_data(base, tmp_path):
    generator = {"name": "vllm_ray", "max_new_tokens": 16, "replicas": 1, "batch_size": 16, "address": "local",
                 "engine": CPU_ENGINE, "placement_group": {"bundles": [{"CPU": 1}]}}  # no GPU for vLLM's CPU build
    run = phase_run(base, tmp_path, generator, num_samples=40, shard_size=10)
    out = phase(run, python=VLLM_PYTHON)  # the driver imports ray.data.llm, which imports vllm
    assert out.returncode == 0, out.stderr[-3000:]
    got = datasets.load_from_disk(str(run.phase_dir(1, "generate") / "samples"))
    assert len(got) == 40 and len(set(got["id"])) == 40
