"""What training needs when it runs as several ranks (torchrun, accelerate launch): the process
group, the per-rank batch that keeps the global batch of one process, and the checks of the
DeepSpeed and FSDP configurations that pass through ``train.trainer.args`` to
``TrainingArguments``.

The launcher's side (the command, its log, the ranks' errors) is
:mod:`collapsebench.executors.launch`; the rank's entry point is
:func:`collapsebench.phases.train.run_rank`.
"""

from __future__ import annotations

import json
import os
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

from collapsebench.config import Config
from collapsebench.errors import UserError

BACKEND_FILES = ("deepspeed", "fsdp_config")  # TrainingArguments keys that may name a JSON file
KEEP_GLOBAL_BATCH = "COLLAPSEBENCH_KEEP_GLOBAL_BATCH"  # set by the rank entry point when the launcher asks


def world() -> tuple[int, int]:
    """(rank, world size) of this process, from the launcher's environment ((0, 1) alone)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def init_process_group(timeout_min: float) -> None:
    """Join the launcher's process group (NCCL on CUDA, gloo on the CPU) with a timeout of our own:
    the default one does not apply to gloo on the CPU, where a silent rank would hang the others."""
    import torch
    import torch.distributed as dist

    _, size = world()
    if size == 1 or dist.is_initialized():
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=timeout_min))


def leave_process_group() -> None:
    """Leave the process group cleanly (the last act of a rank)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def per_rank_batch(args: dict[str, Any]) -> dict[str, Any]:
    """Under a launcher that keeps the global batch: ``args`` with the per-device batch (that of one
    process, as configured) divided by the world size, so steps and tokens per step do not change."""
    _, size = world()
    if size == 1 or os.environ.get(KEEP_GLOBAL_BATCH) != "1":
        return args
    batch = int(args["per_device_train_batch_size"])
    if batch % size:
        raise UserError(f"train.trainer.args.per_device_train_batch_size = {batch} (the batch of one process, kept "
                        f"as the global batch) is not divisible by the {size} ranks of train.launcher; choose a "
                        f"multiple of {size}, or set train.launcher.keep_global_batch: false")
    return {**args, "per_device_train_batch_size": batch // size}


def backend_files(args: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """``args`` with the DeepSpeed / FSDP configuration files resolved against the config's folder
    and checked: each exists and holds a JSON object (a mapping given inline is kept as is)."""
    out = dict(args)
    for key in BACKEND_FILES:
        value = out.get(key)
        if not isinstance(value, (str, Path)) or not str(value).endswith(".json"):
            continue  # a mapping, a bool, or fsdp's option string
        path = Path(value).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise UserError(f"train.trainer.args.{key}: file not found: {path}")
        try:
            parsed = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"train.trainer.args.{key}: {path} is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise UserError(f"train.trainer.args.{key}: {path} must hold a JSON object, got {type(parsed).__name__}")
        out[key] = str(path)
    return out


def deepspeed_missing(args: dict[str, Any]) -> bool:
    """Whether ``args`` asks for DeepSpeed and it is not installed here."""
    if not args.get("deepspeed"):
        return False
    import importlib.util

    return importlib.util.find_spec("deepspeed") is None


def check_deepspeed(args: dict[str, Any]) -> dict[str, Any]:
    """For ``validate`` on a machine without DeepSpeed: keep the checked file, drop the key from
    what ``TrainingArguments`` is built with (it imports DeepSpeed), and say so."""
    if not deepspeed_missing(args):
        return args
    warnings.warn("deepspeed is not installed here: train.trainer.args.deepspeed was parsed but not built",
                  stacklevel=2)
    return {k: v for k, v in args.items() if k != "deepspeed"}


def check_accelerate(config: Config, kwargs: dict[str, Any]) -> None:
    """``accelerate``'s own reading of the launcher's ``config_file`` (for ``validate``)."""
    file = kwargs.get("config_file")
    if file is None:
        return
    path = config.resolve_path(file)
    if not path.is_file():
        raise UserError(f"train.launcher.config_file: file not found: {path}")
    from accelerate.commands.config.config_args import load_config_from_file

    try:
        load_config_from_file(str(path))
    except (TypeError, ValueError, KeyError) as exc:
        raise UserError(f"train.launcher.config_file: {path}: {exc}") from None
