"""Causal-LM training with `transformers.Trainer`: documents packed into blocks, resumable."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from collapsebench.api import Dataset, PhaseContext, Tokenizer
from collapsebench.config import Config
from collapsebench.errors import UserError
from collapsebench.trainers.common import fit, start_model, trainer_arguments


def encode_documents(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Each document's tokens (no special tokens) followed by EOS: the unit the token cache keeps
    (its key includes this function's source, so editing it invalidates the cache)."""
    eos = tokenizer.eos_token_id
    return [ids + [eos] for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def pack(ctx: PhaseContext, dataset: Dataset, tokenizer: Tokenizer, block_size: int) -> tuple[Dataset, dict[str, Any]]:
    """Tokenise every document (+EOS) and pack the stream into blocks of ``block_size`` tokens,
    1000 documents at a time (the remainder of each group is dropped). Real rows come from the
    token cache (:mod:`collapsebench.trainers.token_cache`)."""
    from collapsebench.trainers.token_cache import tokenize_with_cache

    field = ctx.text_field
    if field not in dataset.column_names:
        raise UserError(f"train: the curated dataset has no text column '{field}' (data.text_field)")

    def group(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        stream = [t for ids in batch["input_ids"] for t in ids]
        usable = len(stream) // block_size * block_size
        blocks = [stream[i : i + block_size] for i in range(0, usable, block_size)]
        return {"input_ids": blocks, "labels": [list(b) for b in blocks]}

    tokens, cache_info = tokenize_with_cache(ctx, dataset, tokenizer, encode_documents)
    blocks = tokens.map(group, batched=True, batch_size=1000, remove_columns=tokens.column_names,
                        cache_file_name=str(ctx.cache_dir / f"blocks{block_size}.arrow"), desc="pack")
    if len(blocks) == 0:
        raise UserError(f"train: the dataset holds fewer than {block_size} tokens (train.trainer.block_size)")
    return blocks, cache_info


def train_causal_lm(ctx: PhaseContext, dataset: Dataset, block_size: int = 128, args: dict[str, Any] | None = None,
                    keep_checkpoints: bool = False, loss: Any = None, init_from: str | None = None) -> dict[str, Any]:
    """Train M(k) on D(k): packed blocks, causal-LM loss (or ``loss``, a losses-registry spec),
    resuming from the latest checkpoint; ``init_from`` overrides ``model.init`` (multi-stage)."""
    from transformers import Trainer, TrainingArguments, default_data_collator

    from collapsebench.losses.builtin import compute_loss_func

    model, tokenizer, source = start_model(ctx, init_from)
    targs = trainer_arguments(TrainingArguments, args, ctx.out_dir / "checkpoints", ctx.seed,
                              base_dir=ctx.config.config_dir)
    with targs.main_process_first(local=False, desc="tokenize and pack"):  # under a launcher: rank 0 writes the caches
        blocks, cache_info = pack(ctx, dataset, tokenizer, block_size)
    trainer = Trainer(model=model, args=targs, train_dataset=blocks, data_collator=default_data_collator,
                      compute_loss_func=compute_loss_func(loss) if loss is not None else None)
    tokens = len(blocks) * block_size * targs.num_train_epochs
    stats = fit(ctx, trainer, tokenizer, source, tokens, keep_checkpoints)
    stats.update(blocks=len(blocks), block_size=block_size, token_cache=cache_info,
                 loss=loss if loss is not None else "model default (cross-entropy)")
    return stats


def check_config(config: Config, kwargs: dict[str, Any]) -> None:
    """Build the TrainingArguments, the loss and (for models built from scratch) the model config."""
    from transformers import TrainingArguments

    from collapsebench.models.loading import architecture_config

    with tempfile.TemporaryDirectory() as tmp:
        trainer_arguments(TrainingArguments, kwargs.get("args"), Path(tmp), config.seed, base_dir=config.config_dir,
                          check=True)
    if kwargs.get("loss") is not None:
        from collapsebench.losses.builtin import resolve

        resolve(kwargs["loss"])
    if config.model.init == "scratch" or not config.model.base:
        architecture_config(config)
