"""Reports people read: one self-contained HTML page per run and per sweep (figures embedded).

The run page (``<run>/report/report.html``, written when a run ends and by ``collapsebench
report``): a header with the config summary and fingerprint; the headline figures (holdout
perplexity or KL vs iteration, per-document perplexity histograms) at full width; the time to
failure of each failure rule; every metric (a metric's standard error ``X_se`` as the band of ``X``,
constant counts in a table); each figure with the numbers it draws beside it and the metrics it
draws named in the page (``data-panels``); a sample browser (each iteration's accepted and rejected samples, the
validator's reason, and each sample's lineage: the model that produced it and its prompt); the
qualitative prompts side by side across iterations; the time per phase; the images evaluations
wrote. It also writes a card (``README.md``) into every committed dataset and model folder
(:mod:`collapsebench.analysis.cards`).

The sweep page (``compare``'s ``report.html``): the headline figures with bands over seeds, time to
failure, calibration and diversity, every metric, the statistics (with the correction named) and
the cells with links to their own pages. The headline figures are those of the metrics the
evaluations declare as their headline (:func:`collapsebench.registry.headline_metrics`). Over 300
lines: both pages share the template, the config summary and the figure entries.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from collapsebench.analysis import figures as F
from collapsebench.analysis.runs import (
    DIVERSITY,
    Comparison,
    Member,
    evaluation_metrics,
    headline_of,
    histogram_data,
    load_saved,
    real_reference,
)
from collapsebench.config import PHASES, Config, identity
from collapsebench.failure import time_to_failure
from collapsebench.io import atomic_write, cache_folder
from collapsebench.journal import RunState
from collapsebench.layout import RunLayout, parse_step
from collapsebench.registry import fingerprints

TEMPLATE = "report.html.j2"
SAMPLES_PER_ITERATION = 50  # accepted and rejected samples per iteration in the sample browser
TEXT_CHARS = 2000  # characters of a sample's text shown


EMPTY: dict[str, Any] = {  # what a page has nothing of: the run page has no cells, the sweep page no samples
    "chain": "", "evaluated": None, "stopped_at": None, "stopped_by": None, "crossings": [], "keys": [], "rows": [],
    "lineage": [], "samples": [], "samples_limit": 0, "q_iterations": [], "q_prompts": [], "durations": {},
    "images": [], "cards": [], "cells": [], "stats": [], "tests": [], "notes": [], "correction": "",
    "reference": None, "shared": None, "axes": [], "phases": PHASES, "constants": {}}


def render(**context: Any) -> str:
    """The page from ``report.html.j2``; what ``context`` leaves out is empty."""
    return _template().render(**{**EMPTY, **context})


def warm() -> None:
    """Import what drawing a report's figures needs and compile its page (see
    :mod:`.report_process`, whose parent reads the folders the rest of the page shows)."""
    from collapsebench.analysis import stats  # noqa: F401 - the figures' lines

    F.warm()
    _template()


@functools.lru_cache(maxsize=1)
def _template() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             bytecode_cache=_bytecode_cache())
    env.filters["num"] = _fmt
    return env.get_template(TEMPLATE)


def _bytecode_cache() -> Any:
    """The compiled template, kept between processes in ``~/.cache/collapsebench/jinja`` (jinja
    checks it against the template's source): compiling it costs a toy run's report a fifth of its
    time. None where that folder cannot be made."""
    import jinja2

    folder = cache_folder("jinja")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(folder))


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


# ------------------------------------------------------------------------------------ the config


def _spec(spec: Any) -> str:
    kwargs = ", ".join(f"{k}={json.dumps(v)}" for k, v in spec.kwargs.items())
    return f"{spec.name}({kwargs})" if kwargs else spec.name


SUMMARY_KEYS = {"iterations": "iterations", "seed": "seed", "data": "data", "holdout": "data.holdout",
                "regime": "curate.regime", "model": "model", "trainer": "train.trainer", "generator": "generate.generator",
                "prompts": "generate.prompts", "samples": "generate.num_samples", "validators": "generate.validators",
                "evaluations": "evaluate.evaluations"}


def mark_axes(summary: list[tuple[str, str]], axes: list[str]) -> list[tuple[str, str]]:
    """A sweep's base config summary, with the lines its axes vary marked as such."""
    out = []
    for key, value in summary:
        path = SUMMARY_KEYS.get(key, "")
        varied = [a for a in axes if path and (a == path or a.startswith(path + ".") or path.startswith(a + "."))]
        out.append((key, f"varies by cell (axis {', '.join(varied)})" if varied else value))
    return out


def _holdout(config: Config) -> str:
    """What is evaluated on: a held-out share of the source, or a separate evaluation source."""
    if config.data.evaluation is not None:
        return f"evaluation source {_spec(config.data.evaluation)}"
    return f"{config.data.held_out:g}"


def config_summary(config: Config) -> list[tuple[str, str]]:
    """The config in a dozen lines: what a reader needs to know what was run."""
    m = config.model
    model = f"{m.base} (init {m.init})" if m.base else f"{json.dumps(m.architecture)} from scratch (init {m.init})"
    rows = [("iterations", str(config.iterations)), ("seed", str(config.seed)), ("data", _spec(config.data.source)),
            ("holdout", _holdout(config)), ("regime", _spec(config.curate.regime)), ("model", model),
            ("trainer", _spec(config.train.trainer))]
    rows += [(f"stage {i}", f"{s.name or f'stage{i}'}: {s.data.model_dump(exclude_none=True)} {s.args or ''}")
             for i, s in enumerate(config.train.stages)]
    rows += [("generator", _spec(config.generate.generator)), ("prompts", _spec(config.generate.prompts)),
             ("samples", str(config.generate.num_samples or "default")),
             ("validators", ", ".join(_spec(v) for v in config.generate.validators) or "none"),
             ("evaluations", ", ".join(_spec(e) for e in config.evaluate.evaluations))]
    if config.stop_when:
        from collapsebench.failure import describe

        rows.append(("failure rules", "; ".join(describe(r) + ("" if r.stop else " (record only)")
                                                for r in config.stop_when)))
    return rows


# ------------------------------------------------------------------------------------ the run page


def _durations(state: RunState) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for key, record in state.records():
        if record.done:
            iteration, phase = parse_step(key)
            out.setdefault(iteration, {})[phase] = float(record.duration_s or 0.0)
    return out


def _shorten(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= TEXT_CHARS else value[:TEXT_CHARS] + " [...]"
    if isinstance(value, list):
        return json.dumps([round(v, 4) if isinstance(v, float) else v for v in value])[:TEXT_CHARS]
    if isinstance(value, float):
        return round(value, 6)
    return value


def sample_rows(run: RunLayout, config: Config, limit: int = SAMPLES_PER_ITERATION) -> list[dict[str, Any]]:
    """The sample browser's rows: up to ``limit`` accepted and ``limit`` rejected samples per
    iteration, with their lineage (generation: the model that produced them; prompt; parent) and,
    for rejected ones, the validator and its reason."""
    rows: list[dict[str, Any]] = []
    field = config.data.text_field
    for k in range(1, config.iterations + 1):
        for status, folder in (("accepted", "samples"), ("rejected", "rejected")):
            ds = load_saved(run.phase_dir(k, "generate") / folder)
            if ds is None:
                continue
            for row in ds.select(range(min(limit, len(ds)))).table.to_pylist():
                text = row.get(field, row.get("x"))
                rows.append({"iteration": k, "status": status, "id": row.get("id", ""),
                             "generation": row.get("generation", k), "parent": row.get("parent", ""),
                             "prompt": _shorten(row.get("prompt", "")), "text": _shorten(text),
                             "rejected_by": row.get("rejected_by", "") or "", "reason": row.get("reason", "") or "",
                             "scores": {c: _shorten(v) for c, v in row.items() if c.startswith("score_")}})
    return rows


def lineage(run: RunLayout, config: Config) -> list[dict[str, Any]]:
    """Per iteration: what D(k) was made of, where M(k) started, how many samples S(k) kept."""
    out = []
    for k in range(1, config.iterations + 1):
        if not run.is_committed(k, "curate"):
            break
        curate = run.committed_stats(k, "curate")
        train = run.committed_stats(k, "train") if run.is_committed(k, "train") else {}
        generate = run.committed_stats(k, "generate") if run.is_committed(k, "generate") else {}
        by_gen = curate.get("rows_by_generation", {})
        parts = ", ".join(("real" if g == "0" else f"S({g})") + f": {n}" for g, n in sorted(by_gen.items(),
                                                                                          key=lambda kv: int(kv[0])))
        init = train.get("init_from") or train.get("init") or ""
        out.append({"iteration": k, "dataset": parts, "init": str(init),
                    "samples": generate.get("metrics", {}).get("samples", ""),
                    "acceptance": generate.get("metrics", {}).get("acceptance", "")})
    return out


def qualitative(run: RunLayout) -> tuple[list[int], list[dict[str, Any]]]:
    """The qualitative prompts side by side: iterations, and per prompt its completion at each."""
    iterations: list[int] = []
    by_prompt: dict[int, dict[str, Any]] = {}
    for path in sorted(run.path.glob("iter_*/evaluate/qualitative.jsonl")):
        k = int(path.parent.parent.name.split("_")[1])
        iterations.append(k)
        for line in path.read_text().splitlines():
            if line.strip():
                item = json.loads(line)
                entry = by_prompt.setdefault(item["index"], {"prompt": item["prompt"], "completions": {}})
                entry["completions"][k] = item["completion"]
    return iterations, [by_prompt[i] for i in sorted(by_prompt)]


Drawing = Callable[[], str]  # draws one figure and returns its data URI


def figure(section: str, caption: str, uri: str | Drawing, panels: Sequence[F.Panel] = (),
           table: bool = True) -> dict[str, Any]:
    """A figure of a page: where it goes, its caption and image (or the function that draws it:
    :func:`draw_figures`), the metrics it draws (named in the page as ``data-panels``) and, unless
    ``table`` is off, the numbers it draws."""
    columns, rows = F.numbers_table(panels) if panels and table else ([], [])
    return {"section": section, "caption": caption, "uri": uri, "panels": [p.metric for p in panels],
            "columns": columns, "rows": rows}


def drawing(make: Callable[..., Any], *args: Any, **kwargs: Any) -> Drawing:
    """The figure ``make(*args, **kwargs)`` as a function that draws it when called (its data URI)."""
    return lambda: F.data_uri(make(*args, **kwargs))


def draw_figures(figures: list[dict[str, Any]], *, split: bool = False) -> None:
    """Draw the figures still given as functions, in place. With ``split``, a copy of this process
    forked now draws every other one meanwhile and sends its images back through a pipe: drawing is
    a toy run's report's longest part once its imports are done, and the run's own process is idle
    by then, so the two cores draw at once. Only for the report process
    (:mod:`.report_process`), which is single-threaded and has matplotlib imported already; whatever
    the copy does not deliver is drawn here."""
    pending = [f for f in figures if callable(f["uri"])]
    theirs: list[dict[str, Any]] = []
    if split and len(pending) > 1 and hasattr(os, "fork"):  # halves of about equal panels (axes) each
        mine_panels, their_panels = 0, 0
        for f in sorted(pending, key=lambda f: -len(f["panels"])):
            if their_panels < mine_panels:
                theirs.append(f)
                their_panels += max(len(f["panels"]), 1)
            else:
                mine_panels += max(len(f["panels"]), 1)
    copy = _fork_drawing(theirs) if theirs else None
    drawn_there = {id(f) for f in theirs}
    for f in pending:
        if id(f) not in drawn_there:
            f["uri"] = f["uri"]()
    if copy is not None:
        for f, uri in zip(theirs, _collect(*copy)):
            f["uri"] = uri
    for f in pending:  # what the copy did not deliver
        if callable(f["uri"]):
            f["uri"] = f["uri"]()


def _fork_drawing(figures: list[dict[str, Any]]) -> tuple[int, int]:
    """Fork a copy that draws ``figures`` and writes their data URIs (JSON) to a pipe; (the pipe's
    reading end, the copy's pid)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the copy: draw, send, and leave without running anything of the parent's
        status = 1
        try:
            os.close(read)
            with os.fdopen(write, "wb") as out:
                out.write(json.dumps([f["uri"]() for f in figures]).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    return read, pid


def _collect(read: int, pid: int) -> list[str]:
    """The images the copy sent, once it has ended; none if it failed."""
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    return list(json.loads(data)) if status == 0 and data else []


def run_figures(run: RunLayout, config: Config, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                                                      dict[str, float]]:
    """The run page's figures (see :func:`figure`) and its constant metrics (shown as a table)."""
    from collapsebench.analysis.stats import records_from_rows, summarize

    label = config.name
    headline = headline_of([config])
    groups = F.metric_groups(rows, evaluation_metrics(rows, headline))
    summary = summarize(records_from_rows(label, config.seed, rows))
    cells = [F.CellInfo(label)]

    def lines(metric: str) -> list[F.Series]:
        series = F.line_series(summary, metric, cells)
        se = groups.errors.get(metric)
        if se is None:
            return series
        return F.with_errors(series, {int(r["iteration"]): float(r[se]) for r in rows
                                      if isinstance(r.get(se), (int, float))})

    out: list[dict[str, Any]] = []
    for metric in [m for m in groups.drawn if m in headline]:
        panel = F.Panel(metric, lines(metric))
        band = " (band: +- one standard error)" if metric in groups.errors else ""
        out.append(figure("headline", f"{metric} vs iteration{band}",
                          drawing(F.line_figure, panel.series, metric, title=f"{label}: {metric}"), [panel]))
    panels, title, xlabel = histogram_data([Member(label, config.seed, run, config)])
    if panels:
        out.append(figure("headline", title, drawing(F.histogram_figure, panels, title=title, xlabel=xlabel)))
    for metric in [m for m in groups.drawn if m.endswith("_ece")]:
        alerts = {label: {int(r["iteration"]): int(r[f"{metric}_alert_level"]) for r in rows
                          if isinstance(r.get(f"{metric}_alert_level"), (int, float))}}
        panel = F.Panel(metric, lines(metric))
        out.append(figure("calibration", f"{metric} with early-warning markers",
                          drawing(F.ece_figure, panel.series, alerts, metric), [panel]))
    diversity = [F.Panel(m, lines(m), real_reference({run.path: rows}, m)) for m in DIVERSITY if m in groups.drawn]
    if diversity:
        out.append(figure("diversity", "diversity vs iteration (dotted: the real data)",
                          drawing(F.panels_figure, diversity, title="diversity vs iteration"), diversity))
    rest = [F.Panel(m, lines(m)) for m in groups.drawn if m not in headline]
    for start in range(0, len(rest), 12):
        chunk = rest[start:start + 12]
        banded = [p.metric for p in chunk if p.metric in groups.errors]
        caption = "every metric vs iteration" + (f" (band: +- one standard error, for {', '.join(banded)})"
                                                 if banded else "")
        out.append(figure("metrics", caption, drawing(F.panels_figure, chunk, title="every metric vs iteration"),
                          chunk))
    return out, groups.constants


def write_report(run: RunLayout, *, parts: Callable[[], dict[str, Any]] | None = None,
                 split: bool = False) -> Path | None:
    """Write ``report/report.html`` (self-contained) and the cards; None if no iteration is evaluated.
    With ``parts``, another process computes :func:`page_parts` meanwhile (:mod:`.report_process`):
    the page asks for them (calls ``parts``) once the rest is drawn. ``split``: the figures are
    drawn by this process and a copy of it at once (:func:`draw_figures`; the report process only)."""
    rows = run.read_metrics()
    if not rows:
        return None
    config = run.load_config()
    state = run.read_state()
    here = page_parts(run, config, rows) if parts is None else {}  # the cards first, as ever
    durations = _durations(state)
    figures, constants = run_figures(run, config, rows)
    if durations:  # its numbers are the time table below it
        figures.append(figure("time", "seconds per phase and iteration",
                              drawing(F.phase_time_figure, durations, PHASES)))
    draw_figures(figures, split=split)
    keys = ["iteration"] + sorted({k for r in rows for k in r if k != "iteration"})
    q_iterations, q_prompts = qualitative(run)
    images = [(f"{p.parent.parent.name}: {p.name}", F.file_data_uri(p))
              for p in sorted(run.path.glob("iter_*/evaluate/*.png"))]
    failure = state.failure
    out = run.report_dir / "report.html"
    out.parent.mkdir(exist_ok=True)
    page = dict(
        kind="run", title=config.name, path=str(run.path), summary=config_summary(config),
        identity=identity(config), chain=fingerprints(config)[f"{config.iterations}.evaluate"],
        evaluated=max(r["iteration"] for r in rows), iterations=config.iterations,
        stopped_at=failure.stopped_at if failure else None, stopped_by=failure.stopped_by if failure else None,
        crossings=[c.as_dict() for c in time_to_failure(run, config)] if config.stop_when else [],
        figures=figures, constants=constants, keys=keys, rows=rows, q_iterations=q_iterations,
        q_prompts=q_prompts, durations=durations, images=images)
    atomic_write(out, render(**page, **(here if parts is None else parts())))
    return out


def page_parts(run: RunLayout, config: Config, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run page's parts that read its folders one by one: the cards (written, then listed), the
    lineage and the sample browser. A vector world's run computes them while the report process
    draws the figures (:mod:`.report_process`)."""
    from collapsebench.analysis.cards import write_cards

    write_cards(run, config, rows)
    return {"lineage": lineage(run, config), "samples": sample_rows(run, config),
            "samples_limit": SAMPLES_PER_ITERATION,
            "cards": [os.path.relpath(p, run.report_dir) for p in sorted(run.path.glob("iter_*/*/*/README.md"))]}


# ------------------------------------------------------------------------------------ the sweep page


def _last_iteration_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each (cell, metric)'s last iteration (or the tests' last iteration per metric)."""
    last: dict[tuple[Any, ...], int] = {}
    for r in rows:
        key = (r.get("cell", r.get("cell_b")), r["metric"])
        last[key] = max(last.get(key, 0), int(r["iteration"]))
    return [r for r in rows if int(r["iteration"]) == last[(r.get("cell", r.get("cell_b")), r["metric"])]]


def write_sweep_report(comparison: Comparison, figures: Sequence[tuple[str, str, Path]], out: Path) -> Path:
    """The comparison's page: figures (embedded), statistics, cells (linked to their run pages)."""
    from collapsebench.analysis.cells import cell_rows

    c = comparison
    first = c.members[0]
    title = ", ".join(s.path.name for s in c.sweeps) or ", ".join(sorted({m.cell for m in c.members}))
    cells = []
    for sweep in c.sweeps:
        for row in cell_rows(sweep):
            report = sweep.path / row["dir"] / "report" / "report.html"
            row["link"] = os.path.relpath(report, out.parent) if report.exists() else ""
            cells.append(row)
    shared = None
    if c.sweeps:
        history = c.sweeps[0].manifest().get("history") or [{}]
        shared = {"steps": history[-1].get("shared_steps", 0), "seconds": history[-1].get("shared_seconds_saved", 0.0)}
    notes = list(c.notes)
    for sweep in c.sweeps:
        notes += sweep.manifest().get("notes", [])
    atomic_write(out, render(
        kind="sweep", title=title, path=", ".join(str(s.path) for s in c.sweeps) or str(first.run.path),
        summary=mark_axes(config_summary(first.config), [a for s in c.sweeps for a in s.manifest().get("axes", [])]),
        identity=identity(first.config, without=("seed",)),
        iterations=first.config.iterations, figures=[figure(s, cap, F.file_data_uri(p)) for s, cap, p in figures],
        cells=cells, stats=_last_iteration_rows(c.summary), tests=_last_iteration_rows(c.tests), notes=notes,
        correction=c.correction, reference=c.reference, shared=shared,
        axes=[a for s in c.sweeps for a in s.manifest().get("axes", [])]))
    return out
