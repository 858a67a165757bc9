"""The four phases. Each reads committed folders of the run directory and writes its own work
folder; :func:`execute` runs one (iteration, phase) and commits it atomically."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path
from typing import Any

from collapsebench.config import phase_seed
from collapsebench.context import PhaseContext
from collapsebench.plugins import load_plugins
from collapsebench.run import RunDir, commit, fingerprints

FINGERPRINT_FILE = ".fingerprint"


def quiet_libraries() -> None:
    """Silence the progress bars and notices of datasets / transformers / the hub client; the
    phases draw their own progress (rich) and the Trainer its bar on a terminal."""
    import os
    import sys

    for var, value in (("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                       ("TRANSFORMERS_VERBOSITY", "error"), ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(var, value)
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging

        logging.set_verbosity_error()
        logging.disable_progress_bar()


def execute(run_path: str | Path, iteration: int, phase: str) -> dict[str, Any]:
    """Run one phase of one iteration from the run directory's config; commit it; return its stats.

    Work left in ``<phase>.tmp/`` by an interrupted attempt under the same fingerprint is kept,
    so the phase can resume (training checkpoints, finished generation shards)."""
    quiet_libraries()
    run = RunDir(run_path)
    config = run.load_config()
    load_plugins(config)
    fingerprint = fingerprints(config, max(iteration, 1))[f"{iteration}.{phase}"]
    tmp = run.tmp_dir(iteration, phase)
    marker = tmp / FINGERPRINT_FILE
    if tmp.exists() and (not marker.exists() or marker.read_text() != fingerprint):
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint)
    ctx = PhaseContext(config=config, run_dir=run.path, iteration=iteration, phase=phase,
                       seed=phase_seed(config.seed, iteration, phase), out_dir=tmp)
    module = importlib.import_module(f"collapsebench.phases.{phase}")
    stats = dict(module.run(ctx) or {})
    stats.update(iteration=iteration, phase=phase, seed=ctx.seed, fingerprint=fingerprint)
    json.dumps(stats, default=float)  # fail before committing if stats are not serialisable
    commit(tmp, run.phase_dir(iteration, phase), stats)
    return stats
