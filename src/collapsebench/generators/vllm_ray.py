"""Generation with vLLM on a Ray cluster, through Ray Data's LLM processor (``ray.data.llm``), the
maintained way to run batch inference with vLLM on Ray (``pip install collapsebench[ray-vllm]``).

``generate.generator: {name: vllm_ray, replicas: 8, engine: {tensor_parallel_size: 1}}``: the
quota loop (:mod:`collapsebench.generators.quota`) runs in the phase's process; each round's
missing shards become one Ray dataset of requests (one row per sample: the prompt's token ids with
BOS, and sampling parameters with a seed of its own), which ``replicas`` vLLM engines process
across the cluster's GPUs (``engine.tensor_parallel_size`` GPUs each; every ``LLM`` argument
passes through ``engine``, every ``SamplingParams`` one through ``sampling``). The generated token
ids come back to the driver, are grouped by shard, decoded with the run's tokenizer and written as
the raw shards, which the loop validates and merges in order.

Each sample's seed derives from its shard's seed, its prompt and its number among the prompt's
samples, so the samples do not depend on the number of replicas or on how Ray batches the rows
(as far as vLLM's kernels are deterministic). With ``address`` the driver joins that Ray cluster
(``auto``: this machine's) unless Ray is already initialised (``executor: ray``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from collapsebench.api import PhaseContext, PositiveInt
from collapsebench.config import Config
from collapsebench.errors import UserError
from collapsebench.generators.hf import continuations, uses_chat_template
from collapsebench.generators.quota import Job, read_prompts, run_quota, write_raw_shard
from collapsebench.generators.vllm_engine import engine_arguments
from collapsebench.io import derive_seed
from collapsebench.models.loading import generation_model_dir, load_tokenizer, prompt_ids


def requests(jobs: list[Job], prompts: str, tokenizer: Any, sampling: dict[str, Any], per_prompt: int,
             chat: bool = False) -> list[dict[str, Any]]:
    """One request per sample: ``shard``, ``row`` (prompt-major), the prompt's token ids (framed as
    every backend frames them, :func:`collapsebench.models.loading.prompt_ids`) and its own sampling
    parameters (``n`` = 1, a derived seed)."""
    rows = []
    for job in jobs:
        table = read_prompts(prompts, job.lo, job.hi)
        for i, prompt in enumerate(prompt_ids(tokenizer, table["prompt"], chat=chat)):
            for j in range(per_prompt):
                rows.append({"shard": job.shard, "row": i * per_prompt + j, "tokenized_prompt": prompt,
                             "sampling_params": {**sampling, "n": 1, "seed": derive_seed(job.seed, i, j) % 2**31}})
    return rows


def write_shards(jobs: list[Job], prompts: str, tokenizer: Any, outputs: list[dict[str, Any]], per_prompt: int) -> None:
    """Group the generated token ids by shard, in row order, and write each job's raw shard."""
    by_shard: dict[int, dict[int, list[int]]] = {}
    for out in outputs:
        by_shard.setdefault(int(out["shard"]), {})[int(out["row"])] = [int(t) for t in out["generated_tokens"]]
    for job in jobs:
        table = read_prompts(prompts, job.lo, job.hi)
        got = by_shard.get(job.shard, {})
        expected = len(table["prompt"]) * per_prompt
        if sorted(got) != list(range(expected)):
            raise RuntimeError(f"vllm_ray: shard {job.shard} came back with {len(got)} of {expected} samples")
        texts, ids = continuations(tokenizer, [got[r] for r in range(expected)])
        write_raw_shard(job.path, table["prompt"], table["parent"], texts, ids, per_prompt)


def processor_config(model: str, engine: dict[str, Any], replicas: int, batch_size: int,
                     placement_group: dict[str, Any] | None = None) -> Any:
    """The Ray Data vLLM processor: ``replicas`` engines, token ids in and out (our tokenizer frames
    the prompts and decodes the samples, as the other backends do). ``placement_group``: the
    resources of each engine (Ray Data's ``placement_group_config``; default one GPU and one CPU)."""
    from ray.data.llm import vLLMEngineProcessorConfig

    return vLLMEngineProcessorConfig(model_source=model, engine_kwargs=engine, concurrency=replicas,
                                     batch_size=batch_size, chat_template_stage=False, tokenize_stage=False,
                                     detokenize_stage=False, placement_group_config=placement_group)


def run_processor(config: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import ray.data
    from ray.data.llm import build_processor

    processor = build_processor(config, postprocess=lambda r: {"shard": r["shard"], "row": r["row"],
                                                               "generated_tokens": r["generated_tokens"]})
    return list(processor(ray.data.from_items(rows)).iter_rows())


def generate(ctx: PhaseContext, engine: dict[str, Any] | None = None, sampling: dict[str, Any] | None = None,
             max_new_tokens: int = 128, replicas: PositiveInt | None = None,
             batch_size: PositiveInt = 64, keep_prompt: bool = True,
             address: str = "auto", chat_template: bool | None = None,
             placement_group: dict[str, Any] | None = None) -> dict[str, Any]:
    """Generate S(k) with M(k) on Ray through ``ray.data.llm``; see the module docstring.
    ``replicas``: vLLM engines (default: the cluster's GPUs / ``tensor_parallel_size``);
    ``chat_template``: as for the transformers generator (default: on after chat SFT);
    ``placement_group``: each engine's resources, Ray Data's ``placement_group_config``
    (``{bundles: [{CPU: 1}]}`` runs vLLM's CPU build, which needs no GPU)."""
    import ray

    engine = dict(engine or {})
    params = {"max_tokens": max_new_tokens, **(sampling or {})}
    per_prompt = int(params.pop("n", 1))
    if not ray.is_initialized():
        ray.init(address=address)
    tp = int(engine.get("tensor_parallel_size", 1)) * int(engine.get("pipeline_parallel_size", 1))
    count = replicas or max(1, int(ray.cluster_resources().get("GPU", 0) // tp))
    model = str(generation_model_dir(ctx))
    tokenizer = load_tokenizer(model)
    chat = uses_chat_template(ctx.config, chat_template)
    config = processor_config(model, engine, count, batch_size, placement_group)

    def write_raw(round_: int, prompts: Path, jobs: list[Job]) -> None:
        outputs = run_processor(config, requests(jobs, str(prompts), tokenizer, params, per_prompt, chat))
        write_shards(jobs, str(prompts), tokenizer, outputs, per_prompt)

    start = time.time()
    stats = run_quota(ctx, write_raw, tokenizer=tokenizer, per_prompt=per_prompt, keep_prompt=keep_prompt)
    stats.update(sampling=params, engine=engine, replicas=count, model=model, chat_template=chat,
                 seconds=round(time.time() - start, 3))
    return stats


def check_config(config: Config, kwargs: dict[str, Any]) -> None:
    """The engine arguments are a mapping; ``n`` is samples per prompt, as in the other backends."""
    engine_arguments(kwargs)
    sampling = kwargs.get("sampling") or {}
    if "seed" in sampling:
        raise UserError("generate.generator.sampling.seed: each sample's seed derives from the phase seed; remove it")
