"""Causal-LM training with `transformers.Trainer`: init policy, tokenisation, packing, resume."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from collapsebench.context import PhaseContext
from collapsebench.errors import UserError

# Defaults chosen for small models on a CPU; every key can be overridden by train.trainer.args.
DEFAULT_ARGS: dict[str, Any] = {
    "per_device_train_batch_size": 16,
    "num_train_epochs": 1,
    "learning_rate": 5e-4,
    "lr_scheduler_type": "linear",
    "warmup_steps": 0,
    "logging_steps": 10,
    "save_strategy": "steps",
    "save_steps": 50,
    "save_total_limit": 1,
    "report_to": [],
    "dataloader_num_workers": 0,
}


def training_arguments(args: dict[str, Any] | None, output_dir: Path, seed: int) -> Any:
    """Build `TrainingArguments` from the defaults, the config's args and the run's seed."""
    from transformers import TrainingArguments

    import sys

    import torch

    merged = {**DEFAULT_ARGS, "disable_tqdm": not sys.stderr.isatty(), "dataloader_pin_memory": torch.cuda.is_available(),
              **(args or {}), "output_dir": str(output_dir), "seed": seed, "data_seed": seed}
    try:
        return TrainingArguments(**merged)
    except (TypeError, ValueError) as exc:
        raise UserError(f"train.trainer.args: {exc}") from None


def init_source(ctx: PhaseContext, init_from: str | Path | None = None) -> str | Path | None:
    """Where this iteration's model starts (None: fresh random weights). ``init_from`` (set by the
    stage runner for every stage after the first) overrides the ``model.init`` policy."""
    if init_from is not None:
        return init_from
    m = ctx.config.model
    if m.init == "previous" and ctx.iteration > 1:
        return ctx.model_dir(ctx.iteration - 1)
    if m.init in ("base", "previous") and m.base:
        return m.base
    return None


def load_model(source: str | Path, gguf_file: str | None) -> Any:
    from transformers import AutoModelForCausalLM

    kwargs = {"gguf_file": gguf_file} if gguf_file and not Path(source, "config.json").exists() else {}
    model = AutoModelForCausalLM.from_pretrained(str(source), **kwargs)
    if getattr(model, "hf_quantizer", None) is not None or getattr(model, "is_quantized", False):
        # GGUF weights are dequantized to full precision: train and save them as plain weights
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return model


def load_tokenizer_for(ctx: PhaseContext, source: str | Path | None) -> Any:
    from transformers import AutoTokenizer

    m = ctx.config.model
    if m.tokenizer.path:
        path, kwargs = str(ctx.config.resolve_path(m.tokenizer.path)), {}
    elif source is not None:
        gguf = m.gguf_file if not Path(source, "tokenizer_config.json").exists() else None
        path, kwargs = str(source), ({"gguf_file": gguf} if gguf else {})
    elif ctx.tokenizer_dir is not None:
        path, kwargs = str(ctx.tokenizer_dir), {}
    else:
        raise UserError("model.tokenizer.path: no tokenizer: set model.base or model.tokenizer.path")
    tok = AutoTokenizer.from_pretrained(path, **kwargs)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def build_model(ctx: PhaseContext, tokenizer: Any, block_size: int) -> Any:
    """A randomly initialised model from model.architecture (seeded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    arch = dict(ctx.config.model.architecture)
    model_type = arch.pop("model_type", None)
    if not model_type:
        raise UserError("model.architecture.model_type is required to build a model from scratch")
    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
    try:
        config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), **special, **arch)
    except (ValueError, TypeError) as exc:
        raise UserError(f"model.architecture: {exc}") from None
    torch.manual_seed(ctx.seed)
    return AutoModelForCausalLM.from_config(config)


def pack(ctx: PhaseContext, dataset: Any, tokenizer: Any, block_size: int) -> tuple[Any, dict[str, Any]]:
    """Tokenise every document (+EOS) and pack the stream into blocks of ``block_size`` tokens.
    Real rows come from the shared token cache (see :mod:`collapsebench.backends.token_cache`)."""
    from collapsebench.backends.token_cache import tokenize_with_cache

    field = ctx.text_field
    if field not in dataset.column_names:
        raise UserError(f"train: the curated dataset has no text column '{field}' (data.text_field)")
    eos = tokenizer.eos_token_id

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        return {"input_ids": [ids + [eos] for ids in tokenizer(batch[field], add_special_tokens=False)["input_ids"]]}

    def group(batch: dict[str, list]) -> dict[str, list]:
        stream = [t for ids in batch["input_ids"] for t in ids]
        usable = len(stream) // block_size * block_size
        blocks = [stream[i : i + block_size] for i in range(0, usable, block_size)]
        return {"input_ids": blocks, "labels": [list(b) for b in blocks]}

    tokens, cache_info = tokenize_with_cache(ctx, dataset, tokenizer, tokenize)
    blocks = tokens.map(group, batched=True, batch_size=1000, remove_columns=tokens.column_names,
                        cache_file_name=str(ctx.cache_dir / f"blocks{block_size}.arrow"), desc="pack")
    if len(blocks) == 0:
        raise UserError(f"train: the dataset holds fewer than {block_size} tokens (train.trainer.block_size)")
    return blocks, cache_info


def start_model(ctx: PhaseContext, init_from: str | Path | None, block_size: int) -> tuple[Any, Any, Any]:
    """(model, tokenizer, source) for this iteration or stage, following ``model.init``."""
    source = init_source(ctx, init_from)
    tokenizer = load_tokenizer_for(ctx, source)
    model = load_model(source, ctx.config.model.gguf_file) if source is not None else build_model(ctx, tokenizer, block_size)
    return model, tokenizer, source


def fit(ctx: PhaseContext, trainer: Any, tokenizer: Any, source: Any, tokens: int,
        keep_checkpoints: bool) -> dict[str, Any]:
    """Train (resuming from the latest checkpoint), save model + tokenizer, return the common stats."""
    from transformers import PrinterCallback
    from transformers.trainer_utils import get_last_checkpoint

    checkpoints = Path(trainer.args.output_dir)
    if trainer.args.disable_tqdm:  # off a terminal: the log history goes to stats.json instead of stdout
        trainer.remove_callback(PrinterCallback)
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.exists() else None
    start = time.time()
    result = trainer.train(resume_from_checkpoint=last)
    elapsed = time.time() - start
    trainer.save_model(str(ctx.out_dir / "model"))
    tokenizer.save_pretrained(str(ctx.out_dir / "model"))
    if not keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)
    logged = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    return {
        # the last logged loss survives a resume (the log history is restored with the checkpoint);
        # the Trainer's own mean training loss covers only the steps after a resume
        "metrics": {"loss": logged[-1] if logged else result.training_loss,
                    "tokens_per_second": tokens / max(elapsed, 1e-9)},
        "init_from": str(source) if source is not None else "scratch",
        "resumed_from": Path(last).name if last else None,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "steps": result.global_step,
        "seconds": round(elapsed, 3),
        "log_history": trainer.state.log_history,
    }


def train_causal_lm(ctx: PhaseContext, dataset: Any, block_size: int = 128, args: dict[str, Any] | None = None,
                    keep_checkpoints: bool = False, loss: Any = None, init_from: str | None = None) -> dict[str, Any]:
    """Train M(k) on D(k): packed blocks, causal-LM loss (or ``loss``: a losses-registry spec);
    resumes from the latest checkpoint. ``init_from`` overrides ``model.init`` (multi-stage)."""
    from transformers import Trainer, default_data_collator

    from collapsebench.backends.losses import compute_loss_func

    model, tokenizer, source = start_model(ctx, init_from, block_size)
    blocks, cache_info = pack(ctx, dataset, tokenizer, block_size)
    targs = training_arguments(args, ctx.out_dir / "checkpoints", ctx.seed)
    trainer = Trainer(model=model, args=targs, train_dataset=blocks, data_collator=default_data_collator,
                      compute_loss_func=compute_loss_func(loss) if loss is not None else None)
    tokens = len(blocks) * block_size * targs.num_train_epochs
    stats = fit(ctx, trainer, tokenizer, source, tokens, keep_checkpoints)
    stats.update(blocks=len(blocks), block_size=block_size, token_cache=cache_info,
                 loss=loss if loss is not None else "model default (cross-entropy)")
    return stats


def check_config(config: Any, block_size: int = 128, args: dict[str, Any] | None = None,
                 keep_checkpoints: bool = False, loss: Any = None, init_from: str | None = None) -> None:
    """Build the TrainingArguments and (for models built from scratch) the model config."""
    import tempfile

    from transformers import AutoConfig

    with tempfile.TemporaryDirectory() as tmp:
        training_arguments(args, Path(tmp), config.seed)
    if loss is not None:
        from collapsebench.backends.losses import resolve

        resolve(loss)
    if config.model.init == "scratch" or not config.model.base:
        arch = dict(config.model.architecture)
        try:
            AutoConfig.for_model(arch.pop("model_type", None) or "", **arch)
        except (ValueError, TypeError, KeyError) as exc:
            raise UserError(f"model.architecture: {exc}") from None


train_causal_lm.check_config = check_config  # type: ignore[attr-defined]
