"""``collapsebench compare RUN_OR_SWEEP...``: the figures and statistics of a set of runs.

Runs are gathered into cells: a sweep's cells are its manifest's (their seeds are the replicates),
and standalone runs whose configs differ only in their seed form one cell. For every chosen metric
(default: every evaluation metric) the statistics over seeds are computed by
:mod:`collapsebench.analysis.stats` (mean, std, bootstrap 95% interval, n per iteration) and each
cell is compared, at every iteration, paired by seed, with the reference cell (the 0%-synthetic
cell, e.g. replace alpha=0, or ``--reference``) and with its clean baseline; the correction (Holm by
default) runs over the comparisons of one metric at one iteration. Everything goes to ``stats.csv``
(``kind``: ``summary`` or ``comparison``). The figures (:mod:`collapsebench.analysis.figures`) go
to ``figures/`` as PNG and SVG, and ``report.html`` shows them with the statistics.

Claims declared in the runs' ``contrasts:`` block (or in ``--contrasts FILE``) are tested by
:mod:`collapsebench.analysis.contrasts`: their verdicts are printed and written to
``contrasts.csv`` and ``contrasts.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collapsebench.analysis import contrasts as C
from collapsebench.analysis import figures as F
from collapsebench.analysis.runs import (
    DIVERSITY,
    Comparison,
    Member,
    alert_levels,
    cell_infos,
    evaluation_metrics,
    failure_points,
    headline_of,
    histogram_data,
    real_reference,
)
from collapsebench.analysis.stats import (
    COMPARISON_COLUMNS,
    SUMMARY_COLUMNS,
    Correction,
    compare_cells,
    records_from_rows,
    summarize,
    write_csv,
)
from collapsebench.config import Config, identity
from collapsebench.console import console
from collapsebench.errors import UserError
from collapsebench.layout import RunLayout, SweepLayout

# ------------------------------------------------------------------------------------ gathering


def gather(paths: Sequence[str | Path]) -> tuple[list[Member], list[SweepLayout]]:
    """The runs under ``paths`` (sweep directories and run directories), in order."""
    members: list[Member] = []
    sweeps: list[SweepLayout] = []
    standalone: list[tuple[RunLayout, Config]] = []
    for path in paths:
        sweep, run = SweepLayout(path), RunLayout(path)
        if sweep.exists():
            sweeps.append(sweep)
            for cell in sweep.cells():
                layout = sweep.run(cell)
                if layout.exists():
                    members.append(Member(cell["label"], int(cell["seed"]), layout, layout.load_config(),
                                          cell.get("baseline_of")))
        elif run.exists():
            standalone.append((run, run.load_config()))
        else:
            raise UserError(f"{path} is neither a run directory (config.yaml) nor a sweep directory (sweep.json)")
    labels: dict[str, str] = {}  # identity without the seed -> label
    for run, config in standalone:
        key = identity(config, without=("seed",))
        if key not in labels:
            taken = set(labels.values()) | {m.cell for m in members}
            label = config.name if config.name not in taken else f"{config.name} ({run.path.name})"
            labels[key] = label
        members.append(Member(labels[key], config.seed, run, config))
    seen: set[tuple[str, int]] = set()
    for m in members:
        if (m.cell, m.seed) in seen:
            raise UserError(f"two runs of cell '{m.cell}' with seed {m.seed} (one is {m.run.path}); "
                            "compare each once")
        seen.add((m.cell, m.seed))
    if not members:
        raise UserError("compare: no runs found under " + ", ".join(map(str, paths)))
    return members, sweeps


def reference_cell(members: Sequence[Member], rows: dict[Path, list[dict[str, Any]]]) -> str | None:
    """The first cell (not a clean baseline) that trained on real data only at every iteration."""
    for cell in cell_infos(members):
        if cell.baseline_of is not None:
            continue
        mine = [r for m in members if m.cell == cell.label for r in rows[m.run.path]]
        fractions = [r.get("curate/synthetic_fraction") for r in mine]
        if fractions and all(f == 0 for f in fractions):
            return cell.label
    return None


def declared_comparisons(cells: Sequence[F.CellInfo], reference: str | None) -> list[tuple[str, str]]:
    """The family: every other cell against the reference, and every cell against its clean baseline
    (as (a, b): differences are cell - reference and cell - baseline)."""
    pairs = [(reference, c.label) for c in cells if reference and c.label != reference and c.baseline_of is None]
    pairs += [(c.label, c.baseline_of) for c in cells if c.baseline_of is not None]
    return pairs


# ------------------------------------------------------------------------------------ statistics


def statistics(records: list[dict[str, Any]], metrics: Sequence[str], pairs: Sequence[tuple[str, str]],
               correction: Correction) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Summaries per (cell, metric, iteration) and the declared comparisons at every iteration."""
    chosen = [r for r in records if r["metric"] in metrics]
    summary = summarize(chosen)
    tests: list[dict[str, Any]] = []
    if pairs:
        cells_with = {(r["metric"], r["iteration"], r["cell"]) for r in chosen}
        for metric in metrics:
            for iteration in sorted({r["iteration"] for r in chosen if r["metric"] == metric}):
                present = [(a, b) for a, b in pairs if (metric, iteration, a) in cells_with
                           and (metric, iteration, b) in cells_with]
                if present:
                    tests += compare_cells(chosen, metric=metric, iteration=iteration, comparisons=present,
                                           correction=correction)
    return summary, tests


def write_stats(summary: Sequence[dict[str, Any]], tests: Sequence[dict[str, Any]], path: Path) -> None:
    """``stats.csv``: summary rows and comparison rows, told apart by ``kind``."""
    columns = ["kind", *SUMMARY_COLUMNS, *(c for c in COMPARISON_COLUMNS if c not in SUMMARY_COLUMNS)]
    rows = [{"kind": "summary", **r} for r in summary] + [{"kind": "comparison", **r} for r in tests]
    write_csv(rows, path, columns=columns)


# ------------------------------------------------------------------------------------ compare


def analyse(paths: Sequence[str | Path], *, metrics: Sequence[str] | None = None, reference: str | None = None,
            correction: Correction = "holm") -> tuple[Comparison, dict[Path, list[dict[str, Any]]]]:
    """Gather the runs and compute the statistics (no files written)."""
    members, sweeps = gather(paths)
    rows = {m.run.path: m.run.read_metrics() for m in members}
    every_row = [r for rs in rows.values() for r in rs]
    available = evaluation_metrics(every_row, headline_of(m.config for m in members))
    # by default, not a run's own standard errors (X_se: the band over seeds is the spread that counts
    # here) nor counters with one value throughout (holdout_tokens): they are no curves to compare
    chosen = list(metrics) if metrics else F.metric_groups(every_row, available).drawn
    unknown = [m for m in chosen if m not in available]
    if unknown:
        raise UserError(f"compare --metric: no run has {', '.join(unknown)}; known: {', '.join(available)}")
    cells = cell_infos(members)
    if reference is not None and reference not in {c.label for c in cells}:
        raise UserError(f"compare --reference '{reference}' is not a cell; cells: {', '.join(c.label for c in cells)}")
    ref = reference or reference_cell(members, rows)
    records = [rec for m in members for rec in records_from_rows(m.cell, m.seed, rows[m.run.path])]
    summary, tests = statistics(records, chosen, declared_comparisons(cells, ref), correction)
    notes = []
    seeds = {c.label: len({m.seed for m in members if m.cell == c.label}) for c in cells}
    if max(seeds.values()) < 2:
        notes.append("Every cell has a single seed: no spread, no confidence bands and no tests between cells. "
                     "Add seeds (e.g. --grid 'seed=[0, 1, 2]') to get them.")
    elif min(seeds.values()) < 2:
        few = [label for label, n in seeds.items() if n < 2]
        notes.append(f"Cells with a single seed (no band, no test): {', '.join(few)}.")
    if ref is None:
        notes.append("No 0%-synthetic cell to compare against (add replace alpha=0, or name one with --reference); "
                     "only clean baselines, if any, are compared.")
    return Comparison(members, cells, chosen, summary, tests, ref, correction, notes, sweeps), rows


def compare(paths: Sequence[str | Path], *, metrics: Sequence[str] | None = None, out: str | Path | None = None,
            reference: str | None = None, correction: Correction = "holm", quiet: bool = False,
            contrasts: str | Path | None = None) -> Path | None:
    """Write ``figures/`` (PNG and SVG), ``stats.csv``, ``report.html`` and, when claims are declared,
    ``contrasts.csv``, ``contrasts.json`` and ``contrasts.md`` (printed unless ``quiet``) to ``out``; the report's path
    (None when no run has evaluated an iteration yet)."""
    from collapsebench.analysis.report import write_sweep_report

    comparison, rows = analyse(paths, metrics=metrics, reference=reference, correction=correction)
    block, base = C.declared(comparison.members, contrasts)
    if not any(rows.values()):
        return None
    failed, checks = C.preconditions(block, comparison.members, rows) if block is not None else ({}, [])
    claims = C.evaluate(block, comparison.members, rows, base, failed) if block is not None else []
    target = Path(out) if out is not None else Path(paths[0]) / "report"
    target.mkdir(parents=True, exist_ok=True)
    write_stats(comparison.summary, comparison.tests, target / "stats.csv")
    if block is not None:
        C.write(claims, target)
        if not quiet:
            for line in C.lines(claims, block.correction, block.confidence, checks):
                console.print(line, highlight=False, markup=False)
    made = draw(comparison, rows, target / "figures")
    return write_sweep_report(comparison, made, target / "report.html")


def draw(comparison: Comparison, rows: dict[Path, list[dict[str, Any]]], folder: Path) -> list[tuple[str, str, Path]]:
    """Every figure of a comparison as PNG and SVG; (section, caption, PNG path) of each, in report order."""
    c = comparison
    made: list[tuple[str, str, Path]] = []
    seeds_note = next((n for n in c.notes if "single seed" in n), "")
    headline = headline_of(m.config for m in c.members)

    def keep(section: str, caption: str, fig: Any, name: str) -> None:
        made.append((section, caption, F.save(fig, folder / name)[0]))

    for metric in c.metrics:
        if metric in headline:
            keep("headline", f"{metric} vs iteration: mean over seeds, band: bootstrap 95% interval",
                 F.line_figure(F.line_series(c.summary, metric, c.cells), metric, seeds_note=seeds_note),
                 f"metric_{_file(metric)}")
    panels, title, xlabel = histogram_data(c.members)
    if panels:
        keep("headline", title, F.histogram_figure(panels, title=title, xlabel=xlabel), "perplexity_histograms")
    for rule, points in failure_points(c.members).items():
        keep("failure", f"time to failure: {rule}", F.failure_figure(points, [x.label for x in c.cells], rule=rule),
             f"time_to_failure_{_file(rule)}")
    for metric in [m for m in c.metrics if m.endswith("_ece")]:
        keep("calibration", f"{metric} per iteration with early-warning markers",
             F.ece_figure(F.line_series(c.summary, metric, c.cells), alert_levels(c.members, rows, metric), metric),
             f"ece_{_file(metric)}")
    diversity = [F.Panel(m, F.line_series(c.summary, m, c.cells), real_reference(rows, m))
                 for m in DIVERSITY if m in c.metrics]
    if diversity:
        keep("diversity", "diversity of the samples vs iteration (dotted: the real data)",
             F.panels_figure(diversity, title="diversity vs iteration"), "diversity")
    for metric in c.metrics:
        if metric not in headline:
            keep("metrics", f"{metric} vs iteration",
                 F.line_figure(F.line_series(c.summary, metric, c.cells), metric, seeds_note=seeds_note),
                 f"metric_{_file(metric)}")
    return made


def _file(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)[:80]
