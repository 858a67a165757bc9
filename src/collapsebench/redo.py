"""What a run of a config over an existing run directory will keep, redo and run: computed from
the committed steps' fingerprints before anything is touched.

A committed step is redone when its fingerprint differs from the config's (its config section,
the user plug-in code it ran, or a step it read from changed), when ``--from`` names it or an
earlier step, or when it lies beyond a lowered ``iterations``. Removing committed work needs the
user's consent (``--yes``, or an answer at a terminal); the removed folders move to
``superseded/`` and are deleted only once their replacements commit.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collapsebench.config import PHASES, Config
from collapsebench.errors import UserError
from collapsebench.journal import CommittedStats, RunState
from collapsebench.layout import CELL_ERROR_FILE, JOBS_FILE, RunLayout, Step, iter_name, parse_step, step_key, step_order
from collapsebench.registry import fingerprints

SUPERSEDED = "superseded"


@dataclass
class Plan:
    fingerprints: dict[str, str]
    redo: dict[str, str] = field(default_factory=dict)  # committed step -> why it is redone
    keep: list[str] = field(default_factory=list)  # committed steps kept as they are

    def describe(self) -> str:
        lines = [f"  redo {key}: {why}" for key, why in self.redo.items()]
        if self.keep:
            lines.append(f"  keep {len(self.keep)} committed step(s): {_span(self.keep)}")
        return "\n".join(lines)


def _span(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]} .. {keys[-1]}"


def check_from(text: str, config: Config) -> Step:
    """``--from ITER.PHASE`` names a step of this config (iteration 0 has only curate)."""
    step = parse_step(text)
    valid = step == (0, "curate") or (1 <= step[0] <= config.iterations and step[1] in PHASES)
    if not valid:
        raise UserError(f"--from {text}: not a step of this config; the steps are 0.curate and "
                        f"K.{{{','.join(PHASES)}}} for K = 1..{config.iterations}")
    return step


def committed_steps(run: RunLayout) -> list[Step]:
    """Every committed (iteration, phase) folder of the run directory, in order."""
    found = []
    for folder in run.path.glob("iter_*/*/stats.json"):
        name = folder.parent.parent.name.removeprefix("iter_")
        if name.isdigit() and folder.parent.name in PHASES:
            found.append((int(name), folder.parent.name))
    return sorted(found, key=step_order)


def make_plan(run: RunLayout, config: Config, start: Step | None) -> Plan:
    plan = Plan(fingerprints(config))
    old = _saved_config(run)
    changed = _changed_keys(old.dump(), config.dump()) if old is not None else []
    for step in committed_steps(run):
        key = step_key(step)
        if step[0] > config.iterations:
            plan.redo[key] = f"beyond iterations = {config.iterations}"
        elif start is not None and step_order(step) >= step_order(start):
            plan.redo[key] = f"--from {step_key(start)}"
        elif CommittedStats.of(run.committed_stats(*step)).fingerprint != plan.fingerprints[key]:
            plan.redo[key] = "stale: " + (", ".join(changed[:6]) + " changed" if changed else "its inputs changed")
        else:
            plan.keep.append(key)
    return plan


def _saved_config(run: RunLayout) -> Config | None:
    try:
        return run.load_config() if run.exists() else None
    except UserError:
        return None


def _changed_keys(old: Any, new: Any, prefix: str = "", depth: int = 2) -> list[str]:
    """Dotted keys whose values differ (down to ``depth`` levels)."""
    if old == new:
        return []
    if depth == 0 or not isinstance(old, dict) or not isinstance(new, dict):
        return [prefix or "<config>"]
    out = []
    for key in sorted(set(old) | set(new)):
        out += _changed_keys(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else key, depth - 1)
    return out


def confirm(plan: Plan, run: RunLayout, yes: bool, ask: bool) -> None:
    """Consent to remove committed work: ``--yes``, or an answer at a terminal; else one error that
    shows the plan (nothing has been touched)."""
    if not plan.redo or yes:
        return
    message = f"{run.path}: this would redo {len(plan.redo)} committed step(s):\n{plan.describe()}"
    if ask:
        from collapsebench.console import console

        console.print(message)
        if input("Move them to superseded/ and redo them? [y/N] ").strip().lower() in ("y", "yes"):
            return
        raise UserError("nothing changed")
    raise UserError(f"{message}\nAdd --yes to redo them (they move to {SUPERSEDED}/ until their replacements "
                    "commit), or choose a new output_dir.")


def supersede(run: RunLayout, plan: Plan, state: RunState) -> Path | None:
    """Move the folders of the steps to redo into ``superseded/<time>/`` and drop their journal
    entries; return that folder."""
    if not plan.redo:
        return None
    target = run.path / SUPERSEDED / time.strftime("%Y%m%d-%H%M%S")
    for key in plan.redo:
        iteration, phase = parse_step(key)
        for folder in (run.phase_dir(iteration, phase), run.tmp_dir(iteration, phase)):
            if folder.exists():
                dest = target / iter_name(iteration) / folder.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(folder, dest)
        state.drop(key)
    return target


def release(run: RunLayout, step: Step) -> None:
    """A step committed again: its superseded copies go, and folders left empty with them."""
    root = run.path / SUPERSEDED
    if not root.exists():
        return
    for copy in root.glob(f"*/{iter_name(step[0])}/{step[1]}"):
        shutil.rmtree(copy)
    for folder in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    if not any(root.iterdir()):
        root.rmdir()


def check_run_dir(config: Config) -> None:
    """The run directory may not be the working directory, one of its parents, or a folder that
    holds other files: a run writes many files and must not scatter them where the user works."""
    path = config.run_dir()
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents or path == Path(path.anchor):
        raise UserError(f"output_dir: the run directory {path} is the working directory or holds it; "
                        "choose a folder of its own (the default is runs/<name>)")
    # a run, possibly killed before its config was written, or a sweep cell an executor is about to start
    # (its task spec in .tasks/, its SLURM or Ray jobs in jobs.jsonl, the error of an earlier attempt)
    ours = ("config.yaml", "state.json", ".lock", ".locks", ".tasks", JOBS_FILE, CELL_ERROR_FILE)
    if path.is_dir() and any(path.iterdir()) and not any((path / name).exists() for name in ours):
        raise UserError(f"output_dir: {path} already holds files that are not a collapsebench run; "
                        "choose an empty or new folder")
