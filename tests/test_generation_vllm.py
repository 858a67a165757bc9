"""The vLLM generator: GPU groups and argument checks (fast), and a real run on a tiny model (slow;
needs vllm importable here, or COLLAPSEBENCH_VLLM_PYTHON naming an interpreter that has it)."""

import importlib.util
import os
import subprocess

import datasets
import pytest

from collapsebench.errors import UserError
from collapsebench.generators import vllm_engine as VG

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


@pytest.mark.slow
@pytest.mark.skipif(not (HAVE_VLLM or VLLM_PYTHON), reason="vllm is not importable")
def test_vllm_generates_with_samples_per_prompt(tmp_path_factory, tmp_path):
    from generation_fixtures import build_base, gen_ctx

    if VLLM_PYTHON:
        subprocess.run([VLLM_PYTHON, "-c", "import vllm"], check=True)
    base = build_base(tmp_path_factory.mktemp("base"), n_embd=64, n_head=1)  # vLLM CPU kernels: head_dim 64
    ctx = gen_ctx(base, tmp_path, num_samples=12, shard_size=4, prompts={"name": "real_prefix", "tokens": 2})
    stats = VG.generate(ctx, engine={"dtype": "float32", "max_model_len": 256, "enforce_eager": True,
                                                "gpu_memory_utilization": 0.1},
                        sampling={"n": 2, "temperature": 1.0}, max_new_tokens=8, python=VLLM_PYTHON)
    samples = datasets.load_from_disk(str(ctx.out_dir / "samples"))
    assert len(samples) == 12 and len(set(samples["id"])) == 12 and stats["samples_per_prompt"] == 2
    assert stats["shards"] == 3 and stats["new_tokens"] > 0
    for i in range(0, 12, 2):
        pair = samples.select(range(i, i + 2))
        assert pair["prompt"][0] == pair["prompt"][1] and all(t.startswith(pair["prompt"][0]) for t in pair["text"])
