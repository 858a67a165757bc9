"""`collapsebench plan CONFIG`: what a run will cost, before any GPU is booked.

Per phase and in total: the tokens trained, generated and evaluated per iteration and in the run,
their FLOPs, the hours and GPU-hours at a throughput, and the disk the run fills. No torch and no
data are loaded: the counts come from the config alone.

* Model size N: from ``model.architecture`` (models built from scratch, with the run's tokenizer
  vocabulary) or the base model folder's ``config.json``; ``--params`` when neither is readable.
* Tokens: documents and tokens per document from the data source's declared ``plan`` hook (the
  built-in language's expected document length, from its knobs; a local text file's documents
  counted, at ``--chars-per-token`` characters a token), D(k) from the regime's ``plan`` hook,
  samples from ``generate`` (:mod:`.plan_workload`).
* FLOPs: training 6·N·D (D = tokens trained), generation 2·N per token processed plus the
  attention over the KV cache (4·layers·width per token per position of context), scoring
  (evaluations that load a model) 2·N·D plus attention.
* Time: FLOPs / (GPUs x peak x MFU) with each phase's MFU (``--mfu``), or, with ``--calibrate``,
  from this machine (:mod:`.plan_calibration`): the config's iteration 1 runs at two reduced sizes, and
  each phase's seconds are fitted as ``fixed + FLOPs / rate`` (two points, two unknowns; a phase
  that took no longer with more work is all fixed cost), which also corrects the token estimates
  by the tokens the runs counted.

Estimates, not promises: ``benchmarks/plan_calibration.py`` compares the calibrated CPU plan of
the quickstart with its measured phase times.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from collapsebench.analysis.plan_calibration import CALIBRATION, calibrate
from collapsebench.analysis.plan_workload import (
    CHARS_PER_TOKEN,
    Model,
    Phase,
    config_model,
    model_size,
    size_in_name,
    source_documents,
    timed,
    workload,
)
from collapsebench.config import Config
from collapsebench.errors import UserError
from collapsebench.plugins import load_plugins

__all__ = ["CALIBRATION", "CHARS_PER_TOKEN", "GPUS", "MFU", "Model", "Phase", "Plan", "config_model", "human",
           "main", "make_plan", "model_size", "print_plan", "size_in_name", "source_documents", "workload"]

# peak dense bf16 tensor FLOP/s (SXM parts) and memory per GPU
GPUS: dict[str, dict[str, float]] = {
    "a100": {"tflops": 312.0, "memory_gb": 80.0},
    "h100": {"tflops": 989.0, "memory_gb": 80.0},
    "h200": {"tflops": 989.0, "memory_gb": 141.0},
}
# model FLOPs utilisation assumed per phase: training and batched scoring are compute-bound;
# sampling token by token is bound by memory bandwidth
MFU = {"curate": 0.0, "train": 0.40, "generate": 0.10, "evaluate": 0.30}
UNKNOWN = "?"  # a figure plan cannot know (never 0, which would read as free)


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


# ------------------------------------------------------------------------------------ the plan

def make_plan(config: Config, *, gpu: str = "h100", gpus: int = 1, mfu: dict[str, float] | None = None,
              params: float | None = None, documents: int | None = None, tokens_per_document: float | None = None,
              chars_per_token: float = CHARS_PER_TOKEN, calibrate_with: tuple[str, list[str]] | None = None,
              config_name: str = "") -> Plan:
    if gpu not in GPUS:
        raise UserError(f"plan --gpu: one of {', '.join(GPUS)}, got '{gpu}'")
    load_plugins(config)  # their declarations say what to estimate
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
    split = f" ({d['real']} train, {d['holdout']} held out)" if d["real"] is not None else ""
    samples = d["samples_per_iteration"]
    console.print(f"data: {d['documents'] or UNKNOWN} documents{split}{per} ({d['estimated_by']}); "
                  f"{UNKNOWN if samples is None else samples} samples an iteration", markup=False)
    unit = "tokens" if m else "rows"
    table = Table("phase", "work", f"{unit} / iteration", f"{unit} / run", "FLOPs", "hours", "GPU-hours", "disk GB")
    gpus = hw.get("gpus", 1) if "mfu" in hw else 1
    work = {"curate": "rows curated", "train": "trained", "generate": "generated", "evaluate": "scored"}
    for p in plan.phases:
        hours = p.seconds / 3600 if p.seconds is not None else None
        per_gpu = gpus if p.name != "curate" else 1
        if p.tokens is None or p.flops is None:
            table.add_row(p.name, work[p.name], UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN)
            continue
        first, last = (p.tokens[0], p.tokens[-1]) if p.tokens else (0.0, 0.0)
        per_iter = human(first) if abs(last - first) <= 1e-9 * max(first, 1) else f"{human(first)}-{human(last)}"
        flops = sum(p.flops)
        table.add_row(p.name, work[p.name], per_iter, human(sum(p.tokens)), human(flops) if flops else "-",
                      _hours(hours), _hours(None if hours is None else hours * per_gpu), _gb(p.disk_gb))
    totals, left_out = plan_totals(plan)
    label = "[bold]total[/]" + ("*" if left_out else "")
    known = len(left_out) < len(plan.phases)
    table.add_row(label, "", "", "", human(totals["flops"]) if totals["flops"] else ("-" if known else UNKNOWN),
                  _hours(totals["hours"]) if known else UNKNOWN, _hours(totals["gpu_hours"]) if known else UNKNOWN,
                  _gb(totals["disk_gb"]) if known else UNKNOWN)
    console.print(table)
    notes = [f"token cache {d['token_cache_gb']:.3g} GB"] if d["token_cache_gb"] is not None else []
    notes += [p.note for p in plan.phases if p.note and m and p.tokens is not None]
    if notes:
        console.print("plus: " + "; ".join(notes))
    if left_out:
        console.print(f"{UNKNOWN}: unknown ({d['estimated_by']}); * the totals leave out: {', '.join(left_out)}",
                      markup=False)


def _hours(hours: float | None) -> str:
    return "-" if hours is None else f"{hours:.3g}"


def _gb(gb: float | None) -> str:
    return UNKNOWN if gb is None else f"{gb:.3g}"


def plan_totals(plan: Plan) -> tuple[dict[str, float | None], list[str]]:
    """The run's FLOPs, hours, GPU-hours and disk summed over the phases whose figures are known,
    and the phases left out (unknown: the data's size is). Hours are None when no phase is timed."""
    gpus = plan.hardware.get("gpus", 1) if "mfu" in plan.hardware else 1
    known = [p for p in plan.phases if p.tokens is not None and p.flops is not None]
    timed_phases = [p for p in known if p.seconds is not None]
    seconds = sum(p.seconds or 0.0 for p in timed_phases)
    gpu_seconds = sum((p.seconds or 0.0) * (gpus if p.name != "curate" else 1) for p in timed_phases)
    totals: dict[str, float | None] = {
        "flops": sum(sum(p.flops or []) for p in known),
        "hours": seconds / 3600 if timed_phases else None,
        "gpu_hours": gpu_seconds / 3600 if timed_phases else None,
        "disk_gb": sum(p.disk_gb or 0.0 for p in known),
    }
    return totals, [p.name for p in plan.phases if p not in known]


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
        totals, left_out = plan_totals(plan)
        print(json.dumps({**plan.as_dict(), "totals": {**totals, "leaves_out": left_out}}, indent=1, default=str))
    else:
        print_plan(plan)
    return plan
