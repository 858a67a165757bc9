"""The one place that loads tokenizers and models (transformers): the run's tokenizer, models
built from scratch, pretrained and GGUF weights, the start of every sequence (BOS), and the
per-phase cache through which plug-ins share a loaded model.

BOS convention (train what you generate from): every sequence a model sees starts with BOS at
position 0, the token unconditional generation starts from. BOS is the tokenizer's BOS token, or
its EOS token when it has none (the byte-level BPE trained on the real data uses one token for
both); :func:`bos_id` is the one place that decides it.

* A document is framed as BOS + tokens + EOS (:func:`frame_ids`): what scoring scores, what SFT
  trains on, and what the causal trainer packs (a token that is both the EOS of one document and
  the BOS of the next is written once).
* Every packed training block starts with BOS: a block that starts at a document boundary starts
  with that document's BOS; any other block gets a BOS in front, and the prediction right after
  it is left out of the loss, since what follows is the middle of a document
  (:func:`collapsebench.trainers.causal_lm.pack_blocks`). So the model learns the first token of a
  document from BOS at position 0, exactly the context generation gives it, and nothing else.
* Generation continues BOS + the prompt's tokens (:func:`prompt_ids`); after chat SFT it renders
  the prompt through the chat template instead, which decides the start, as it did in training.
* Tokenizers' own special-token rules are not used (``add_special_tokens=False`` everywhere), so a
  tokenizer that adds BOS itself (Llama) gets it once, from here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from collapsebench.api import Model, PhaseContext, Tokenizer
from collapsebench.config import Config
from collapsebench.errors import UserError


def quiet_libraries() -> None:
    """Silence the progress bars and notices of datasets / transformers / the hub client; the
    phases draw their own progress (rich) and the Trainer its bar on a terminal."""
    for var, value in (("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                       ("TRANSFORMERS_VERBOSITY", "error"), ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(var, value)
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging

        logging.set_verbosity_error()
        logging.disable_progress_bar()


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def bos_id(tokenizer: Tokenizer) -> int:
    """The token every sequence starts with (see the module docstring)."""
    bos = tokenizer.bos_token_id
    return int(bos if bos is not None else tokenizer.eos_token_id)


def frame_ids(tokenizer: Tokenizer, ids: list[int]) -> list[int]:
    """A document's token ids as every model sees it: BOS + tokens + EOS."""
    return [bos_id(tokenizer), *ids, int(tokenizer.eos_token_id)]


def prompt_ids(tokenizer: Tokenizer, prompts: list[str], *, chat: bool = False) -> list[list[int]]:
    """The token ids generation continues: BOS + the prompt's tokens (BOS alone for an empty
    prompt), or with ``chat`` each prompt as a user turn through the tokenizer's chat template
    (with the generation prompt), which then decides how the sequence starts."""
    if chat:
        rendered = [str(tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                      add_generation_prompt=True)) for p in prompts]
        return [list(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"]]
    bos = bos_id(tokenizer)
    return [[bos, *ids] for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]


def context_length(model: Model, default: int = 1024) -> int:
    cfg = model.config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(cfg, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return default


def load_tokenizer(path: str | Path, gguf_file: str | None = None) -> Any:
    """A tokenizer from a folder or hub name (from a GGUF file inside it when given); the pad
    token falls back to EOS, since batched scoring and generation pad."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), **({"gguf_file": gguf_file} if gguf_file else {}))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def base_source(config: Config) -> str | Path | None:
    """``model.base`` as the loaders take it: a local folder relative to the config file's folder
    (so a run started from any working directory, or a sweep cell, finds it), else the hub name."""
    base = config.model.base
    if base is None:
        return None
    local = config.resolve_path(base)
    return local if local.exists() else base


def run_tokenizer(ctx: PhaseContext, source: str | Path | None = None) -> Any:
    """The run's tokenizer: ``model.tokenizer.path``, else the model ``source``'s (default: the base
    model), else the byte-level BPE trained on the real data at iteration 0."""
    m = ctx.config.model
    source = source if source is not None else base_source(ctx.config)
    if m.tokenizer.path:
        return load_tokenizer(ctx.config.resolve_path(m.tokenizer.path))
    if source is not None:
        gguf = m.gguf_file if not Path(source, "tokenizer_config.json").exists() else None
        return load_tokenizer(source, gguf)
    if ctx.tokenizer_dir is not None:
        return load_tokenizer(ctx.tokenizer_dir)
    raise UserError("model.tokenizer.path: no tokenizer: set model.base or model.tokenizer.path "
                    "(the tokenizer trained on the real data exists only after iteration 0)")


def load_causal_lm(model_dir: str | Path, gguf_file: str | None = None) -> tuple[Any, Any]:
    """A model for inference (eval mode, on the GPU when there is one) and its tokenizer; from the
    GGUF file ``gguf_file`` of the folder when it has no transformers weights of its own."""
    from transformers import AutoModelForCausalLM

    gguf = gguf_file if gguf_file and not Path(model_dir, "config.json").exists() else None
    model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), **({"gguf_file": gguf} if gguf else {}))
    model.to(device()).eval()
    return model, load_tokenizer(model_dir, gguf)


def cached_causal_lm(ctx: PhaseContext, model_dir: str | Path) -> tuple[Any, Any]:
    """:func:`load_causal_lm` through the phase's model cache: loaded once per phase, whichever
    plug-ins (generator, validators, evaluations) ask for it. A folder without transformers
    weights (the base model, ``model.gguf_file``) is read from its GGUF file."""
    gguf = ctx.config.model.gguf_file
    loaded: tuple[Any, Any] = ctx.models.get(("causal_lm", str(model_dir)), lambda: load_causal_lm(model_dir, gguf))
    return loaded


def generation_model_dir(ctx: PhaseContext) -> str | Path:
    """The model this iteration generates with: its trained model M(k), or at iteration 1 with
    ``generate.first_from: base`` the untrained ``model.base`` (a folder or a hub name)."""
    base = base_source(ctx.config)
    if ctx.iteration == 1 and ctx.config.generate.first_from == "base" and base:
        return base
    return ctx.model_dir()


def load_for_training(source: str | Path, gguf_file: str | None) -> Any:
    """Pretrained (or previous-iteration) weights to continue training; GGUF weights are
    dequantized to full precision, and trained and saved as plain weights."""
    from transformers import AutoModelForCausalLM

    kwargs = {"gguf_file": gguf_file} if gguf_file and not Path(source, "config.json").exists() else {}
    model: Any = AutoModelForCausalLM.from_pretrained(str(source), **kwargs)
    if getattr(model, "hf_quantizer", None) is not None or getattr(model, "is_quantized", False):
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return model


def architecture_config(config: Config, tokenizer: Tokenizer | None = None) -> Any:
    """The transformers config of a model built from ``model.architecture`` (vocabulary and special
    tokens from the tokenizer when there is one)."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig

    arch = dict(config.model.architecture)
    model_type = arch.pop("model_type", None)
    if not model_type:
        raise UserError("model.architecture.model_type is required to build a model from scratch")
    if tokenizer is not None:
        arch.update(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    try:
        return AutoConfig.for_model(model_type, **arch)
    except (ValueError, TypeError, KeyError, StrictDataclassError) as exc:  # the last: a field of the wrong type
        raise UserError(f"model.architecture: {exc}") from None


def build_model(config: Config, tokenizer: Tokenizer, seed: int) -> Any:
    """A randomly initialised model from ``model.architecture``, seeded."""
    import torch
    from transformers import AutoModelForCausalLM

    model_config = architecture_config(config, tokenizer)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(model_config)
