"""A sweep's cells at a glance (for ``status`` and the sweep's report): state, progress, latest
headline metric (the first its evaluations declare, :func:`collapsebench.registry.headline_metrics`),
time to failure and the error line of a failed cell, read from the cells' folders."""

from __future__ import annotations

from typing import Any

from collapsebench.layout import SweepLayout
from collapsebench.registry import headline_metrics


def cell_rows(sweep: SweepLayout) -> list[dict[str, Any]]:
    """One row per cell of the manifest, in grid order."""
    out = []
    for cell in sweep.cells():
        status = sweep.cell_status(cell)
        run = sweep.run(cell)
        rows = run.read_metrics() if run.exists() else []
        latest = rows[-1] if rows else {}
        headline = headline_metrics(run.load_config()) if run.exists() else []
        metric = next((m for m in headline if isinstance(latest.get(m), (int, float))), "")
        failure = run.read_state().failure if run.exists() else None
        ttf = "; ".join(f"{c.rule}: {c.iteration if c.iteration is not None else '>' + str(c.evaluated_to)}"
                        for c in (failure.time_to_failure if failure else []))
        out.append({"label": cell["label"], "seed": cell["seed"], "dir": cell["dir"], "state": status.state,
                    "steps": f"{status.steps_done}/{status.steps_total}", "iteration": status.last_iteration,
                    "metric": metric, "value": latest.get(metric) if metric else None, "time_to_failure": ttf,
                    "error": status.error or "", "baseline_of": cell.get("baseline_of")})
    return out
