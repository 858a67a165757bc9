"""What the figures draw, read from run directories: which metrics a run has, per-document
perplexities per generation, times to failure, early-warning levels, the real data's reference
values. Shared by the run's report and by ``compare``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from collapsebench.analysis import figures as F
from collapsebench.config import Config
from collapsebench.data import ArrowRows, read_saved
from collapsebench.failure import time_to_failure
from collapsebench.layout import RunLayout, SweepLayout
from collapsebench.registry import declared, evaluations, headline_metrics

PHASE_SUMMARIES = ("curate/", "train/", "generate/")  # phase statistics in metrics.jsonl rows, not evaluations
DIVERSITY = ("distinct_1", "distinct_2", "distinct_3", "distinct_4", "self_bleu", "type_token_ratio",
             "embedding_diversity")
MAX_GENERATIONS_SHOWN = 6


@dataclass(frozen=True)
class Member:
    """One run of a comparison: its cell, seed, run directory and config."""

    cell: str
    seed: int
    run: RunLayout
    config: Config
    baseline_of: str | None = None


@dataclass
class Comparison:
    """What ``compare`` gathered and computed (the report renders it)."""

    members: list[Member]
    cells: list[F.CellInfo]
    metrics: list[str]
    summary: list[dict[str, Any]]
    tests: list[dict[str, Any]]
    reference: str | None
    correction: str
    notes: list[str]
    sweeps: list[SweepLayout]


def cell_infos(members: Sequence[Member]) -> list[F.CellInfo]:
    return list({m.cell: F.CellInfo(m.cell, m.baseline_of) for m in members}.values())


def headline_of(configs: Iterable[Config]) -> list[str]:
    """The headline metrics the evaluations of ``configs`` declare, in order, each once."""
    out: list[str] = []
    for config in configs:
        out.extend(m for m in headline_metrics(config) if m not in out)
    return out


def evaluation_metrics(rows: Sequence[dict[str, Any]], headline: Sequence[str] = ()) -> list[str]:
    """Numeric evaluation metrics of metrics.jsonl rows: the ``headline`` ones first (in its order),
    then by name; not the phases' own statistics and not the alert levels (drawn as markers)."""
    names = {k for r in rows for k, v in r.items()
             if k != "iteration" and not k.startswith(PHASE_SUMMARIES) and not k.endswith("_alert_level")
             and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return sorted(names, key=lambda k: (k not in headline, list(headline).index(k) if k in headline else 0, k))


def load_saved(folder: Path) -> ArrowRows | None:
    """A saved dataset folder, read with pyarrow alone (memory-mapped; a report reads a few columns
    of hundreds of folders, and `datasets` costs a second to import and milliseconds per folder), or
    None when it holds no rows: ``save_to_disk`` writes an empty dataset (e.g. no rejected samples)
    without data files."""
    import json

    state = folder / "state.json"
    if not state.exists() or not json.loads(state.read_text()).get("_data_files"):
        return None
    return read_saved(folder)


def _read_log_ppl(path: Path) -> np.ndarray:
    import pyarrow.parquet as pq

    return np.asarray(pq.read_table(path, columns=["log_ppl"]).column("log_ppl").to_numpy(zero_copy_only=False),
                      dtype=float)


def _reference_iteration(config: Config) -> int | None:
    """The iteration whose model scored every generation's samples: the argument an evaluation
    declares as its ``reference`` (reference_perplexity's ``reference``), when it is an iteration."""
    for i, spec in enumerate(config.evaluate.evaluations):
        entry = declared(evaluations, spec.name)
        if entry is not None and entry.reference:
            ref = evaluations.bind(spec.name, spec.kwargs, key=f"evaluate.evaluations[{i}]")[entry.reference]
            return ref if isinstance(ref, int) and not isinstance(ref, bool) else None
    return None


def _spread(values: list[int], k: int) -> list[int]:
    """At most ``k`` of ``values``, evenly spaced, first and last included."""
    if len(values) <= k:
        return values
    return sorted({values[round(i * (len(values) - 1) / (k - 1))] for i in range(k)})


def histogram_data(members: Sequence[Member]) -> tuple[dict[str, tuple[np.ndarray, list[F.Histogram]]], str, str]:
    """Per cell (its seeds pooled): the per-document log-perplexities of each generation's samples
    under the fixed reference model (``ref_perplexity.parquet``), with the real held-out data under
    the same model (``per_document.parquet`` of the reference iteration) as reference. Without
    samples scored that way: the held-out real data under each generation's model."""
    by_samples = any(next(m.run.path.glob("iter_*/evaluate/ref_perplexity.parquet"), None) for m in members)
    file = "ref_perplexity.parquet" if by_samples else "per_document.parquet"
    panels: dict[str, tuple[np.ndarray, list[F.Histogram]]] = {}
    for cell in cell_infos(members):
        mine = [m for m in members if m.cell == cell.label]
        iterations = sorted({k for m in mine for k in m.run.evaluated_iterations()
                             if (m.run.phase_dir(k, "evaluate") / file).exists()})
        groups: dict[str, np.ndarray] = {}
        reference = None
        if by_samples:
            ref = _reference_iteration(mine[0].config)
            real = [m.run.phase_dir(ref, "evaluate") / "per_document.parquet" for m in mine] if ref else []
            real = [p for p in real if p.exists()]
            if real:
                reference = f"real data (held out, under M({ref}))"
                groups[reference] = np.concatenate([_read_log_ppl(p) for p in real])
        for k in _spread(iterations, MAX_GENERATIONS_SHOWN):
            paths = [m.run.phase_dir(k, "evaluate") / file for m in mine]
            groups[f"generation {k}"] = np.concatenate([_read_log_ppl(p) for p in paths if p.exists()])
        if iterations:
            edges = F.log_ppl_edges(list(groups.values()))
            panels[cell.label] = (edges, F.histograms(groups, edges, reference))
    if by_samples:
        return (panels, "perplexity of each generation's samples under a fixed reference model",
                "perplexity per sample (log scale)")
    return panels, "held-out real data under each generation's model", "perplexity per document (log scale)"


def failure_points(members: Sequence[Member]) -> dict[str, list[F.FailurePoint]]:
    """Per failure rule: each run's time to failure."""
    out: dict[str, list[F.FailurePoint]] = {}
    for m in members:
        for c in time_to_failure(m.run, m.config):
            out.setdefault(c.rule, []).append(F.FailurePoint(m.cell, m.seed, c.iteration, c.evaluated_to))
    return out


def alert_levels(members: Sequence[Member], rows: dict[Path, list[dict[str, Any]]],
                 metric: str) -> dict[str, dict[int, int]]:
    """The highest early-warning level of ``metric`` per cell and iteration, over the cell's seeds."""
    out: dict[str, dict[int, int]] = {}
    for m in members:
        for r in rows[m.run.path]:
            level = r.get(f"{metric}_alert_level")
            if isinstance(level, (int, float)):
                cell = out.setdefault(m.cell, {})
                cell[int(r["iteration"])] = max(cell.get(int(r["iteration"]), 0), int(level))
    return out


def real_reference(rows: dict[Path, list[dict[str, Any]]], metric: str) -> dict[str, float]:
    """The real data's value of a diversity metric (``real_<metric>``), averaged over the rows that have it."""
    values = [float(r[f"real_{metric}"]) for rs in rows.values() for r in rs
              if isinstance(r.get(f"real_{metric}"), (int, float))]
    return {"real data": float(np.mean(values))} if values else {}


def write_recorded_run(path: Path, config: Config, rows: Sequence[dict[str, Any]]) -> Path:
    """A run directory holding only what ``compare`` reads of a run: its config, ``metrics.jsonl``
    and each row's evaluate folder. For metric rows recorded elsewhere (a twin's recorded values
    after its run folders are gone; hand-made runs in tests), so they are compared exactly as runs are."""
    import json

    import yaml

    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config.dump(), sort_keys=False), encoding="utf-8")
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    for r in rows:
        folder = path / f"iter_{int(r['iteration']):03d}" / "evaluate"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(r), encoding="utf-8")
        (folder / "stats.json").write_text("{}", encoding="utf-8")
    return path
