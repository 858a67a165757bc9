"""Generation with vLLM (``pip install collapsebench[vllm]``), data-parallel over GPU groups.

Every ``LLM`` (engine) argument passes through ``engine: {...}`` and every ``SamplingParams``
argument through ``sampling: {...}`` (``n`` = samples per prompt). The quota loop
(:mod:`collapsebench.generators.quota`) runs in the phase's process; for each round, the missing
shards are split over ``data_parallel`` worker processes, one engine per GPU group
(``CUDA_VISIBLE_DEVICES`` set per worker; a group of several GPUs is one tensor-parallel engine).
Each worker writes its own raw shards; the parent validates them and merges them into one
dataset. Workers exit after each round, so their GPU memory is released before the validators
(which may load models) run and before the next phase. vllm is imported only in the workers.

Each prompt gets a seed derived from its shard's seed, so a resumed phase reproduces the samples
of the shards it regenerates (as far as vLLM's kernels are deterministic).

Workers are tasks of the phase (:func:`worker`) run by the ``subprocess`` executor, one process per
GPU group with its own ``CUDA_VISIBLE_DEVICES``; their output goes to ``<run>/logs/``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from collapsebench.api import PhaseContext, Resources
from collapsebench.config import Config
from collapsebench.errors import UserError
from collapsebench.executors.local import SubprocessExecutor
from collapsebench.generators.hf import continuations, uses_chat_template
from collapsebench.generators.quota import Job, read_prompts, run_quota, write_raw_shard
from collapsebench.io import derive_seed
from collapsebench.models.loading import generation_model_dir, load_tokenizer, prompt_ids


def gpu_groups(data_parallel: int | list[Any], tensor_parallel: int) -> list[str]:
    """``CUDA_VISIBLE_DEVICES`` of each worker: ``N`` workers of ``tensor_parallel`` consecutive GPUs,
    or an explicit list of groups (``[[0, 1], [2, 3]]`` or ``["0,1", "2,3"]``)."""
    if isinstance(data_parallel, bool) or not isinstance(data_parallel, (int, list)):
        raise UserError(f"generate.generator.data_parallel must be a number or a list of GPU groups, got {data_parallel!r}")
    if isinstance(data_parallel, int):
        if data_parallel < 1:
            raise UserError(f"generate.generator.data_parallel must be >= 1, got {data_parallel}")
        return [",".join(str(i * tensor_parallel + j) for j in range(tensor_parallel)) for i in range(data_parallel)]
    groups = []
    for g in data_parallel:
        ids = g if isinstance(g, list) else str(g).split(",")
        try:
            groups.append(",".join(str(int(i)) for i in ids))
        except ValueError:
            raise UserError(f"generate.generator.data_parallel: GPU group {g!r} is not a list of GPU numbers") from None
    if not groups:
        raise UserError("generate.generator.data_parallel: the list of GPU groups is empty")
    return groups


def _sampling(sampling: dict[str, Any] | None, max_new_tokens: int) -> dict[str, Any]:
    return {"max_tokens": max_new_tokens, **(sampling or {})}


def generate(ctx: PhaseContext, engine: dict[str, Any] | None = None, sampling: dict[str, Any] | None = None,
             max_new_tokens: int = 128, data_parallel: int | list[Any] = 1, keep_prompt: bool = True,
             python: str | None = None, chat_template: bool | None = None) -> dict[str, Any]:
    """Generate S(k) with M(k) (or the base model, ``generate.first_from``) through vLLM workers;
    see the module docstring.

    ``python``: the interpreter of the workers (default: this one), e.g. a separate vLLM venv.
    ``chat_template``: as for the transformers generator (default: on after chat SFT)."""
    engine = dict(engine or {})
    params = _sampling(sampling, max_new_tokens)
    per_prompt = int(params.get("n", 1))
    groups = gpu_groups(data_parallel, int(engine.get("tensor_parallel_size", 1)))
    model = str(generation_model_dir(ctx))
    tokenizer = load_tokenizer(model)
    chat = uses_chat_template(ctx.config, chat_template)
    workers = SubprocessExecutor(workers=len(groups), python=python, logs=True)

    def write_raw(round_: int, prompts: Path, jobs: list[Job]) -> None:
        tasks = []
        for w, group in enumerate(groups):
            mine = jobs[w :: len(groups)]
            if mine:
                task = ctx.task(f"vllm-r{round_:03d}-w{w}", "collapsebench.generators.vllm_engine:worker",
                                engine=engine, sampling=params, per_prompt=per_prompt, prompts=str(prompts),
                                jobs=[{"path": j.path, "seed": j.seed, "lo": j.lo, "hi": j.hi} for j in mine],
                                model=model, chat=chat)
                tasks.append(replace(task, env={"CUDA_VISIBLE_DEVICES": group}))
        workers.wait([workers.submit(t, Resources(gpus=len(groups[0].split(",")))) for t in tasks])

    start = time.time()
    stats = run_quota(ctx, write_raw, tokenizer=tokenizer, per_prompt=per_prompt, keep_prompt=keep_prompt)
    stats.update(sampling=params, engine=engine, workers=len(groups), model=model, chat_template=chat,
                 seconds=round(time.time() - start, 3))
    return stats


def engine_arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The generator's ``engine`` argument (``vllm.LLM`` arguments), checked to be a mapping: the
    vLLM backends pass it through as it is."""
    engine = kwargs.get("engine")
    if engine is not None and not isinstance(engine, dict):
        raise UserError(f"generate.generator.engine must be a mapping of vllm.LLM arguments, got {engine!r}")
    return dict(engine or {})


def check_config(config: Config, kwargs: dict[str, Any]) -> None:
    """Check the GPU groups; build SamplingParams when vllm is importable (else warn and skip)."""
    engine = engine_arguments(kwargs)
    gpu_groups(kwargs.get("data_parallel", 1), int(engine.get("tensor_parallel_size", 1)))
    try:
        from vllm import SamplingParams
    except ImportError:
        warnings.warn("vllm is not installed here: generate.generator.sampling not checked", stacklevel=2)
        return
    try:
        SamplingParams(**_sampling(kwargs.get("sampling"), kwargs.get("max_new_tokens", 128)))
    except (TypeError, ValueError) as exc:
        raise UserError(f"generate.generator.sampling: {exc}") from None


# ------------------------------------------------------------------------------------ the worker

def worker(ctx: PhaseContext, engine: dict[str, Any], sampling: dict[str, Any], per_prompt: int, prompts: str,
           jobs: list[dict[str, Any]], model: str, chat: bool = False) -> None:
    """Run one engine over its jobs; write each job's raw shard (skipping done ones)."""
    from vllm import LLM, SamplingParams

    tokenizer = load_tokenizer(model)
    llm = LLM(model=model, **engine)
    m = per_prompt
    for job in jobs:
        if Path(job["path"]).exists():
            continue
        rows = read_prompts(prompts, job["lo"], job["hi"])
        requests = [{"prompt_token_ids": ids} for ids in prompt_ids(tokenizer, rows["prompt"], chat=chat)]
        params = [SamplingParams(**{**sampling, "seed": derive_seed(job["seed"], i) % 2**31})
                  for i in range(len(requests))]
        outputs = llm.generate(requests, params, use_tqdm=False)
        generated = []
        for out in outputs:
            completions = list(out.outputs)[:m]
            if len(completions) != m:
                raise RuntimeError(f"vLLM returned {len(completions)} completions for n = {m}")
            generated += [list(c.token_ids) for c in completions]
        texts, ids = continuations(tokenizer, generated)
        write_raw_shard(job["path"], rows["prompt"], rows["parent"], texts, ids, m)
