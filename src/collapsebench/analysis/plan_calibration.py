"""`plan --calibrate`: time the config's iteration 1 on this machine at two reduced sizes
(:data:`CALIBRATION`) and fit each phase's seconds as ``fixed + FLOPs / rate`` (two points, two
unknowns; a phase that took no longer with more work is all fixed cost), which also corrects the
token estimates by the tokens the runs counted."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from collapsebench.analysis.plan_workload import Model, workload
from collapsebench.config import PHASES, Config
from collapsebench.errors import UserError
from collapsebench.layout import RunLayout
from collapsebench.registry import data_sources

CALIBRATION = (0.2, 0.6)  # fractions of the real data the two calibration runs use (far apart: a steadier slope)


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
    """The overrides that shrink the real data (and what follows from it) to ``fraction``: the source's
    declared ``size_arg`` when it has one (it makes fewer documents), else ``data.max_documents``."""
    n = max(int(documents * fraction), 20)
    size_arg = data_sources.entry(config.data.source.name, key="data.source").size_arg  # what the source declares
    out = [f"data.source.{size_arg}={n}"] if size_arg else [f"data.max_documents={n}"]
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
    work = {p.name: ((p.tokens if p.name == "curate" else p.flops) or [0.0])[0] for p in phases}  # both known here
    work["prepare"] = float(n)  # iteration 0 prepares the real data once
    return {"fraction": fraction, "seconds": seconds, "work": work, "tokens_per_document": tokens}
