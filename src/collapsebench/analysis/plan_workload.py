"""What `plan` counts from the config alone: the model's size and shape, the real data's documents
and tokens, and each phase's tokens, FLOPs and disk, iteration by iteration (:func:`workload`).

What only a plug-in knows it declares at registration (:mod:`collapsebench.registry`): a data
source its ``plan`` hook (documents, tokens per document), a regime its ``plan`` hook (the rows of
D(k)), an evaluation the model passes it ``scores`` (over the held-out data, the samples), a
trainer the ``data`` it works on (vectors: a toy setting, no language model). Nothing here tests
a plug-in's name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collapsebench.config import PHASES, Config
from collapsebench.errors import UserError
from collapsebench.registry import data_sources, declared, evaluations, hook, regimes, trainers

CHARS_PER_TOKEN = 4.0  # English text under a BPE vocabulary of tens of thousands


# ------------------------------------------------------------------------------------ the model

@dataclass
class Model:
    params: float
    layers: int
    width: int  # d_model
    kv_width: int  # key/value width per layer (heads x head size, fewer with grouped queries)
    context: int
    bytes_per_param: int = 4  # saved in float32 unless the base model says otherwise


def _first(cfg: dict[str, Any], *keys: str, default: Any = None) -> Any:
    return next((cfg[k] for k in keys if cfg.get(k) is not None), default)


def model_size(arch: dict[str, Any], vocab: int | None, params: float | None = None) -> Model:
    """Parameters and shape of a transformers config dict (GPT-2 and Llama-style layouts; other
    decoders by the usual 12·layers·width² + embeddings)."""
    d = int(_first(arch, "n_embd", "hidden_size", "d_model", default=0))
    layers = int(_first(arch, "n_layer", "num_hidden_layers", "num_layers", default=0))
    heads = int(_first(arch, "n_head", "num_attention_heads", default=1))
    kv_heads = int(_first(arch, "num_key_value_heads", default=heads))
    vocab = int(vocab or _first(arch, "vocab_size", default=0))
    context = int(_first(arch, "n_positions", "max_position_embeddings", "n_ctx", default=1024))
    if not d or not layers:
        if params is None:
            raise UserError("plan: cannot read the model's width and depth from its config; give --params")
        return Model(params, layers or 1, d or 1, d or 1, context)
    kv = kv_heads * (d // max(heads, 1))
    if params is None:
        if arch.get("model_type") == "gpt2":
            inner = int(arch.get("n_inner") or 4 * d)
            params = vocab * d + context * d + layers * (4 * d * d + 2 * d * inner + 9 * d + inner) + 2 * d
        elif "intermediate_size" in arch:  # Llama, Mistral, Qwen2: q, o; k, v (grouped); gate, up, down
            inner = int(arch["intermediate_size"])
            tied = arch.get("tie_word_embeddings", False)
            params = vocab * d * (1 if tied else 2) + layers * (2 * d * d + 2 * d * kv + 3 * d * inner + 2 * d) + d
        else:
            params = vocab * d + layers * 12 * d * d
    dtype = str(arch.get("torch_dtype") or arch.get("dtype") or "float32")
    return Model(float(params), layers, d, kv, context, 2 if dtype in ("bfloat16", "float16") else 4)


def size_in_name(name: str) -> float | None:
    """Parameters a hub name states (``facebook/opt-125m``, ``SmolLM2-135M``, ``Qwen2.5-0.5B``)."""
    found = re.findall(r"(?<![\w.])(\d+(?:\.\d+)?)([mMbB])(?![a-zA-Z])", name.replace("_", "-"))
    if not found:
        return None
    number, unit = found[-1]
    return float(number) * (1e6 if unit in "mM" else 1e9)


def config_model(config: Config, params: float | None) -> tuple[Model | None, str]:
    """The run's model and where its size comes from (None when the trainer works on vectors: the
    toy settings train no language model)."""
    m = config.model
    if trainers.entry(config.train.trainer.name, key="train.trainer").data == "vector":
        return None, "a toy setting: no language model"
    if m.base:
        path = config.resolve_path(m.base) / "config.json"
        if path.is_file():
            return model_size(json.loads(path.read_text()), None, params), f"{path}"
        named = params or size_in_name(m.base)
        if named is None:
            raise UserError(f"plan: model.base '{m.base}' is not a local folder with a config.json and its name "
                            "states no size; give --params")
        # depth and width unknown: the attention term is left out; 1024 positions assumed
        return Model(named, 0, 0, 0, 1024, 2), "--params" if params else f"the size in the name '{m.base}'"
    return model_size(m.architecture, m.tokenizer.vocab_size, params), "model.architecture"


# ------------------------------------------------------------------------------------ the data

def source_documents(config: Config, chars_per_token: float) -> tuple[int | None, float | None, str]:
    """(documents, tokens per document, how they were estimated) of the real data: the size the
    config declares (``data.size``, as published), else the data source's declared ``plan`` hook,
    with its bound arguments; unknown without either, or when the hook returns None."""
    src, size = config.data.source, config.data.size
    entry = data_sources.entry(src.name, key="data.source")
    found = None
    if size is not None:
        found = (size.documents, size.per_document, "data.size" + (f": {size.cite}" if size.cite else ""))
    elif entry.plan is not None:
        found = hook(entry.plan)(config, data_sources.bind(src.name, src.kwargs, key="data.source"), chars_per_token)
    if found is None:
        return None, None, (f"unknown for data source '{src.name}': declare data.size (documents, tokens), or give "
                            "--documents and --tokens-per-document")
    documents, per_doc, how = found
    return (None if documents is None else int(documents)), (None if per_doc is None else float(per_doc)), str(how)


# ------------------------------------------------------------------------------------ the workload

@dataclass
class Phase:
    """One phase over the run: tokens per iteration, FLOPs, time, disk. None where unknown (the
    data's size is, so every figure that scales with it): never a 0 that reads as free."""

    name: str
    tokens: list[float] | None = field(default_factory=list)  # per iteration (curate: documents)
    flops: list[float] | None = field(default_factory=list)
    disk_gb: float | None = 0.0
    seconds: float | None = None
    note: str = ""


def curated_rows(config: Config) -> Callable[[int, int, int], float]:
    """|D(k)| as a function of (k, real rows, samples per iteration): the regime's declared ``plan``
    hook with its bound arguments; a regime that declares none keeps the real size."""
    spec = config.curate.regime
    entry = regimes.entry(spec.name, key="curate.regime")
    if entry.plan is None:
        return lambda k, real, samples: float(real)
    estimate, kwargs = hook(entry.plan), regimes.bind(spec.name, spec.kwargs, key="curate.regime")
    return lambda k, real, samples: estimate(kwargs, real, samples, k)


def scoring_passes(config: Config) -> tuple[int, int]:
    """(passes over the holdout, passes over the samples) of the evaluations: what each declares it
    ``scores`` with its model."""
    holdout = samples = 0
    for spec in config.evaluate.evaluations:
        entry = declared(evaluations, spec.name)
        scores = entry.scores if entry else ()
        holdout, samples = holdout + ("holdout" in scores), samples + ("samples" in scores)
    return holdout, samples


def workload(config: Config, model: Model | None, documents: int | None, per_doc: float | None,
             chars_per_token: float) -> tuple[list[Phase], dict[str, Any]]:
    """Tokens, FLOPs and disk of every phase, iteration by iteration; all unknown (None) while the
    documents, or a language model's tokens per document, are."""
    n_iter = config.iterations
    docs = documents or 0
    if config.data.max_documents:
        docs = min(docs, config.data.max_documents)
    holdout = config.data.holdout_rows(docs)
    real = max(docs - holdout, 0)
    per_doc = per_doc or 0.0
    gen = config.generate
    samples = gen.num_samples or real
    max_new = int(gen.generator.kwargs.get("max_new_tokens", 128))
    sample_len = min(float(max_new), per_doc) if per_doc else float(max_new)
    args = config.train.trainer.kwargs.get("args") or {}
    epochs = float(args.get("num_train_epochs", 1))
    block = float(config.train.trainer.kwargs.get("block_size") or per_doc or 1)  # the length trained on
    passes = scoring_passes(config)
    regime = curated_rows(config)
    phases = {p: Phase(p) for p in PHASES}
    n = model.params if model else 0.0
    attn = 4.0 * model.layers * model.width if model else 0.0  # per token, per position of context

    def attention(tokens: float, length: float) -> float:  # sum over a sequence of the context it attends to
        return attn * tokens * length / 2

    tokens: dict[str, list[float]] = {p: [] for p in PHASES}
    flops: dict[str, list[float]] = {p: [] for p in PHASES}
    for k in range(1, n_iter + 1):
        rows = regime(k, real, samples)
        trained = rows * per_doc * epochs
        generated = samples * gen.oversample * sample_len
        scored = passes[0] * holdout * per_doc + passes[1] * samples * sample_len
        tokens["curate"].append(rows)
        flops["curate"].append(0.0)
        tokens["train"].append(trained)
        flops["train"].append(6 * n * trained + 3 * attention(trained, block))
        tokens["generate"].append(generated)
        flops["generate"].append(2 * n * generated + attention(generated, sample_len))
        tokens["evaluate"].append(scored)
        flops["evaluate"].append(2 * n * scored + attention(scored, per_doc))
    if model is None:  # a toy setting: rows, not tokens
        flops = {p: [0.0] * n_iter for p in PHASES}
        tokens["train"] = list(tokens["curate"])
        tokens["generate"] = [float(samples)] * n_iter
        tokens["evaluate"] = [float(holdout + samples)] * n_iter
    for name, p in phases.items():
        p.tokens, p.flops = tokens[name], flops[name]
    bytes_text = per_doc * chars_per_token * 1.5 if model else 8.0 * 64  # Arrow rows with lineage columns
    model_gb = n * (model.bytes_per_param if model else 4) / 1e9
    phases["curate"].disk_gb = (docs + sum(tokens["curate"])) * bytes_text / 1e9
    phases["train"].disk_gb = n_iter * model_gb
    phases["train"].note = f"checkpoints: {4 * model_gb:.3g} GB while an iteration trains (weights + Adam)"
    phases["generate"].disk_gb = n_iter * samples * gen.oversample * bytes_text / 1e9
    phases["evaluate"].disk_gb = n_iter * (holdout + samples) * 40 / 1e9  # per-document rows
    data = {"documents": documents, "real": real, "holdout": holdout, "tokens_per_document": per_doc,
            "samples_per_iteration": samples, "token_cache_gb": real * per_doc * 4 / 1e9}
    if documents is None or (model is not None and not per_doc):
        for p in phases.values():
            p.tokens = p.flops = p.disk_gb = None
        data.update(real=None, holdout=None, tokens_per_document=per_doc or None, token_cache_gb=None,
                    samples_per_iteration=gen.num_samples)
    return list(phases.values()), data


def timed(phases: list[Phase], rate: dict[str, float], fixed: dict[str, float] | None = None,
          documents: int = 0) -> None:
    """Seconds of each phase: its fixed cost per iteration plus its FLOPs at ``rate`` FLOP/s (curate,
    when calibrated: rows at a rows-per-second rate, plus the preparation of the real data once)."""
    fixed = fixed or {}
    for p in phases:
        r = rate.get(p.name)
        if not r or p.tokens is None or p.flops is None:
            p.seconds = None
        elif p.name == "curate":
            prepare = fixed.get("prepare", 0.0) + documents / rate["prepare"] if "prepare" in rate else 0.0
            p.seconds = prepare + sum(fixed.get(p.name, 0.0) + t / r for t in p.tokens)
        else:
            p.seconds = sum(fixed.get(p.name, 0.0) + f / r for f in p.flops)
