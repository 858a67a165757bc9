"""Supervised finetuning with `trl.SFTTrainer` (trainer name ``sft``).

Data formats (``format``):
  * ``text``: the text field, each document framed as BOS + tokens + EOS (the convention of
    :mod:`collapsebench.models.loading`: the model learns the first token from BOS at position 0,
    where unconditional generation starts); real rows come from the token cache;
  * ``template``: a template over columns, e.g. ``"user: {prompt}\\nassistant: {response}"``; the
    ``completion`` placeholder (default: the last one) and everything after it is the completion,
    the rest the prompt; framed as BOS + prompt tokens + completion tokens + EOS, the prompt
    tokenised on its own exactly as generation tokenises a prompt;
  * ``chat``: ``prompt_field`` as the user turn and ``response_field`` as the assistant turn,
    rendered with the tokenizer's chat template (or ``chat_template``), which decides how the
    sequence starts (generation renders its prompts through the same template).
Text and template rows reach TRL as token ids, so TRL adds no special tokens of its own.
``completion_only_loss`` puts the loss on the completion only (template and chat formats).
``max_tokens`` drops rows whose prompt + completion exceed that many tokens (counted in stats).
``args`` pass through to `trl.SFTConfig`; defaults depend on the device (see docs/training.md).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from collapsebench.api import Dataset, PhaseContext, Tokenizer
from collapsebench.config import Config
from collapsebench.errors import UserError
from collapsebench.models.loading import frame_ids
from collapsebench.templating import compile_template, placeholders, render_template
from collapsebench.trainers.causal_lm import encode_documents
from collapsebench.trainers.common import fit, start_model, trainer_arguments
from collapsebench.trainers.token_cache import tokenize_with_cache

# SFT's own defaults over the shared ones (trainers.common.DEFAULT_ARGS).
SFT_ARGS: dict[str, Any] = {"max_length": 256}
# On a CPU, TRL's bf16 and gradient checkpointing cost several times the step time (benchmarks/).
CPU_ARGS: dict[str, Any] = {"bf16": False, "fp16": False, "gradient_checkpointing": False, "packing": False}
# On CUDA, TRL's own defaults (bf16 where supported, gradient checkpointing) are kept.
CUDA_ARGS: dict[str, Any] = {}


def sft_arguments(args: dict[str, Any] | None, output_dir: Path, seed: int, *, completion_only_loss: bool,
                  cuda: bool | None = None, base_dir: str | None = None, check: bool = False) -> Any:
    import torch
    from trl import SFTConfig

    cuda = torch.cuda.is_available() if cuda is None else cuda
    defaults = {**SFT_ARGS, **(CUDA_ARGS if cuda else CPU_ARGS), "completion_only_loss": completion_only_loss}
    return trainer_arguments(SFTConfig, args, output_dir, seed, defaults, base_dir=base_dir, check=check)


def split_template(template: str, completion: str | None) -> tuple[str, str, list[str]]:
    """(prompt template, completion template, columns) of a ``{column}`` template."""
    compile_template(template, "train.trainer.template")
    fields = placeholders(template)
    if not fields:
        raise UserError(f"train.trainer.template: no {{column}} placeholder in {template!r}")
    target = completion or fields[-1]
    marker = "{" + target + "}"
    if marker not in template:
        raise UserError(f"train.trainer.completion: '{target}' is not a placeholder of the template {template!r}")
    cut = template.index(marker)
    return template[:cut], template[cut:], fields


def to_sft_rows(ctx: PhaseContext, dataset: Dataset, tokenizer: Tokenizer, fmt: str, template: str | None,
                completion: str | None, prompt_field: str, response_field: str | None,
                completion_only_loss: bool) -> Any:
    """The dataset in a shape TRL reads: framed token ids (``text``, ``template``; with
    ``completion_mask`` when the loss is on the completion only) or prompt/completion chat turns."""
    cols = dataset.column_names
    if fmt == "text":
        if ctx.text_field not in cols:
            raise UserError(f"train: the curated dataset has no text column '{ctx.text_field}' (data.text_field)")
        tokens, _ = tokenize_with_cache(ctx, dataset, tokenizer, encode_documents)
        return tokens
    if fmt == "template":
        if not template:
            raise UserError("train.trainer.template is required with format: template")
        head, tail, fields = split_template(template, completion)
        missing = [f for f in fields if f not in cols]
        if missing:
            raise UserError(f"train.trainer.template: column(s) {', '.join(missing)} not in the curated dataset "
                            f"(columns: {', '.join(cols)})")

        def fill(batch: dict[str, list]) -> dict[str, list]:
            rows = [{f: batch[f][i] for f in fields} for i in range(len(batch[fields[0]]))]
            prompts = tokenizer([render_template(head, r, "train.trainer.template") for r in rows],
                                add_special_tokens=False)["input_ids"]
            completions = tokenizer([render_template(tail, r, "train.trainer.template") for r in rows],
                                    add_special_tokens=False)["input_ids"]
            out = {"input_ids": [frame_ids(tokenizer, p + c) for p, c in zip(prompts, completions)]}
            if completion_only_loss:  # BOS and the prompt: 0; the completion and EOS: 1
                out["completion_mask"] = [[0] * (1 + len(p)) + [1] * (len(c) + 1) for p, c in zip(prompts, completions)]
            return out

        return dataset.map(fill, batched=True, batch_size=1000, remove_columns=cols,
                           cache_file_name=str(ctx.cache_dir / "sft_rows.arrow"))
    if fmt == "chat":
        response = response_field or ctx.text_field
        for key, col in (("prompt_field", prompt_field), ("response_field", response)):
            if col not in cols:
                raise UserError(f"train.trainer.{key}: column '{col}' not in the curated dataset ({', '.join(cols)})")

        def turns(batch: dict[str, list]) -> dict[str, list]:
            return {"prompt": [[{"role": "user", "content": p}] for p in batch[prompt_field]],
                    "completion": [[{"role": "assistant", "content": r}] for r in batch[response]]}

        return dataset.map(turns, batched=True, batch_size=1000, remove_columns=cols,
                           cache_file_name=str(ctx.cache_dir / "sft_rows.arrow"))
    raise UserError(f"train.trainer.format must be one of text, template, chat; got {fmt!r}")


def drop_long(ctx: PhaseContext, rows: Any, tokenizer: Tokenizer, max_tokens: int) -> Any:
    """Rows whose prompt + completion fit in ``max_tokens`` tokens (without BOS and EOS; chat rows
    as the tokenizer's chat template renders them)."""

    def length(batch: dict[str, list]) -> list[bool]:
        if "input_ids" in batch:
            return [len(ids) - 2 <= max_tokens for ids in batch["input_ids"]]
        texts = [tokenizer.apply_chat_template(p + c, tokenize=False) for p, c in zip(batch["prompt"], batch["completion"])]
        return [len(ids) <= max_tokens for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    return rows.filter(length, batched=True, batch_size=1000, cache_file_name=str(ctx.cache_dir / "sft_kept.arrow"))


def trains_on_chat(kwargs: dict[str, Any]) -> bool:
    """The trainer's declared ``chat`` hook: with ``format: chat`` it trains on chat turns, so the
    model is prompted through the chat template too."""
    return kwargs.get("format") == "chat"


def train_sft(ctx: PhaseContext, dataset: Dataset, format: str = "text", template: str | None = None,
              completion: str | None = None, prompt_field: str = "prompt", response_field: str | None = None,
              completion_only_loss: bool = False, max_tokens: int | None = None, chat_template: str | None = None,
              loss: Any = None, args: dict[str, Any] | None = None, keep_checkpoints: bool = False,
              init_from: str | None = None) -> dict[str, Any]:
    """Finetune M(k) on D(k) with `trl.SFTTrainer`; resumes from the latest checkpoint."""
    import pyarrow.compute as pc
    from trl import SFTTrainer

    from collapsebench.losses.builtin import loss_reporting

    sargs = sft_arguments(args, ctx.out_dir / "checkpoints", ctx.seed, completion_only_loss=completion_only_loss,
                          base_dir=ctx.config.config_dir)
    model, tokenizer, source = start_model(ctx, init_from)
    if chat_template:
        tokenizer.chat_template = chat_template
    if format == "chat" and not tokenizer.chat_template:
        raise UserError("train.trainer.chat_template: the tokenizer has no chat template; give one")
    rows = to_sft_rows(ctx, dataset, tokenizer, format, template, completion, prompt_field, response_field,
                       completion_only_loss)
    n_rows = len(rows)
    if max_tokens is not None:
        rows = drop_long(ctx, rows, tokenizer, max_tokens)
    if len(rows) == 0:
        raise UserError(f"train.trainer.max_tokens: every one of the {n_rows} rows is longer than {max_tokens} tokens")
    loss_fn, callback = loss_reporting(loss) if loss is not None else (None, None)
    trainer = SFTTrainer(model=model, args=sargs, train_dataset=rows, processing_class=tokenizer,
                         compute_loss_func=loss_fn, callbacks=[callback] if callback else None)
    train_rows: Any = trainer.train_dataset
    lengths = pc.list_value_length(train_rows.data.column("input_ids"))
    tokens = int(pc.sum(lengths).as_py() or 0) * sargs.num_train_epochs
    stats = fit(ctx, trainer, tokenizer, source, tokens, keep_checkpoints, loss_callback=callback)
    stats.update(rows=len(rows), dropped_too_long=n_rows - len(rows), format=format,
                 completion_only_loss=completion_only_loss, packing=sargs.packing,
                 bf16=bool(sargs.bf16), gradient_checkpointing=sargs.gradient_checkpointing,
                 loss=loss if loss is not None else "cross-entropy")
    stats["metrics"]["dropped_too_long"] = n_rows - len(rows)
    return stats


def check_config(config: Config, kwargs: dict[str, Any]) -> None:
    """Build the SFTConfig; check the template and the loss."""
    with tempfile.TemporaryDirectory() as tmp:
        sft_arguments(kwargs.get("args"), Path(tmp), config.seed,
                      completion_only_loss=bool(kwargs.get("completion_only_loss", False)),
                      base_dir=config.config_dir, check=True)
    if kwargs.get("template"):
        split_template(kwargs["template"], kwargs.get("completion"))
    if kwargs.get("loss") is not None:
        from collapsebench.losses.builtin import resolve

        resolve(kwargs["loss"])
