"""Shared helpers of the evaluation tests: a real PhaseContext over a temporary run directory."""

from __future__ import annotations

import json
from pathlib import Path

from collapsebench.config import config_from_dict
from collapsebench.context import PhaseContext


def make_ctx(tmp_path: Path, iteration: int = 1, **config) -> PhaseContext:
    raw = {"name": "t", "iterations": 3, "config_dir": str(tmp_path), **config}
    run_dir = tmp_path / "run"
    out_dir = run_dir / f"iter_{iteration:03d}" / "evaluate.tmp"
    out_dir.mkdir(parents=True, exist_ok=True)
    return PhaseContext(config=config_from_dict(raw), run_dir=run_dir, iteration=iteration,
                        phase="evaluate", seed=1234, out_dir=out_dir)


def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "metrics.jsonl").open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def save_samples(ctx: PhaseContext, iteration: int, texts: list[str]) -> None:
    """Commit a samples dataset for ``iteration`` with lineage columns."""
    import datasets

    path = ctx.phase_dir(iteration, "generate") / "samples"
    datasets.Dataset.from_dict({
        "id": [f"s{iteration}-{i}" for i in range(len(texts))],
        "origin": ["synthetic"] * len(texts),
        "generation": [iteration] * len(texts),
        "parent": [""] * len(texts),
        "text": texts,
    }).save_to_disk(str(path))


def save_real(ctx: PhaseContext, texts: list[str], split: str = "real") -> None:
    """Commit the real training split (``real``) or the holdout (``holdout``) of iteration 0."""
    import datasets

    path = ctx.phase_dir(0, "curate") / split
    datasets.Dataset.from_dict({
        "id": [f"r{i}" for i in range(len(texts))],
        "origin": ["real"] * len(texts),
        "generation": [0] * len(texts),
        "parent": [""] * len(texts),
        "text": texts,
    }).save_to_disk(str(path))
