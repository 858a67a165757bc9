"""Generation with vLLM (``pip install collapsebench[vllm]``), data-parallel over GPU groups.

Every ``LLM`` (engine) argument passes through ``engine: {...}`` and every ``SamplingParams``
argument through ``sampling: {...}`` (``n`` = samples per prompt). The quota loop
(:mod:`collapsebench.generators.quota`) runs in the phase's process; its rounds' missing shards
are split over ``data_parallel`` long-lived workers of the phase (``PhaseContext.workers``), one
engine per GPU group (its ``devices``: a group of several GPUs is one tensor-parallel engine).
Each worker builds its engine with its first task, sent as the workers start (so the engine
starts while the phase draws its first prompts), and keeps it for the whole phase: an engine
starts once per phase, not once per round; each writes its own raw shards, and the parent
validates them and merges them into one dataset. vllm is imported only in the workers.

The engines hold their GPUs while the validators of each round run in the phase's process. A
validator that loads a model of its own onto the same GPUs needs that memory: ``keep_engine:
false`` then ends the workers after each round (releasing their GPUs) and starts them again for
the next, at the cost of one engine start per round.

Each prompt gets a seed derived from its shard's seed, so a resumed phase reproduces the samples
of the shards it regenerates (as far as vLLM's kernels are deterministic). The workers are
started by the phase's executor (child processes on this machine, SLURM jobs, Ray actors); their
output goes to ``<run>/logs/`` (or the scheduler's logs).
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from collapsebench.api import PhaseContext, PhaseWorkers, WorkerSpec
from collapsebench.config import Config
from collapsebench.errors import UserError
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
             python: str | None = None, chat_template: bool | None = None, keep_engine: bool = True) -> dict[str, Any]:
    """Generate S(k) with M(k) (or the base model, ``generate.first_from``) through vLLM workers;
    see the module docstring.

    ``python``: the interpreter of the workers (default: this one), e.g. a separate vLLM venv.
    ``chat_template``: as for the transformers generator (default: on after chat SFT).
    ``keep_engine``: keep each worker's engine for the whole phase (false: restart the workers
    after each round, freeing the GPUs for validators that load models)."""
    engine = dict(engine or {})
    params = _sampling(sampling, max_new_tokens)
    per_prompt = int(params.get("n", 1))
    specs = [WorkerSpec(python=python, devices=group)
             for group in gpu_groups(data_parallel, int(engine.get("tensor_parallel_size", 1)))]
    model = str(generation_model_dir(ctx))
    chat = uses_chat_template(ctx.config, chat_template)
    done: list[dict[str, Any]] = []

    def write_raw_on(pool: PhaseWorkers, prompts: Path, jobs: list[Job]) -> None:
        """Job ``i`` to worker ``i mod workers``; wait for all of them."""
        futures = [pool.submit(w, generate_shards, engine=engine, sampling=params, per_prompt=per_prompt,
                               prompts=str(prompts), model=model, chat=chat,
                               jobs=[{"path": j.path, "seed": j.seed, "lo": j.lo, "hi": j.hi} for j in mine])
                   for w in range(len(pool)) if (mine := jobs[w :: len(pool)])]
        done.extend(f.result() for f in futures)

    start = time.time()
    if keep_engine:
        with ctx.workers(specs, name="vllm") as pool:
            # a first task without jobs: each worker imports vLLM and builds its engine while this
            # process loads the tokenizer and draws the first round's prompts
            warm = [pool.submit(w, generate_shards, engine=engine, sampling=params, per_prompt=per_prompt, prompts="",
                                model=model, chat=chat, jobs=[]) for w in range(len(pool))]
            tokenizer = load_tokenizer(model)  # imports transformers here (2 s on a CPU) while the workers start
            stats = run_quota(ctx, lambda _, prompts, jobs: write_raw_on(pool, prompts, jobs), tokenizer=tokenizer,
                              per_prompt=per_prompt, keep_prompt=keep_prompt)
            done.extend(f.result() for f in warm)
    else:
        def write_raw(round_: int, prompts: Path, jobs: list[Job]) -> None:
            with ctx.workers(specs, name=f"vllm-r{round_:03d}") as pool:
                write_raw_on(pool, prompts, jobs)

        stats = run_quota(ctx, write_raw, tokenizer=load_tokenizer(model), per_prompt=per_prompt, keep_prompt=keep_prompt)
    stats.update(sampling=params, engine=engine, workers=len(specs), model=model, chat_template=chat,
                 engine_starts=sum(d["engine_started"] for d in done), seconds=round(time.time() - start, 3))
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

def generate_shards(ctx: PhaseContext, engine: dict[str, Any], sampling: dict[str, Any], per_prompt: int,
                    prompts: str, jobs: list[dict[str, Any]], model: str, chat: bool = False) -> dict[str, Any]:
    """A worker's task: write each job's raw shard (skipping done ones) with this worker's engine,
    built by its first task and kept in ``ctx.models`` for the next. Says whether it started the
    engine, for the phase's ``engine_starts``.

    The requests of all the jobs go into the engine at once and each shard is written as soon as
    its last request finishes: the engine's batch stays full across shards (one ``LLM.generate``
    per shard drains it at every shard's end, which took twice as long on a CPU), while a killed
    worker still leaves every shard it finished."""
    try:
        from vllm import LLM, SamplingParams
        from vllm.sampling_params import RequestOutputKind
    except ImportError as exc:
        raise UserError(f"generate.generator: vllm cannot be imported by the workers' interpreter {sys.executable} "
                        f"({exc}); pip install collapsebench[vllm] there, or name one that has it in "
                        "generate.generator.python") from None

    started = []

    def start() -> Any:
        started.append(True)
        return LLM(model=model, **engine)

    llm = ctx.models.get(("vllm", model, json.dumps(engine, sort_keys=True)), start)
    tokenizer = ctx.models.get(("tokenizer", model), lambda: load_tokenizer(model))
    core = llm.llm_engine
    todo: dict[str, tuple[dict[str, list[Any]], list[Any]]] = {}  # shard path -> prompt rows, outputs
    for job in jobs:
        if Path(job["path"]).exists():
            continue
        rows = read_prompts(prompts, job["lo"], job["hi"])
        requests = prompt_ids(tokenizer, rows["prompt"], chat=chat)
        todo[job["path"]] = rows, [None] * len(requests)
        for i, ids in enumerate(requests):
            params = SamplingParams(**{**sampling, "seed": derive_seed(job["seed"], i) % 2**31},
                                    output_kind=RequestOutputKind.FINAL_ONLY)
            core.add_request(f"{job['path']}#{i}", {"prompt_token_ids": ids}, params)
    while todo:
        if not core.has_unfinished_requests():
            raise RuntimeError(f"vLLM finished without the outputs of {len(todo)} shards")
        for out in core.step():
            if not out.finished:
                continue
            path, i = out.request_id.rsplit("#", 1)
            rows, outputs = todo[path]
            outputs[int(i)] = out
            if all(o is not None for o in outputs):
                write_shard(path, rows, outputs, per_prompt, tokenizer)
                del todo[path]
    return {"pid": os.getpid(), "engine_started": bool(started)}


def write_shard(path: str, rows: dict[str, list[Any]], outputs: list[Any], per_prompt: int, tokenizer: Any) -> None:
    """One job's raw shard from its prompts' finished vLLM outputs (``per_prompt`` completions each)."""
    generated = []
    for out in outputs:
        completions = list(out.outputs)[:per_prompt]
        if len(completions) != per_prompt:
            raise RuntimeError(f"vLLM returned {len(completions)} completions for n = {per_prompt}")
        generated += [list(c.token_ids) for c in completions]
    texts, ids = continuations(tokenizer, generated)
    write_raw_shard(path, rows["prompt"], rows["parent"], texts, ids, per_prompt)
