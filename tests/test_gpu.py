"""Checks that need a GPU (marked ``gpu``; ``python -m pytest -m gpu`` on a CUDA machine). Each skips
cleanly, with its reason, where CUDA, vLLM, Ray Data or DeepSpeed is missing. Models and tokenizers
are built from scratch, offline (``generation_fixtures.build_base``, ``conftest.tiny_config``).
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from collapsebench.config import config_from_dict
from collapsebench.loop import run_experiment
from conftest import tiny_config

pytestmark = pytest.mark.gpu


def cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a submodule of a package that is not there
        return False


needs_cuda = pytest.mark.skipif(not cuda(), reason="no CUDA device")
needs_vllm = pytest.mark.skipif(not has("vllm"), reason="vllm is not installed")
needs_deepspeed = pytest.mark.skipif(not has("deepspeed"), reason="deepspeed is not installed")
needs_ray_data = pytest.mark.skipif(not (has("ray") and has("ray.data.llm")), reason="ray[data] is not installed")


def stats(run, phase: str) -> dict:
    return json.loads((run / "iter_001" / phase / "stats.json").read_text())


@needs_cuda
def test_a_training_step_on_cuda(tmp_path):
    import torch

    torch.cuda.reset_peak_memory_stats()
    cfg = tiny_config(tmp_path, iterations=1, output_dir=str(tmp_path / "run"),
                      evaluate={"evaluations": ["perplexity"]})
    run_experiment(config_from_dict(cfg), quiet=True)
    assert torch.cuda.max_memory_allocated() > 0  # the model trained and scored on the GPU
    assert stats(tmp_path / "run", "train")["steps"] > 0


def generate_with(gen_base, tmp_path, generator: dict, **generate) -> list[str]:
    import datasets

    from generation_fixtures import gen_ctx

    ctx = gen_ctx(gen_base, tmp_path, num_samples=16, shard_size=8, generator=generator, **generate)
    from collapsebench.phases.generate import run

    run(ctx)
    return datasets.load_from_disk(str(ctx.out_dir / "samples"))["text"]


VLLM_ENGINE = {"dtype": "float32", "max_model_len": 256, "enforce_eager": True, "gpu_memory_utilization": 0.2}


@needs_cuda
@needs_vllm
def test_vllm_generates_on_the_gpu(tmp_path_factory, tmp_path):
    from generation_fixtures import build_base

    base = build_base(tmp_path_factory.mktemp("base"), n_embd=64, n_head=1)
    texts = generate_with(base, tmp_path, {"name": "vllm", "engine": VLLM_ENGINE, "max_new_tokens": 12})
    assert len(texts) == 16


@needs_cuda
@needs_vllm
def test_vllm_and_transformers_agree_under_greedy_decoding(tmp_path_factory, tmp_path):
    """The same model, prompts and greedy decoding in float32: the samples of the two backends are
    the same (all but a near-tie or two may flip an argmax)."""
    from generation_fixtures import build_base

    base = build_base(tmp_path_factory.mktemp("base"), n_embd=64, n_head=1)
    prompts = {"name": "real_prefix", "tokens": 3}
    hf = generate_with(base, tmp_path / "hf", {"name": "transformers", "max_new_tokens": 12,
                                               "sampling": {"do_sample": False}}, prompts=prompts)
    vl = generate_with(base, tmp_path / "vllm", {"name": "vllm", "engine": VLLM_ENGINE, "max_new_tokens": 12,
                                                 "sampling": {"temperature": 0.0}}, prompts=prompts)
    same = sum(a == b for a, b in zip(hf, vl))
    assert same >= 0.9 * len(hf), list(zip(hf, vl))


@needs_cuda
@needs_vllm
@needs_ray_data
def test_vllm_on_ray_generates_as_vllm_does(tmp_path_factory, tmp_path):
    import ray

    from generation_fixtures import build_base

    base = build_base(tmp_path_factory.mktemp("base"), n_embd=64, n_head=1)
    ray.init(address="local", include_dashboard=False)
    try:
        texts = generate_with(base, tmp_path, {"name": "vllm_ray", "engine": VLLM_ENGINE, "replicas": 1,
                                               "max_new_tokens": 12, "sampling": {"temperature": 0.0}},
                              prompts={"name": "real_prefix", "tokens": 3})
    finally:
        ray.shutdown()
    assert len(texts) == 16


@needs_cuda
@needs_deepspeed
def test_a_deepspeed_zero2_step(tmp_path):
    cfg = tiny_config(tmp_path, iterations=1, output_dir=str(tmp_path / "run"),
                      evaluate={"evaluations": ["perplexity"]})
    cfg["train"]["trainer"]["args"]["deepspeed"] = {
        "zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto", "train_batch_size": "auto"}
    cfg["train"]["launcher"] = {"name": "torchrun", "nproc_per_node": 1}
    run_experiment(config_from_dict(cfg), quiet=True)
    train = stats(tmp_path / "run", "train")
    assert train["steps"] > 0 and train["launcher"]["world_size"] == 1
