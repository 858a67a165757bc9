"""Experiment trackers: mirror a run's config, per-iteration metrics and sample tables elsewhere.

A tracker is made by ``trackers.get(name)(config_dict, run_dir, **kwargs)`` and offers
``log_iteration(iteration, metrics, samples)`` (``samples``: a ``datasets.Dataset`` or None) and
``finish()``. Built in: ``wandb`` (Weights & Biases, the ``wandb`` extra)::

    tracker: {name: wandb, project: collapse, mode: offline}    # online | offline | disabled

The W&B run id is kept in ``<run_dir>/wandb_run_id`` so a resumed run keeps logging into the same
W&B run. Files go to ``$WANDB_DIR`` when set, else into the run directory. ``collapsebench sweep``
sets ``group`` to the sweep's name and ``axes`` to the cell's axis values (``{"curate.regime.alpha":
0.5, "seed": 1}``), which become top-level config keys of the W&B run.
"""

from __future__ import annotations

import math
import os
import secrets
from pathlib import Path
from typing import Any, Literal, get_args

from collapsebench.errors import UserError

WandbMode = Literal["online", "offline", "disabled"]
WANDB_MODES = get_args(WandbMode)
SAMPLE_COLUMNS = ("id", "origin", "generation", "parent")


class WandbTracker:
    """Weights & Biases: config at start, one step per iteration, a table of samples per iteration."""

    def __init__(self, config: dict[str, Any], run_dir: str | Path, *, project: str = "collapsebench",
                 entity: str | None = None, mode: WandbMode = "online", name: str | None = None, group: str | None = None,
                 tags: list[str] | None = None, sample_rows: int = 50, text_field: str | None = None,
                 dir: str | None = None, axes: dict[str, Any] | None = None):
        if mode not in WANDB_MODES:
            raise UserError(f"tracker wandb: mode must be one of {', '.join(WANDB_MODES)}, got '{mode}'")
        try:
            import wandb
        except ImportError:
            raise UserError("tracker 'wandb' needs the wandb package: pip install 'collapsebench[wandb]'") from None
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.sample_rows = sample_rows
        self.text_field = text_field or (config.get("data") or {}).get("text_field", "text")
        id_file = self.run_dir / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
        id_file.write_text(run_id)
        self._wandb = wandb
        if axes:  # a sweep cell: its axis values as top-level config keys, to filter and group by
            config = {**config, **axes}
        self.run = wandb.init(project=project, entity=entity, name=name or config.get("name"), group=group,
                              tags=tags, config=config, mode=mode, id=run_id, resume="allow",
                              dir=dir or os.environ.get("WANDB_DIR") or str(self.run_dir))
        self.run.define_metric("iteration")
        self.run.define_metric("*", step_metric="iteration")

    def log_iteration(self, iteration: int, metrics: dict[str, Any], samples: Any = None) -> None:
        """Log one iteration's numeric metrics and (up to ``sample_rows``) samples as a table."""
        row: dict[str, Any] = {"iteration": iteration}
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or key == "iteration":
                continue
            row[key] = float(value) if not math.isnan(float(value)) else None
        if samples is not None and len(samples) and self.sample_rows > 0:
            head = samples.select(range(min(self.sample_rows, len(samples))))
            cols = [c for c in (*SAMPLE_COLUMNS, self.text_field) if c in head.column_names]
            data = [[r[c] for c in cols] for r in head]
            row["samples"] = self._wandb.Table(columns=["iteration", *cols], data=[[iteration, *d] for d in data])
        self.run.log(row)

    def finish(self) -> None:
        """Finish the run and wait until its records are on disk (or sent).

        ``run.finish()`` returns once the W&B service has acknowledged the run's exit, but the service
        (one ``wandb-core`` process per Python process, kept by the ``wandb.setup()`` singleton and
        shared by every run the process starts) writes and closes the run's files after that, on its
        own schedule: reading the offline run right after ``finish()`` raced with it, and lost when
        the machine was busy. ``wandb.teardown()`` waits for the service to finish every stream and
        stops it; the next run starts a fresh one."""
        self.run.finish()
        self._wandb.teardown()
