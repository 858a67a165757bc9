"""The vLLM generator: GPU groups and argument checks, and its engines in the phase's long-lived
workers (fast, without vllm: the workers are started and say that vllm is missing there), and a
real run on a tiny model over several rounds with one engine per worker (marked `engines`; needs
vllm importable here, or COLLAPSEBENCH_VLLM_PYTHON naming an interpreter that has it)."""

import importlib.util
import os
import subprocess
import sys
import zlib

import datasets
import pytest

from collapsebench.errors import UserError
from collapsebench.executors.local import InlineExecutor
from collapsebench.generators import vllm_engine as VG
from collapsebench.run import RunDir

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
VLLM_PYTHON = os.environ.get("COLLAPSEBENCH_VLLM_PYTHON")


def test_gpu_groups():
    assert VG.gpu_groups(2, 1) == ["0", "1"]
    assert VG.gpu_groups(2, 2) == ["0,1", "2,3"]
    assert VG.gpu_groups([[0, 1], "4,5"], 2) == ["0,1", "4,5"]
    with pytest.raises(UserError, match="data_parallel"):
        VG.gpu_groups(0, 1)
    with pytest.raises(UserError, match="GPU group"):
        VG.gpu_groups([["a"]], 1)


def test_check_config():
    with pytest.raises(UserError, match="engine must be a mapping"):
        VG.check_config(None, {"engine": ["tensor_parallel_size"]})
    if HAVE_VLLM:
        with pytest.raises(UserError, match="generate.generator.sampling"):
            VG.check_config(None, {"sampling": {"no_such_argument": 1}})
    else:
        with pytest.warns(UserWarning, match="vllm is not installed"):
            VG.check_config(None, {"sampling": {"no_such_argument": 1}})


def phase_ctx(base, tmp_path, **generate):
    """The generate phase's context over ``base``, as ``phases.execute`` gives it: the config saved in
    the run directory (the workers re-read it) and workers started on this machine."""
    from generation_fixtures import gen_ctx

    ctx = gen_ctx(base, tmp_path, **generate)
    RunDir(ctx.run_dir).save_config(ctx.config)
    return ctx.replace(worker_host=InlineExecutor())


def keep_half(ctx, batch):
    """Rejects the samples of about half the prompts (both of a prompt alike), so the quota needs
    several rounds."""
    return [zlib.crc32(p.encode()) % 2 == 0 for p in batch["prompt"]]


@pytest.mark.skipif(HAVE_VLLM, reason="checks the message of a worker without vllm")
def test_the_engines_run_in_workers_that_say_when_vllm_is_missing(gen_base, tmp_path):
    ctx = phase_ctx(gen_base, tmp_path, num_samples=4, shard_size=4)
    with pytest.raises(UserError, match=r"vllm cannot be imported by the workers' interpreter .*generate.generator.python"):
        VG.generate(ctx, max_new_tokens=4, python=sys.executable)
    assert "vllm" not in sys.modules  # imported in the workers only
    assert (ctx.run_dir / "logs" / "1.generate.vllm.w0.log").exists()  # the worker was started
    assert not any((ctx.run_dir / ".workers" / "1.generate.vllm").iterdir())  # and stopped, its queue removed


@pytest.mark.engines
@pytest.mark.skipif(not (HAVE_VLLM or VLLM_PYTHON), reason="vllm is not importable")
def test_vllm_generates_with_samples_per_prompt(tmp_path_factory, tmp_path):
    from generation_fixtures import build_base

    if VLLM_PYTHON:
        subprocess.run([VLLM_PYTHON, "-c", "import vllm"], check=True)
    base = build_base(tmp_path_factory.mktemp("base"), n_embd=64, n_head=1)
    ctx = phase_ctx(base, tmp_path, num_samples=12, shard_size=4, prompts={"name": "real_prefix", "tokens": 2},
                    validators=[{"name": "test_generation_vllm:keep_half"}])
    stats = VG.generate(ctx, engine={"dtype": "float32", "max_model_len": 256, "enforce_eager": True,
                                     "gpu_memory_utilization": 0.1},
                        sampling={"n": 2, "temperature": 1.0}, max_new_tokens=8, python=VLLM_PYTHON)
    samples = datasets.load_from_disk(str(ctx.out_dir / "samples"))
    assert len(samples) == 12 and len(set(samples["id"])) == 12 and stats["samples_per_prompt"] == 2
    assert stats["metrics"]["rounds"] >= 2 and stats["new_tokens"] > 0
    assert stats["engine_starts"] == stats["workers"] == 1  # one engine for all the rounds
    for i in range(0, 12, 2):
        pair = samples.select(range(i, i + 2))
        assert pair["prompt"][0] == pair["prompt"][1] and all(t.startswith(pair["prompt"][0]) for t in pair["text"])
