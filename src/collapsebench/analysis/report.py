"""The run's report: plots of every metric across iterations and an HTML page with the table."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from collapsebench.layout import RunLayout

HEADLINE = "holdout_perplexity"


def numeric_series(rows: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """metric -> (iterations, values) for every numeric metric."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for row in rows:
        for key, value in row.items():
            if key == "iteration" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            xs, ys = series.setdefault(key, ([], []))
            xs.append(row["iteration"])
            ys.append(float(value))
    return series


def plot_metric(xs: list[int], ys: list[float], name: str, path: Path, title: str = "") -> None:
    """One line plot. Drawn on a bare ``Figure`` with fixed margins: pyplot's figure manager and
    ``tight_layout`` (a second text layout pass) cost 40% of a plot, and a run draws one per metric."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2))
    ax = fig.add_subplot()
    ax.plot(xs, ys, marker="o")
    ax.set_xlabel("iteration")
    ax.set_ylabel(name)
    ax.set_title(title or name)
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.21, right=0.97, bottom=0.15, top=0.9)
    fig.savefig(path, dpi=110)


def write_report(run: RunLayout) -> Path | None:
    """Write report/<metric>.png for every numeric metric and report/report.html; None if no metrics yet."""
    rows = run.read_metrics()
    if not rows:
        return None
    out = run.report_dir
    out.mkdir(exist_ok=True)
    series = numeric_series(rows)
    name = run.load_config().name
    images = []
    for metric, (xs, ys) in sorted(series.items(), key=lambda kv: (kv[0] != HEADLINE, kv[0])):
        file = metric.replace("/", "__") + ".png"
        plot_metric(xs, ys, metric, out / file, title=f"{name}: {metric}")
        images.append(file)
    keys = ["iteration"] + sorted({k for r in rows for k in r if k != "iteration"})
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(r.get(k))}</td>" for k in keys) + "</tr>" for r in rows
    )
    figures = "".join(f'<img src="{html.escape(f)}" alt="{html.escape(f)}">' for f in images)
    # images that evaluations wrote (e.g. generated digits), one row per iteration
    gallery = "".join(
        f"<h3>{html.escape(p.parent.parent.name)}: {html.escape(p.name)}</h3>"
        f'<img src="../{html.escape(str(p.relative_to(run.path)))}" alt="{html.escape(p.name)}">'
        for p in sorted(run.path.glob("iter_*/evaluate/*.png"))
    )
    page = (f"<!doctype html><meta charset='utf-8'><title>{html.escape(name)}</title>"
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:2px 6px;font-size:12px}img{width:420px}</style>"
            f"<h1>{html.escape(name)}</h1><p>{html.escape(str(run.path))}</p>"
            f"<table><tr>{head}</tr>{body}</table><h2>Metrics per iteration</h2>{figures}"
            + (f"<h2>Images per iteration</h2>{gallery}" if gallery else ""))
    (out / "report.html").write_text(page)
    return out / "report.html"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.5g}"
    return html.escape("" if value is None else str(value))
