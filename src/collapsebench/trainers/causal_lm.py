"""Causal-LM training with `transformers.Trainer`: documents packed into blocks, resumable."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from collapsebench.api import Dataset, NonNegativeInt, PhaseContext, Tokenizer
from collapsebench.config import Config
from collapsebench.errors import UserError
from collapsebench.losses.builtin import IGNORE_INDEX
from collapsebench.models.loading import bos_id, frame_ids
from collapsebench.trainers.common import fit, keep_start_model, start_model, trainer_arguments


def encode_documents(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Each document framed as BOS + tokens + EOS (:func:`collapsebench.models.loading.frame_ids`):
    the unit the token cache keeps (its key includes the source of this function and of the
    framing, so editing either invalidates the cache)."""
    return [frame_ids(tokenizer, ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def pack_blocks(documents: list[list[int]], bos: int, block_size: int) -> tuple[list[list[int]], list[list[int]]]:
    """Pack framed documents into blocks of ``block_size`` tokens that all start with BOS, the
    context generation starts from (see :mod:`collapsebench.models.loading`); return (input ids,
    labels) per block.

    The documents are concatenated (a token that ends one document and starts the next, when BOS
    and EOS are one token, is written once) and cut in order: a block that starts at a document's
    BOS is ``block_size`` tokens of the stream; any other block is BOS + ``block_size - 1`` tokens,
    and its first prediction is left out of the loss (label -100) unless those tokens start a
    document, so BOS at position 0 is followed in training by document starts only. The remainder
    shorter than a block is dropped."""
    stream: list[int] = []
    for doc in documents:
        stream.extend(doc[1:] if stream and doc and stream[-1] == doc[0] else doc)
    blocks, labels = [], []
    pos = 0
    while pos < len(stream):
        if stream[pos] == bos:
            block, step = stream[pos : pos + block_size], block_size
        else:
            block, step = [bos, *stream[pos : pos + block_size - 1]], block_size - 1
        if len(block) < block_size:
            break
        label = list(block)
        if stream[pos] != bos and not (pos > 0 and stream[pos - 1] == bos):
            label[1] = IGNORE_INDEX  # BOS followed by the middle of a document
        blocks.append(block)
        labels.append(label)
        pos += step
    return blocks, labels


def pack(ctx: PhaseContext, dataset: Dataset, tokenizer: Tokenizer, block_size: int) -> tuple[Dataset, dict[str, Any]]:
    """Tokenise every document (framed) and pack them into blocks of ``block_size`` tokens
    (:func:`pack_blocks`), 1000 documents at a time (the remainder of each group is dropped). Real
    rows come from the token cache (:mod:`collapsebench.trainers.token_cache`)."""
    from collapsebench.trainers.token_cache import tokenize_with_cache

    field = ctx.text_field
    if field not in dataset.column_names:
        raise UserError(f"train: the curated dataset has no text column '{field}' (data.text_field)")
    if block_size < 2:
        raise UserError(f"train.trainer.block_size must be at least 2 (BOS and one token), got {block_size}")
    bos = bos_id(tokenizer)

    def group(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        blocks, labels = pack_blocks(batch["input_ids"], bos, block_size)
        return {"input_ids": blocks, "labels": labels}

    tokens, cache_info = tokenize_with_cache(ctx, dataset, tokenizer, encode_documents)
    blocks = tokens.map(group, batched=True, batch_size=1000, remove_columns=tokens.column_names,
                        cache_file_name=str(ctx.cache_dir / f"blocks{block_size}.arrow"), desc="pack")
    if len(blocks) == 0:
        raise UserError(f"train: the dataset holds fewer than {block_size} tokens (train.trainer.block_size)")
    return blocks, cache_info


def train_causal_lm(ctx: PhaseContext, dataset: Dataset, block_size: int = 128, args: dict[str, Any] | None = None,
                    keep_checkpoints: bool = False, loss: Any = None, init_from: str | None = None,
                    best_by_holdout: bool = False, untrained_iterations: NonNegativeInt = 0) -> dict[str, Any]:
    """Train M(k) on D(k): packed blocks, causal-LM loss (or ``loss``, a losses-registry spec),
    resuming from the latest checkpoint; ``init_from`` overrides ``model.init`` (multi-stage);
    ``best_by_holdout`` keeps the epoch with the lowest held-out loss
    (:mod:`collapsebench.trainers.best_checkpoint`); the first ``untrained_iterations`` iterations
    keep the model they start from unchanged (:func:`collapsebench.trainers.common.keep_start_model`)."""
    from transformers import Trainer, TrainingArguments, default_data_collator

    from collapsebench.losses.builtin import loss_reporting
    from collapsebench.trainers.best_checkpoint import BEST_ARGS, best_stats, holdout_blocks

    if ctx.iteration <= untrained_iterations:
        return keep_start_model(ctx, init_from)
    model, tokenizer, source = start_model(ctx, init_from)
    targs = trainer_arguments(TrainingArguments, args, ctx.out_dir / "checkpoints", ctx.seed,
                              BEST_ARGS if best_by_holdout else None, base_dir=ctx.config.config_dir)
    with targs.main_process_first(local=False, desc="tokenize and pack"):  # under a launcher: rank 0 writes the caches
        blocks, cache_info = pack(ctx, dataset, tokenizer, block_size)
    eval_blocks = None
    if best_by_holdout:
        bos = bos_id(tokenizer)
        eval_blocks = holdout_blocks(ctx, lambda texts: pack_blocks(encode_documents(tokenizer, texts), bos, block_size),
                                     block_size)
    loss_fn, callback = loss_reporting(loss) if loss is not None else (None, None)
    trainer = Trainer(model=model, args=targs, train_dataset=blocks, eval_dataset=eval_blocks,
                      data_collator=default_data_collator, compute_loss_func=loss_fn,
                      callbacks=[callback] if callback else None)
    tokens = len(blocks) * block_size * targs.num_train_epochs
    stats = fit(ctx, trainer, tokenizer, source, tokens, keep_checkpoints, loss_callback=callback)
    if best_by_holdout:
        best = best_stats(trainer)
        stats["metrics"].update(best.pop("metrics"))
        stats.update(best)
    stats.update(blocks=len(blocks), block_size=block_size, token_cache=cache_info,
                 loss=loss if loss is not None else "model default (cross-entropy)")
    return stats


def check_config(config: Config, kwargs: dict[str, Any]) -> None:
    """Build the TrainingArguments, the loss and (for models built from scratch) the model config."""
    from transformers import TrainingArguments

    from collapsebench.models.loading import architecture_config

    with tempfile.TemporaryDirectory() as tmp:
        from collapsebench.trainers.best_checkpoint import BEST_ARGS

        trainer_arguments(TrainingArguments, kwargs.get("args"), Path(tmp), config.seed,
                          BEST_ARGS if kwargs.get("best_by_holdout") else None, base_dir=config.config_dir, check=True)
    if kwargs.get("loss") is not None:
        from collapsebench.losses.builtin import resolve

        resolve(kwargs["loss"])
    if config.model.init == "scratch" or not config.model.base:
        architecture_config(config)
