"""What the trainers share: the default training arguments, where a model starts (``model.init``),
and the fit loop that resumes from the latest checkpoint and reports the same statistics."""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from collapsebench.api import PhaseContext, Tokenizer
from collapsebench.errors import UserError
from collapsebench.models.loading import build_model, load_for_training, run_tokenizer

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


# TrainingArguments flags that need a GPU to build (``check`` leaves them out on a machine without one).
GPU_PRECISION = ("bf16", "fp16", "tf32", "bf16_full_eval", "fp16_full_eval")


def trainer_arguments(cls: Any, args: dict[str, Any] | None, output_dir: Path, seed: int,
                      defaults: dict[str, Any] | None = None, *, base_dir: str | Path | None = None,
                      check: bool = False) -> Any:
    """``cls`` (``TrainingArguments`` or TRL's ``SFTConfig``) from :data:`DEFAULT_ARGS`, the
    trainer's own ``defaults``, the config's ``args`` and the run's seed (which always wins).

    Checkpoints fall on logging steps (:func:`align_logging`), so a run resumed from any
    checkpoint logs the same losses as an uninterrupted one.

    DeepSpeed and FSDP configurations pass through (``deepspeed``, ``fsdp``, ``fsdp_config``); their
    files resolve against ``base_dir`` (the config's folder) and are checked. Under a launcher on
    the CPU the ranks talk through gloo. ``check`` (``validate``): a DeepSpeed configuration is
    parsed but not built where DeepSpeed is not installed."""
    import torch

    from collapsebench.trainers.distributed import backend_files, check_deepspeed, per_rank_batch, world

    merged = {**DEFAULT_ARGS, "disable_tqdm": not sys.stderr.isatty(), "dataloader_pin_memory": torch.cuda.is_available(),
              **(defaults or {}), **(args or {}), "output_dir": str(output_dir), "seed": seed, "data_seed": seed}
    align_logging(merged)
    merged = per_rank_batch(backend_files(merged, Path(base_dir) if base_dir is not None else None))
    if check:
        merged = check_deepspeed(merged)
        if not torch.cuda.is_available():  # a GPU config validated on a machine without one: its precision
            merged.update({k: False for k in GPU_PRECISION if merged.get(k)})  # flags are checked where it trains
    if world()[1] > 1 and not torch.cuda.is_available():
        merged.setdefault("ddp_backend", "gloo")  # and the CPU: else accelerate sees no distributed setup (no DDP)
        merged.setdefault("use_cpu", True)
    try:
        return cls(**merged)
    except ImportError as exc:  # DeepSpeed asked for and not installed
        raise UserError(f"train.trainer.args: {exc}") from None
    except (TypeError, ValueError, OSError) as exc:
        raise UserError(f"train.trainer.args: {exc}") from None


def align_logging(args: dict[str, Any]) -> None:
    """Log at every checkpoint: a run resumed from a checkpoint restarts the Trainer's running loss
    there, so a logging window that straddled the checkpoint would average other steps than the
    uninterrupted run's. Logging every gcd(logging_steps, save_steps) steps makes every resume point
    a window boundary, and the logged losses (``train/loss``) equal the uninterrupted run's."""
    save, log = args.get("save_steps"), args.get("logging_steps")
    by_steps = args.get("save_strategy", "steps") == "steps" and args.get("logging_strategy", "steps") == "steps"
    if by_steps and isinstance(save, int) and isinstance(log, int) and save >= 1 and log >= 1 and save % log:
        args["logging_steps"] = math.gcd(save, log)


def init_source(ctx: PhaseContext, init_from: str | Path | None = None) -> str | Path | None:
    """Where this iteration's model starts (None: fresh random weights). ``init_from`` (set by the
    stage runner for every stage after the first) overrides the ``model.init`` policy."""
    if init_from is not None:
        return init_from
    m = ctx.config.model
    if m.init == "previous" and ctx.iteration > 1:
        return ctx.model_dir(ctx.iteration - 1)
    if m.init in ("base", "previous") and m.base:
        from collapsebench.models.loading import base_source

        return base_source(ctx.config)
    return None


def start_model(ctx: PhaseContext, init_from: str | Path | None) -> tuple[Any, Any, str | Path | None]:
    """(model, tokenizer, source) for this iteration or stage, following ``model.init``."""
    source = init_source(ctx, init_from)
    tokenizer = run_tokenizer(ctx, source)
    if source is None:
        return build_model(ctx.config, tokenizer, ctx.seed), tokenizer, None
    return load_for_training(source, ctx.config.model.gguf_file), tokenizer, source


def keep_start_model(ctx: PhaseContext, init_from: str | Path | None = None) -> dict[str, Any]:
    """M(k) = the model this iteration starts from, saved unchanged: no training step (a trainer's
    ``untrained_iterations``). A self-consuming chain that starts at a pretrained model evaluates
    that model itself and generates its first synthetic data with it (the OLMo self-training
    study's round 0, the CPT study's 100%-synthetic clean baseline, which "recovers the base
    model"), where the loop's iteration 1 would otherwise train on the real data first. Under a
    launcher rank 0 writes it."""
    from collapsebench.trainers.distributed import world

    model, tokenizer, source = start_model(ctx, init_from)
    if world()[0] == 0:
        model_dir = ctx.out_dir / "model"
        model.save_pretrained(str(model_dir))
        tokenizer.save_pretrained(str(model_dir))
    return {"metrics": {}, "untrained": True, "init_from": str(source) if source is not None else "scratch",
            "resumed_from": None, "parameters": sum(p.numel() for p in model.parameters()), "steps": 0}


PICKLED = ("*.bin", "*.pt", "*.pth", "*.pkl")  # the Trainer's training arguments, optimizer, scheduler, RNG state


def without_pickles(folder: Path, args: Any) -> None:
    """Keep a committed model folder free of pickles (loading a shared run must run no code): the
    weights are safetensors, the training arguments become JSON, optimizer and RNG states go."""
    for pattern in PICKLED:
        for path in folder.glob(pattern):
            path.unlink()
    (folder / "training_args.json").write_text(args.to_json_string())


def last_complete_checkpoint(folder: Path) -> str | None:
    """The latest checkpoint the Trainer finished writing: its ``trainer_state.json``, written after
    the weights, optimizer and random states, is there and parses. A phase killed or preempted while
    saving leaves a partial ``checkpoint-N`` that resuming from would fail on; it is skipped."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    if not folder.exists():
        return None
    found = []
    for path in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        state = path / "trainer_state.json"
        try:
            json.loads(state.read_text())
        except (OSError, ValueError):
            continue
        found.append((int(path.name.rsplit("-", 1)[1]), path))
    return str(max(found)[1]) if found else None


def quiet_progress(progress: type) -> type:
    """transformers' progress bar without its ``on_log``, which writes every log dict under the bar."""

    class QuietProgress(progress):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            pass

    return QuietProgress


def fit(ctx: PhaseContext, trainer: Any, tokenizer: Tokenizer, source: str | Path | None, tokens: int,
        keep_checkpoints: bool, loss_callback: Any = None) -> dict[str, Any]:
    """Train (resuming from the latest checkpoint), save model + tokenizer, return the common stats;
    with the callback of :func:`collapsebench.losses.builtin.loss_reporting`, the metrics hold what
    the loss reported over the whole training (e.g. ``tce_masked_fraction``)."""
    from transformers import PrinterCallback, ProgressCallback

    checkpoints = Path(trainer.args.output_dir)
    # the log history goes to stats.json, not the terminal: off a terminal no printer, on one the
    # progress bar without a dict of numbers printed at every logging step
    if trainer.args.disable_tqdm:
        trainer.remove_callback(PrinterCallback)
    elif trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(quiet_progress(ProgressCallback)())
    last = last_complete_checkpoint(checkpoints)
    start = time.time()
    result = trainer.train(resume_from_checkpoint=last)
    elapsed = time.time() - start
    model_dir = ctx.out_dir / "model"
    trainer.save_model(str(model_dir))  # every rank takes part (sharded states); rank 0 writes
    main = trainer.is_world_process_zero()
    if main:
        tokenizer.save_pretrained(str(model_dir))
        without_pickles(model_dir, trainer.args)
        if keep_checkpoints:
            for checkpoint in checkpoints.glob("checkpoint-*"):
                without_pickles(checkpoint, trainer.args)
    trainer.accelerator.wait_for_everyone()  # under a launcher: the model is written before any rank goes on
    if not keep_checkpoints and main:
        shutil.rmtree(checkpoints, ignore_errors=True)
    logged = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    reported = {}
    if loss_callback is not None:
        from collapsebench.losses.builtin import phase_report

        reported = phase_report(trainer.state.log_history, loss_callback)
    return {
        # the last logged loss survives a resume (the log history is restored with the checkpoint);
        # the Trainer's own mean training loss covers only the steps after a resume
        "metrics": {"loss": logged[-1] if logged else result.training_loss,
                    "tokens_per_second": tokens / max(elapsed, 1e-9), **reported},
        "init_from": str(source) if source is not None else "scratch",
        "resumed_from": Path(last).name if last else None,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "steps": result.global_step,
        # rows per optimizer step over every process: the same under a launcher that keeps the global batch
        "global_batch": trainer.args.per_device_train_batch_size * trainer.args.world_size
        * trainer.args.gradient_accumulation_steps,
        "seconds": round(elapsed, 3),
        "log_history": trainer.state.log_history,
    }
