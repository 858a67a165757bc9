"""Generation with `transformers` (the CPU path): batched with the KV cache, left padding, sorted by
prompt length, Parquet shards written as it goes, inside the quota loop
(:mod:`collapsebench.generators.quota`: rounds, validators, resumption by skipping finished shards).

Every `transformers` generation parameter passes through ``sampling`` (temperature, top_p, top_k,
num_beams, repetition_penalty, min_new_tokens, stop_strings, num_return_sequences = samples per
prompt, ...). ``batch_size`` counts prompts (each gives ``num_return_sequences`` rows)."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from collapsebench.api import Model, PhaseContext, Tokenizer
from collapsebench.config import Config
from collapsebench.errors import UserError, did_you_mean
from collapsebench.generators.quota import (
    Job,
    read_prompts,
    run_quota,
    shards_validate_alone,
    validate_shard,
    write_raw_shard,
)
from collapsebench.models.generation import generate_ids
from collapsebench.models.loading import cached_causal_lm, context_length, generation_model_dir, prompt_ids
from collapsebench.registry import hook, trainers

# Ancestral sampling: the setting of the model-collapse literature unless the config says otherwise.
DEFAULT_SAMPLING: dict[str, Any] = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0}


def generation_config(sampling: dict[str, Any] | None, max_new_tokens: int, tokenizer: Tokenizer | None = None) -> Any:
    """Build and validate a `GenerationConfig` from the defaults and the config's ``sampling``
    (the sampling defaults are left out when ``sampling`` sets ``do_sample: false``)."""
    from transformers import GenerationConfig

    known = set(GenerationConfig().to_dict())
    for key in sampling or {}:
        if key not in known:  # GenerationConfig would keep a misspelt key as an inert attribute
            raise UserError(f"generate.generator.sampling: unknown parameter '{key}'{did_you_mean(key, known)}")
    sampling = dict(sampling or {})
    defaults = DEFAULT_SAMPLING if sampling.get("do_sample", True) else {}
    merged = {**defaults, "max_new_tokens": max_new_tokens, **sampling}
    if tokenizer is not None:
        merged.setdefault("pad_token_id", tokenizer.pad_token_id)
        merged.setdefault("eos_token_id", tokenizer.eos_token_id)
    try:
        config = GenerationConfig(**merged)
        config.validate(strict=True)
    except (TypeError, ValueError) as exc:
        raise UserError(f"generate.generator.sampling: {exc}") from None
    m = config.num_return_sequences or 1
    if m > 1 and not config.do_sample and (config.num_beams or 1) < m:
        raise UserError(f"generate.generator.sampling: num_return_sequences = {m} needs do_sample: true "
                        f"or num_beams >= {m}")
    return config


def generate_batch(model: Model, tokenizer: Tokenizer, prompts: list[str], gen_config: Any,
                   chat: bool = False) -> tuple[list[str], list[list[int]]]:
    """Continue each prompt (BOS-prefixed, or rendered through the chat template with ``chat``);
    return the decoded continuations and their token ids (cut at the first EOS, other special
    tokens dropped), ``num_return_sequences`` per prompt, prompt-major."""
    import torch

    encoded = prompt_ids(tokenizer, prompts, chat=chat)
    width = max(len(e) for e in encoded)
    room = context_length(model) - width
    if room < 1:
        raise UserError(f"generate: a prompt of {width} tokens leaves no room in the model's context")
    if gen_config.max_new_tokens > room:  # stay inside the model's position embeddings
        gen_config = copy.deepcopy(gen_config)
        gen_config.max_new_tokens = room
    ids = torch.full((len(encoded), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, e in enumerate(encoded):  # left padding
        ids[row, width - len(e):] = torch.tensor(e)
        mask[row, width - len(e):] = 1
    dev = next(model.parameters()).device
    extra = {"tokenizer": tokenizer} if gen_config.stop_strings else {}
    out = generate_ids(model, input_ids=ids.to(dev), attention_mask=mask.to(dev), generation_config=gen_config, **extra)
    new = out[:, width:].cpu()
    return continuations(tokenizer, new.tolist())


def continuations(tokenizer: Tokenizer, rows: list[list[int]]) -> tuple[list[str], list[list[int]]]:
    """Generated ids cut at the first EOS, without special tokens, and their decoded text."""
    special = set(tokenizer.all_special_ids)
    ids = []
    for row in rows:
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id)]
        ids.append([t for t in row if t not in special])
    return [str(tokenizer.decode(x)) for x in ids], ids


def uses_chat_template(config: Config, chat_template: bool | None) -> bool:
    """Whether generation renders prompts through the tokenizer's chat template: ``chat_template``
    when set, else when the model was trained on chat turns (a trainer, in ``train.trainer`` or a
    stage, whose declared ``chat`` hook says so: ``sft`` with ``format: chat``), so it is prompted
    the way it was trained."""
    if chat_template is not None:
        return chat_template
    return any(bool(hook(chat)(trainers.bind(t.name, t.kwargs, key="train.trainer")))
               for t in config.train.trainers if (chat := trainers.entry(t.name).chat))


def generate(ctx: PhaseContext, batch_size: int = 32, max_new_tokens: int = 128,
             sampling: dict[str, Any] | None = None, keep_prompt: bool = True,
             chat_template: bool | None = None) -> dict[str, Any]:
    """Generate the accepted samples S(k) with M(k) (or the base model, ``generate.first_from``)
    into ``samples/`` (lineage columns kept); each shard of candidates is a task of the phase
    (:func:`generate_job`), validated where it is made when the validators allow it.

    ``keep_prompt``: the sample's text is prompt + continuation (else the continuation alone).
    ``chat_template``: render each prompt as a user turn through the tokenizer's chat template
    (default: on after chat SFT, see :func:`uses_chat_template`); the template then decides how the
    sequence starts (no BOS of ours)."""
    _, tokenizer = cached_causal_lm(ctx, generation_model_dir(ctx))
    gen_config = generation_config(sampling, max_new_tokens, tokenizer)
    per_prompt = gen_config.num_return_sequences or 1
    chat = uses_chat_template(ctx.config, chat_template)
    if chat and not getattr(tokenizer, "chat_template", None):
        raise UserError("generate.generator.chat_template: the model's tokenizer has no chat template")

    def write_raw(round_: int, prompts_path: Path, jobs: list[Job]) -> None:
        ctx.map_tasks([ctx.task(job.name, generate_job, job=asdict(job),
                                prompts=str(prompts_path), batch_size=batch_size, max_new_tokens=max_new_tokens,
                                sampling=sampling, keep_prompt=keep_prompt, chat=chat) for job in jobs])

    start = time.time()
    stats = run_quota(ctx, write_raw, tokenizer=tokenizer, per_prompt=per_prompt, keep_prompt=keep_prompt)
    stats.update(sampling=gen_config.to_diff_dict(), model=str(generation_model_dir(ctx)), chat_template=chat,
                 seconds=round(time.time() - start, 3))
    return stats


def generate_job(ctx: PhaseContext, job: dict[str, Any], prompts: str, batch_size: int, max_new_tokens: int,
                 sampling: dict[str, Any] | None, keep_prompt: bool = True, chat: bool = False) -> None:
    """One shard of candidates: continue prompts ``[lo, hi)`` of the round's table, seeded by the
    job's seed, in batches sorted by prompt length; write the raw shard and validate it."""
    import torch

    model, tokenizer = cached_causal_lm(ctx, generation_model_dir(ctx))
    gen_config = generation_config(sampling, max_new_tokens, tokenizer)
    per_prompt = gen_config.num_return_sequences or 1
    torch.manual_seed(job["seed"])
    rows = read_prompts(prompts, job["lo"], job["hi"])
    chunk = rows["prompt"]
    texts: list[str] = [""] * (len(chunk) * per_prompt)
    ids: list[list[int]] = [[] for _ in texts]
    order = sorted(range(len(chunk)), key=lambda i: len(chunk[i]))
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        outs, out_ids = generate_batch(model, tokenizer, [chunk[i] for i in idx], gen_config, chat)
        for pos, i in enumerate(idx):
            for j in range(per_prompt):
                texts[i * per_prompt + j] = outs[pos * per_prompt + j]
                ids[i * per_prompt + j] = out_ids[pos * per_prompt + j]
    write_raw_shard(job["path"], chunk, rows["parent"], texts, ids, per_prompt)
    if shards_validate_alone(ctx):
        validate_shard(ctx, Job(**job), keep_prompt, tokenizer)


def check_config(config: Config, kwargs: dict[str, Any]) -> None:
    """Build the GenerationConfig from the config's sampling parameters."""
    generation_config(kwargs.get("sampling"), kwargs.get("max_new_tokens", 128))
