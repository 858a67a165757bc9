"""Generation with `transformers`: batched with the KV cache, left padding, sorted by prompt length,
written in Parquet shards as it goes; finished shards are skipped when a killed phase resumes."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from collapsebench.backends.scoring import device, load_tokenizer
from collapsebench.context import PhaseContext
from collapsebench.errors import UserError
from collapsebench.phases.generate import num_samples
from collapsebench.registry import prompt_sources

# Ancestral sampling: the setting of the model-collapse literature unless the config says otherwise.
DEFAULT_SAMPLING: dict[str, Any] = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0}


def generation_config(sampling: dict[str, Any] | None, max_new_tokens: int, tokenizer: Any = None) -> Any:
    """Build and validate a `GenerationConfig` from the defaults and the config's ``sampling``."""
    from transformers import GenerationConfig

    merged = {**DEFAULT_SAMPLING, "max_new_tokens": max_new_tokens, **(sampling or {})}
    if tokenizer is not None:
        merged.setdefault("pad_token_id", tokenizer.pad_token_id)
        merged.setdefault("eos_token_id", tokenizer.eos_token_id)
    try:
        config = GenerationConfig(**merged)
        config.validate(strict=True)
    except (TypeError, ValueError) as exc:
        raise UserError(f"generate.generator.sampling: {exc}") from None
    return config


def shard_seed(seed: int, shard: int) -> int:
    return (seed * 1_000_003 + shard) % 2**63


def _write_shard(rows: dict[str, list], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    part = path.with_suffix(".part")
    pq.write_table(pa.table(rows), part)
    with open(part, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(part, path)


def generate_batch(model: Any, tokenizer: Any, prompts: list[str], gen_config: Any) -> tuple[list[str], list[int]]:
    """Continue each prompt (BOS-prefixed); return the decoded continuations and their token counts."""
    import torch

    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    encoded = [[bos, *ids] for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    width = max(len(e) for e in encoded)
    ids = torch.full((len(encoded), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, e in enumerate(encoded):  # left padding
        ids[row, width - len(e):] = torch.tensor(e)
        mask[row, width - len(e):] = 1
    dev = next(model.parameters()).device
    with torch.no_grad():
        out = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), generation_config=gen_config)
    new = out[:, width:].cpu()
    texts, lengths = [], []
    for row in new.tolist():
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id)]
        texts.append(tokenizer.decode(row, skip_special_tokens=True))
        lengths.append(len(row))
    return texts, lengths


def generate(ctx: PhaseContext, batch_size: int = 32, max_new_tokens: int = 128,
             sampling: dict[str, Any] | None = None, keep_prompt: bool = True) -> dict[str, Any]:
    """Generate ``generate.num_samples`` samples with M(k) into ``samples/`` (lineage columns kept).

    ``keep_prompt``: the sample's text is prompt + continuation (else the continuation alone)."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM

    cfg = ctx.config.generate
    model_dir = ctx.model_dir()
    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).to(device()).eval()
    gen_config = generation_config(sampling, max_new_tokens, tokenizer)
    n = num_samples(ctx)
    spec = cfg.prompts
    prompts = prompt_sources.get(spec.name, key="generate.prompts")(ctx, n, tokenizer, **spec.kwargs)
    if len(prompts) != n:
        raise UserError(f"generate.prompts: '{spec.name}' returned {len(prompts)} prompts for {n} samples")
    shard_dir = ctx.out_dir / "shards"
    shard_dir.mkdir(exist_ok=True)
    n_shards = -(-n // cfg.shard_size)
    skipped, new_tokens, start = 0, 0, time.time()
    with ctx.progress("generate", n) as advance:
        for s in range(n_shards):
            path = shard_dir / f"shard_{s:05d}.parquet"
            lo, hi = s * cfg.shard_size, min(n, (s + 1) * cfg.shard_size)
            if path.exists():
                skipped += 1
                advance(hi - lo)
                continue
            torch.manual_seed(shard_seed(ctx.seed, s))
            chunk = prompts[lo:hi]  # one shard of prompts: {"prompt": [...], "parent": [...]}
            texts: list[str] = [""] * (hi - lo)
            order = sorted(range(hi - lo), key=lambda i: len(chunk["prompt"][i]))
            for b in range(0, len(order), batch_size):
                idx = order[b : b + batch_size]
                batch_prompts = [chunk["prompt"][i] for i in idx]
                outs, lengths = generate_batch(model, tokenizer, batch_prompts, gen_config)
                new_tokens += sum(lengths)
                for i, p, t in zip(idx, batch_prompts, outs):
                    texts[i] = p + t if keep_prompt else t
                advance(len(idx))
            _write_shard({
                "id": [f"g{ctx.iteration:03d}-{i:08d}" for i in range(lo, hi)],
                "origin": ["synthetic"] * (hi - lo),
                "generation": [ctx.iteration] * (hi - lo),
                "parent": chunk["parent"],
                "prompt": chunk["prompt"],
                ctx.text_field: texts,
            }, path)
    elapsed = time.time() - start
    files = sorted(str(p) for p in shard_dir.glob("shard_*.parquet"))
    samples = datasets.Dataset.from_parquet(files, cache_dir=str(ctx.cache_dir))
    samples.save_to_disk(str(ctx.out_dir / "samples"))
    for f in files:
        os.remove(f)
    shard_dir.rmdir()
    return {
        "metrics": {"samples": len(samples), "tokens_per_second": new_tokens / max(elapsed, 1e-9)},
        "shards": n_shards,
        "shards_resumed": skipped,
        "new_tokens": new_tokens,
        "seconds": round(elapsed, 3),
        "sampling": gen_config.to_diff_dict(),
    }


def check_config(config: Any, batch_size: int = 32, max_new_tokens: int = 128,
                 sampling: dict[str, Any] | None = None, keep_prompt: bool = True) -> None:
    """Build the GenerationConfig from the config's sampling parameters."""
    generation_config(sampling, max_new_tokens)


generate.check_config = check_config  # type: ignore[attr-defined]
