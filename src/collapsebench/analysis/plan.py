"""`collapsebench plan CONFIG`: what a run will cost, before any GPU is booked.

Per phase and in total: the tokens trained, generated and evaluated per iteration and in the run,
their FLOPs, the hours and GPU-hours at a throughput, and the disk the run fills. No torch and no
data are loaded: the counts come from the config alone.

* Model size N: from ``model.architecture`` (models built from scratch, with the run's tokenizer
  vocabulary) or the base model folder's ``config.json``; ``--params`` when neither is readable.
* Tokens: documents and tokens per document from the data source (the built-in language's
  expected document length, from its knobs; a local text file's documents counted, at
  ``--chars-per-token`` characters a token), D(k) from the regime, samples from ``generate``.
* FLOPs: training 6·N·D (D = tokens trained), generation 2·N per token processed plus the
  attention over the KV cache (4·layers·width per token per position of context), scoring
  (evaluations that load a model) 2·N·D plus attention.
* Time: FLOPs / (GPUs x peak x MFU) with each phase's MFU (``--mfu``), or, with ``--calibrate``,
  from this machine: the config's iteration 1 runs at two reduced sizes (:data:`CALIBRATION`), and
  each phase's seconds are fitted as ``fixed + FLOPs / rate`` (two points, two unknowns; a phase
  that took no longer with more work is all fixed cost), which also corrects the token estimates
  by the tokens the runs counted.

Estimates, not promises: ``benchmarks/plan_calibration.py`` compares the calibrated CPU plan of
the quickstart with its measured phase times.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from collapsebench.config import PHASES, Config, Spec
from collapsebench.errors import UserError
from collapsebench.layout import RunLayout

# peak dense bf16 tensor FLOP/s (SXM parts) and memory per GPU
GPUS: dict[str, dict[str, float]] = {
    "a100": {"tflops": 312.0, "memory_gb": 80.0},
    "h100": {"tflops": 989.0, "memory_gb": 80.0},
    "h200": {"tflops": 989.0, "memory_gb": 141.0},
}
# model FLOPs utilisation assumed per phase: training and batched scoring are compute-bound;
# sampling token by token is bound by memory bandwidth
MFU = {"curate": 0.0, "train": 0.40, "generate": 0.10, "evaluate": 0.30}
CALIBRATION = (0.2, 0.6)  # fractions of the real data the two calibration runs use (far apart: a steadier slope)
CHARS_PER_TOKEN = 4.0  # English text under a BPE vocabulary of tens of thousands
SCAN_BYTES = 64 * 2**20  # a local file is read this far to count documents, then extrapolated


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


TOY_TRAINERS = ("gaussian_mle", "gmm", "kde", "vae")


def size_in_name(name: str) -> float | None:
    """Parameters a hub name states (``facebook/opt-125m``, ``SmolLM2-135M``, ``Qwen2.5-0.5B``)."""
    found = re.findall(r"(?<![\w.])(\d+(?:\.\d+)?)([mMbB])(?![a-zA-Z])", name.replace("_", "-"))
    if not found:
        return None
    number, unit = found[-1]
    return float(number) * (1e6 if unit in "mM" else 1e9)


def config_model(config: Config, params: float | None) -> tuple[Model | None, str]:
    """The run's model and where its size comes from (None for the toy settings, which train no
    language model)."""
    m = config.model
    if config.train.trainer.name in TOY_TRAINERS:
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

def truncated_geometric_mean(lo: int, hi: int, stop: float) -> float:
    ks = range(lo, hi + 1)
    weights = [(1 - stop) ** (k - lo) * stop for k in ks]
    return sum(k * w for k, w in zip(ks, weights)) / sum(weights)


def count_documents(path: Path, sample_by: str) -> tuple[int, float]:
    """(documents, characters per document) of a text file, from up to :data:`SCAN_BYTES`."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(SCAN_BYTES).decode("utf-8", errors="replace")
    if sample_by == "document":
        return 1, float(size)
    parts = [p for p in (head.split("\n\n") if sample_by == "paragraph" else head.splitlines()) if p.strip()]
    scale = size / max(len(head.encode()), 1)
    n = max(1, round(len(parts) * scale))
    return n, sum(len(p) for p in parts) / max(len(parts), 1)


def source_documents(config: Config, chars_per_token: float) -> tuple[int | None, float | None, str]:
    """(documents, tokens per document, how they were estimated) of the real data."""
    src: Spec = config.data.source
    kw = src.kwargs
    if src.name == "ground_truth_language":
        from collapsebench.sources.language import language_spec

        spec = language_spec({k: v for k, v in kw.items() if k != "n_documents"})
        words = truncated_geometric_mean(spec.words_per_sentence_min, spec.words_per_sentence_max,
                                         spec.words_per_sentence_stop)
        sentences = truncated_geometric_mean(spec.sentences_per_doc_min, spec.sentences_per_doc_max,
                                             spec.sentences_per_doc_stop)
        return int(kw.get("n_documents", 2000)), sentences * (words + 1), "the language's expected document length"
    if src.name in ("gaussian", "gaussian_mixture", "digits"):  # vectors: rows, no tokens
        return int(kw.get("n") or (1797 if src.name == "digits" else 1000)), None, "rows of vectors"
    if src.name == "local" and isinstance(kw.get("path"), str) and Path(kw["path"]).suffix in (".txt", ""):
        path = config.resolve_path(kw["path"])
        if path.is_file():
            n, chars = count_documents(path, kw.get("sample_by", "paragraph"))
            return n, chars / chars_per_token, f"counted in {path.name}, {chars_per_token:g} characters a token"
    return None, None, f"unknown for data source '{src.name}' (give --documents and --tokens-per-document)"


# ------------------------------------------------------------------------------------ the workload

@dataclass
class Phase:
    """One phase over the run: tokens per iteration, FLOPs, time, disk."""

    name: str
    tokens: list[float] = field(default_factory=list)  # per iteration (curate: documents)
    flops: list[float] = field(default_factory=list)
    disk_gb: float = 0.0
    seconds: float | None = None
    note: str = ""


def curated_rows(config: Config, k: int, real: int, samples: int) -> float:
    """|D(k)| by regime (regimes not modelled here keep the real size)."""
    spec, kw = config.curate.regime, config.curate.regime.kwargs
    size = kw.get("size") or real
    if spec.name == "replace":
        if k == 1:
            return size
        alpha = float(kw.get("alpha", 1.0))
        return size * (1 + alpha) if kw.get("size_policy") == "real_plus_synthetic" else size
    if spec.name == "accumulate":
        return real + (k - 1) * samples
    if spec.name == "grow":
        amount = kw.get("rows") or float(kw.get("fraction", 1.0)) * real
        return real * bool(kw.get("keep_real", True)) + (k - 1) * amount
    return float(size)


def scoring_passes(config: Config) -> tuple[int, int]:
    """(passes over the holdout, passes over the samples) of the evaluations that load a model."""
    from collapsebench.registry import evaluations

    holdout = samples = 0
    for spec in config.evaluate.evaluations:
        entry = evaluations.entry(spec.name) if spec.name in evaluations else None
        if entry is None or not entry.torch:
            continue
        if spec.name == "reference_perplexity":
            samples += 1
        elif spec.name == "perplexity":
            holdout += 1
        else:  # language_kl, calibration, knowledge, ...: about one pass over each
            holdout, samples = holdout + 1, samples + 1
    return holdout, samples


@dataclass
class Plan:
    config: str
    iterations: int
    model: dict[str, Any] | None
    data: dict[str, Any]
    phases: list[Phase]
    hardware: dict[str, Any]
    calibration: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def workload(config: Config, model: Model | None, documents: int | None, per_doc: float | None,
             chars_per_token: float) -> tuple[list[Phase], dict[str, Any]]:
    """Tokens, FLOPs and disk of every phase, iteration by iteration."""
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
    phases = {p: Phase(p) for p in PHASES}
    n = model.params if model else 0.0
    attn = 4.0 * model.layers * model.width if model else 0.0  # per token, per position of context

    def attention(tokens: float, length: float) -> float:  # sum over a sequence of the context it attends to
        return attn * tokens * length / 2

    for k in range(1, n_iter + 1):
        rows = curated_rows(config, k, real, samples)
        trained = rows * per_doc * epochs
        generated = samples * gen.oversample * sample_len
        scored = passes[0] * holdout * per_doc + passes[1] * samples * sample_len
        phases["curate"].tokens.append(rows)
        phases["curate"].flops.append(0.0)
        phases["train"].tokens.append(trained)
        phases["train"].flops.append(6 * n * trained + 3 * attention(trained, block))
        phases["generate"].tokens.append(generated)
        phases["generate"].flops.append(2 * n * generated + attention(generated, sample_len))
        phases["evaluate"].tokens.append(scored)
        phases["evaluate"].flops.append(2 * n * scored + attention(scored, per_doc))
    if model is None:  # a toy setting: rows, not tokens
        for p in phases.values():
            p.flops = [0.0] * n_iter
        phases["train"].tokens = list(phases["curate"].tokens)
        phases["generate"].tokens = [float(samples)] * n_iter
        phases["evaluate"].tokens = [float(holdout + samples)] * n_iter
    bytes_text = per_doc * chars_per_token * 1.5 if model else 8.0 * 64  # Arrow rows with lineage columns
    model_gb = n * (model.bytes_per_param if model else 4) / 1e9
    phases["curate"].disk_gb = (docs + sum(phases["curate"].tokens)) * bytes_text / 1e9
    phases["train"].disk_gb = n_iter * model_gb
    phases["train"].note = f"checkpoints: {4 * model_gb:.3g} GB while an iteration trains (weights + Adam)"
    phases["generate"].disk_gb = n_iter * samples * gen.oversample * bytes_text / 1e9
    phases["evaluate"].disk_gb = n_iter * (holdout + samples) * 40 / 1e9  # per-document rows
    data = {"documents": documents, "real": real, "holdout": holdout, "tokens_per_document": per_doc,
            "samples_per_iteration": samples, "token_cache_gb": real * per_doc * 4 / 1e9}
    return list(phases.values()), data


def timed(phases: list[Phase], rate: dict[str, float], fixed: dict[str, float] | None = None,
          documents: int = 0) -> None:
    """Seconds of each phase: its fixed cost per iteration plus its FLOPs at ``rate`` FLOP/s (curate,
    when calibrated: rows at a rows-per-second rate, plus the preparation of the real data once)."""
    fixed = fixed or {}
    for p in phases:
        r = rate.get(p.name)
        if not r:
            p.seconds = None
        elif p.name == "curate":
            prepare = fixed.get("prepare", 0.0) + documents / rate["prepare"] if "prepare" in rate else 0.0
            p.seconds = prepare + sum(fixed.get(p.name, 0.0) + t / r for t in p.tokens)
        else:
            p.seconds = sum(fixed.get(p.name, 0.0) + f / r for f in p.flops)


# ------------------------------------------------------------------------------------ calibration

def calibrate(config_path: str, overrides: list[str], config: Config, documents: int, per_doc: float,
              model: Model | None, chars_per_token: float) -> tuple[dict[str, float], dict[str, float], float, dict]:
    """Run iteration 1 at the fractions of :data:`CALIBRATION` (inline, this machine, a cold token
    cache); fit ``seconds = fixed + work / rate`` per phase. Returns (rate, fixed, token scale, record)."""
    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="collapsebench-plan-") as tmp:
        for i, fraction in enumerate(CALIBRATION):
            out = Path(tmp) / f"run{i}"
            small = calibration_overrides(config, fraction, documents)
            cmd = [sys.executable, "-m", "collapsebench", "run", config_path, *overrides, *small, "iterations=1",
                   f"output_dir={out}", "executor=inline", "tracking=[]"]
            env = {**os.environ, "COLLAPSEBENCH_CACHE": str(Path(tmp) / f"cache{i}"), "COLLAPSEBENCH_PROGRESS": "0"}
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise UserError(f"plan --calibrate: the calibration run failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
            points.append(measure(out, fraction, documents, per_doc, model, chars_per_token))
    measured_per_doc = points[-1]["tokens_per_document"]
    scale = measured_per_doc / per_doc if per_doc and measured_per_doc else 1.0
    rate, fixed = {}, {}
    for phase in ("prepare", *PHASES):
        (w0, s0), (w1, s1) = ((p["work"][phase], p["seconds"][phase]) for p in points)
        slope = (s1 - s0) / (w1 - w0) if w1 > w0 else 0.0
        if slope <= 0:  # more work took no longer: the phase's time is its fixed cost
            rate[phase], fixed[phase] = math.inf, (s0 + s1) / 2
            continue
        rate[phase] = 1 / slope
        fixed[phase] = max(s0 - slope * w0, 0.0)
    return rate, fixed, scale, {"points": points, "fractions": list(CALIBRATION)}


def calibration_overrides(config: Config, fraction: float, documents: int) -> list[str]:
    """The overrides that shrink the real data (and what follows from it) to ``fraction``."""
    n = max(int(documents * fraction), 20)
    out = ([f"data.source.n_documents={n}"] if config.data.source.name == "ground_truth_language"
           else [f"data.max_documents={n}"])
    if config.data.held_out >= 1:
        out.append(f"data.holdout={max(int(config.data.held_out * fraction), 2)}")
    if config.generate.num_samples:
        out.append(f"generate.num_samples={max(int(config.generate.num_samples * fraction), 1)}")
    return out


def measure(run_dir: Path, fraction: float, documents: int, per_doc: float, model: Model | None,
            chars_per_token: float) -> dict[str, Any]:
    """A calibration run's phase seconds (its journal) and work (the plan's FLOPs of its own config,
    with the tokens it counted)."""
    run = RunLayout(run_dir)
    state = run.read_state()

    def duration(key: str) -> float:
        record = state.step(key)
        return (record.duration_s or 0.0) if record is not None else 0.0

    seconds = {p: duration(f"1.{p}") for p in PHASES}
    seconds["prepare"] = duration("0.curate")
    train = run.committed_stats(1, "train")
    real = run.committed_stats(0, "curate")["metrics"]["real_size"]
    tokens = train.get("blocks", 0) * train.get("block_size", 0) / max(real, 1)
    n = max(int(documents * fraction), 20)
    phases, _ = workload(run.load_config(), model, n, tokens or per_doc, chars_per_token)
    work = {p.name: (p.tokens[0] if p.name == "curate" else p.flops[0]) for p in phases}
    work["prepare"] = float(n)  # iteration 0 prepares the real data once
    return {"fraction": fraction, "seconds": seconds, "work": work, "tokens_per_document": tokens}


# ------------------------------------------------------------------------------------ the plan

def make_plan(config: Config, *, gpu: str = "h100", gpus: int = 1, mfu: dict[str, float] | None = None,
              params: float | None = None, documents: int | None = None, tokens_per_document: float | None = None,
              chars_per_token: float = CHARS_PER_TOKEN, calibrate_with: tuple[str, list[str]] | None = None,
              config_name: str = "") -> Plan:
    if gpu not in GPUS:
        raise UserError(f"plan --gpu: one of {', '.join(GPUS)}, got '{gpu}'")
    model, model_from = config_model(config, params)
    docs, per_doc, how = source_documents(config, chars_per_token)
    docs, per_doc = documents or docs, tokens_per_document or per_doc
    phases, data = workload(config, model, docs, per_doc, chars_per_token)
    data["estimated_by"] = how if tokens_per_document is None else "--tokens-per-document"
    data["model_from"] = model_from
    mfus = {**MFU, **(mfu or {})}
    peak = GPUS[gpu]["tflops"] * 1e12
    hardware: dict[str, Any] = {"gpu": gpu, "gpus": gpus, "peak_tflops": GPUS[gpu]["tflops"], "mfu": mfus}
    calibration = None
    if calibrate_with is not None and model is not None and docs and per_doc:
        rate, fixed, scale, calibration = calibrate(*calibrate_with, config, docs, per_doc, model, chars_per_token)
        if abs(scale - 1) > 1e-9:  # the counted tokens per document replace the estimate
            phases, data = workload(config, model, docs, per_doc * scale, chars_per_token)
            data["estimated_by"] = "counted by the calibration runs"
        timed(phases, rate, fixed, documents=docs)
        hardware = {"gpu": "this machine (calibrated)", "gpus": 1, "rate_flops": rate, "fixed_seconds": fixed}
    else:
        timed(phases, {p: gpus * peak * m for p, m in mfus.items() if m > 0})
    return Plan(config=config_name, iterations=config.iterations, model=asdict(model) if model else None,
                data=data, phases=phases, hardware=hardware, calibration=calibration)


def human(x: float, unit: str = "") -> str:
    for div, suffix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g} {suffix}{unit}"
    return f"{x:.3g} {unit}".strip()


def print_plan(plan: Plan) -> None:
    from rich.table import Table

    from collapsebench.console import console

    m, d, hw = plan.model, plan.data, plan.hardware
    where = (f"{hw['gpus']} x {hw['gpu'].upper()} ({hw['peak_tflops']:g} TFLOP/s peak bf16; MFU " +
             ", ".join(f"{p} {v:g}" for p, v in hw["mfu"].items() if v) + ")") if "mfu" in hw else hw["gpu"]
    console.print(f"[bold]{plan.config}[/]: {plan.iterations} iterations on {where}")
    if m:
        shape = (f", {m['layers']} layers x {m['width']} wide, KV cache {human(2 * m['layers'] * m['kv_width'] * 2, 'B')}"
                 " a token (bf16)") if m["layers"] else ""
        console.print(f"model: {human(m['params'])} parameters ({d['model_from']}){shape}")
    else:
        console.print(f"model: none ({d['model_from']}); counts are rows")
    per = f", {d['tokens_per_document']:.3g} tokens each" if m and d["tokens_per_document"] else ""
    console.print(f"data: {d['documents'] or '?'} documents ({d['real']} train, {d['holdout']} held out){per} "
                  f"({d['estimated_by']}); {d['samples_per_iteration']} samples an iteration")
    unit = "tokens" if m else "rows"
    table = Table("phase", "work", f"{unit} / iteration", f"{unit} / run", "FLOPs", "hours", "GPU-hours", "disk GB")
    gpus = hw.get("gpus", 1)
    work = {"curate": "rows curated", "train": "trained", "generate": "generated", "evaluate": "scored"}
    total_s, total_f, total_d, timed_any = 0.0, 0.0, 0.0, False
    for p in plan.phases:
        first, last = p.tokens[0] if p.tokens else 0, p.tokens[-1] if p.tokens else 0
        per_iter = human(first) if abs(last - first) <= 1e-9 * max(first, 1) else f"{human(first)}-{human(last)}"
        flops = sum(p.flops)
        hours = p.seconds / 3600 if p.seconds is not None else None
        gpu_hours = hours * gpus if hours is not None and "mfu" in hw and p.name != "curate" else hours
        table.add_row(p.name, work[p.name], per_iter, human(sum(p.tokens)), human(flops) if flops else "-",
                      f"{hours:.3g}" if hours is not None else "-", f"{gpu_hours:.3g}" if gpu_hours is not None else "-",
                      f"{p.disk_gb:.3g}")
        total_s += p.seconds or 0.0
        total_f += flops
        total_d += p.disk_gb
        timed_any = timed_any or p.seconds is not None
    hours = total_s / 3600
    table.add_row("[bold]total[/]", "", "", "", human(total_f) if total_f else "-", f"{hours:.3g}" if timed_any else "-",
                  f"{hours * (gpus if 'mfu' in hw else 1):.3g}" if timed_any else "-", f"{total_d:.3g}")
    console.print(table)
    notes = [f"token cache {d['token_cache_gb']:.3g} GB"] + [p.note for p in plan.phases if p.note and m]
    console.print("plus: " + "; ".join(notes))


def main(config_path: str, overrides: list[str], *, gpu: str, gpus: int, mfu: list[str], params: float | None,
         documents: int | None, tokens_per_document: float | None, chars_per_token: float, calibrate: bool,
         as_json: bool) -> Plan:
    """What the `plan` verb does."""
    from collapsebench.config import load_config

    config = load_config(config_path, overrides)
    mfus = {}
    for item in mfu:
        phase, _, value = item.partition("=")
        if phase not in MFU or not value:
            raise UserError(f"plan --mfu: PHASE=FRACTION with a phase among {', '.join(MFU)}, got '{item}'")
        mfus[phase] = float(value)
    plan = make_plan(config, gpu=gpu, gpus=gpus, mfu=mfus, params=params, documents=documents,
                     tokens_per_document=tokens_per_document, chars_per_token=chars_per_token,
                     calibrate_with=(config_path, overrides) if calibrate else None, config_name=config_path)
    if as_json:
        print(json.dumps(plan.as_dict(), indent=1, default=str))
    else:
        print_plan(plan)
    return plan
