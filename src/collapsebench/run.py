"""The run directory: layout, journal (state.json), lock, atomic phase commit, fingerprints.

    runs/<name>/
      config.yaml      resolved config snapshot
      state.json       journal, written only by the driver, atomically
      metrics.jsonl    one row per evaluated iteration (rebuilt from committed phases)
      iter_000/curate/ the real data, prepared once: real/, holdout/, tokenizer/
      iter_001/{curate,train,generate,evaluate}/
      report/

A phase writes into ``<phase>.tmp/``; its last act is the rename to ``<phase>/``, so a committed
folder proves the phase finished. The journal records, per (iteration, phase), status, times, seed,
fingerprint and stats.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from collapsebench.config import PHASES, Config, config_from_dict, digest, phase_seed, read_yaml
from collapsebench.context import iter_name
from collapsebench.errors import UserError

CONFIG_FILE = "config.yaml"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".lock"

Step = tuple[int, str]


def steps(iterations: int) -> list[Step]:
    """The order of work: iteration 0 prepares the real data, then the loop."""
    return [(0, "curate")] + [(k, p) for k in range(1, iterations + 1) for p in PHASES]


def step_key(step: Step) -> str:
    return f"{step[0]}.{step[1]}"


def parse_step(text: str) -> Step:
    """'3.train' -> (3, 'train')."""
    it, _, phase = text.partition(".")
    if not it.isdigit() or phase not in PHASES:
        raise UserError(f"'{text}' is not ITERATION.PHASE (phase one of {', '.join(PHASES)}), e.g. 2.train")
    return int(it), phase


def atomic_write(path: Path, text: str) -> None:
    """Write to a temp file, fsync it, rename it over ``path``: readers see the old or the new
    content, never a mix, whenever the writer dies."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ fingerprints

def _pick(dumped: dict[str, Any], dotted: str) -> Any:
    node: Any = dumped
    for part in dotted.split("."):
        node = node[part]
    return node


# What each step depends on directly; the fingerprint also folds in the steps it reads from.
_SECTIONS = {
    "prepare": ("seed", "plugins", "data", "model.tokenizer", "model.init", "model.base"),
    "curate": ("curate",),
    "train": ("model", "train"),
    "generate": ("generate",),
    "evaluate": ("evaluate",),
}


def fingerprints(config: Config, iterations: int | None = None) -> dict[str, str]:
    """Fingerprint of every step: its config sections plus the fingerprints of its inputs."""
    dumped = config.dump()
    own = {name: digest({s: _pick(dumped, s) for s in secs}) for name, secs in _SECTIONS.items()}
    out: dict[str, str] = {"0.curate": own["prepare"]}
    for k in range(1, (iterations or config.iterations) + 1):
        upstream = out["0.curate"] if k == 1 else out[f"{k - 1}.generate"]
        out[f"{k}.curate"] = digest([own["curate"], out["0.curate"], upstream])
        out[f"{k}.train"] = digest([own["train"], out[f"{k}.curate"]])
        out[f"{k}.generate"] = digest([own["generate"], out[f"{k}.train"]])
        out[f"{k}.evaluate"] = digest([own["evaluate"], out[f"{k}.generate"]])
    return out


# ------------------------------------------------------------------------------ the run dir

class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        self._lock_fh: Any = None

    # layout
    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def state_file(self) -> Path:
        return self.path / STATE_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def report_dir(self) -> Path:
        return self.path / "report"

    def phase_dir(self, iteration: int, phase: str) -> Path:
        return self.path / iter_name(iteration) / phase

    def tmp_dir(self, iteration: int, phase: str) -> Path:
        return self.path / iter_name(iteration) / f"{phase}.tmp"

    def exists(self) -> bool:
        return self.config_file.exists()

    # config snapshot
    def load_config(self) -> Config:
        if not self.config_file.exists():
            raise UserError(f"{self.path} is not a collapsebench run directory (no {CONFIG_FILE})")
        raw = read_yaml(self.config_file.read_text())
        return config_from_dict(raw, str(self.config_file))

    def save_config(self, config: Config) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.config_file, yaml.safe_dump(config.dump(), sort_keys=False))

    # journal
    def read_state(self) -> dict[str, Any]:
        if not self.state_file.exists():
            return {"version": 1, "steps": {}}
        try:
            return json.loads(self.state_file.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{self.state_file} is corrupt: {exc}") from None

    def write_state(self, state: dict[str, Any]) -> None:
        # one step per line: readable, and encoded by json's C encoder (indent= would not use it)
        head = {k: v for k, v in state.items() if k != "steps"}
        lines = [f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True, default=float)}" for k, v in state["steps"].items()]
        body = json.dumps(head, sort_keys=True)[:-1] + (", " if head else "") + '"steps": {\n' + ",\n".join(lines) + "\n}}\n"
        atomic_write(self.state_file, body)

    # lock
    def lock(self) -> None:
        """Hold an exclusive lock on the run directory (released when the process dies)."""
        self.path.mkdir(parents=True, exist_ok=True)
        fh = open(self.path / LOCK_FILE, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            owner = fh.read().strip() or "another process"
            fh.close()
            raise UserError(f"run directory {self.path} is in use by {owner}; wait for it or stop it") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        self._lock_fh = fh

    def unlock(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    # phase folders
    def is_committed(self, iteration: int, phase: str) -> bool:
        return (self.phase_dir(iteration, phase) / "stats.json").exists()

    def committed_stats(self, iteration: int, phase: str) -> dict[str, Any]:
        return json.loads((self.phase_dir(iteration, phase) / "stats.json").read_text())

    def remove_step(self, iteration: int, phase: str) -> None:
        for path in (self.phase_dir(iteration, phase), self.tmp_dir(iteration, phase)):
            if path.exists():
                shutil.rmtree(path)

    def evaluated_iterations(self) -> Iterator[int]:
        for path in sorted(self.path.glob("iter_*/evaluate/metrics.json")):
            yield int(path.parent.parent.name.split("_")[1])

    def metrics_row(self, k: int) -> dict[str, Any]:
        """Iteration k's row: its evaluation metrics plus the ``metrics`` of its other phases."""
        row: dict[str, Any] = {"iteration": k}
        for phase in ("curate", "train", "generate"):
            if self.is_committed(k, phase):
                summary = self.committed_stats(k, phase).get("metrics", {})
                row.update({f"{phase}/{key}": v for key, v in summary.items()})
        row.update(json.loads((self.phase_dir(k, "evaluate") / "metrics.json").read_text()))
        return row

    def rebuild_metrics(self, iteration: int | None = None) -> list[dict[str, Any]]:
        """Rewrite metrics.jsonl from the committed phases (one row per evaluated iteration).

        With ``iteration``, rows of earlier iterations are kept from the file (they cannot have
        changed: steps run in order) and only that iteration's row is read from its folders."""
        evaluated = list(self.evaluated_iterations())
        if iteration is None:
            rows = [self.metrics_row(k) for k in evaluated]
        else:
            kept = {r["iteration"]: r for r in self.read_metrics() if r["iteration"] < iteration}
            rows = [kept.get(k) or self.metrics_row(k) for k in evaluated if k <= iteration]
        atomic_write(self.metrics_file, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        return rows

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_file.exists():
            return []
        return [json.loads(line) for line in self.metrics_file.read_text().splitlines() if line.strip()]


def commit(tmp: Path, final: Path, stats: dict[str, Any]) -> None:
    """Write stats.json into the work folder, then rename it to its final name (atomic)."""
    atomic_write(tmp / "stats.json", json.dumps(stats, indent=1, sort_keys=True, default=float))
    cache = tmp / ".cache"
    if cache.exists():
        shutil.rmtree(cache)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def now() -> float:
    return round(time.time(), 3)


__all__ = ["RunDir", "commit", "fingerprints", "steps", "step_key", "parse_step", "phase_seed", "now"]
