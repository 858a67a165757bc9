"""What each executor costs: submit-to-start latency of a trivial task, and the quickstart's phase
times under each executor against the inline run.

    eval "$(../shared/tools/local-slurm start)"      # for the SLURM rows (skipped without a cluster)
    python benchmarks/executors.py                    # latency + quickstart iterations=1 per executor (~10 min)
    python benchmarks/executors.py --latency-only     # the latencies alone (~1 min)

Latency: a task whose target writes the time it starts; ``submit`` is the moment ``submit`` is
called (SLURM and Ray submit in ``wait``, which follows at once), ``start`` the target's first
line, ``done`` the moment ``wait`` returns. Five tasks one after another per executor (``--repeat``), plus, for Ray,
five in one call on the actor pool (the first starts the actors, the rest reuse them); Ray's own
start (``ray.init``) is reported apart. Quickstart: ``collapsebench run configs/quickstart.yaml
iterations=1`` with each executor (and with ``train.launcher`` torchrun x 2), one after the other,
per-phase seconds from the journal, wall seconds of the whole command, and the holdout perplexity
(which must agree with inline; torchrun's within 5%). The machine is shared: figures are noisy.

Writes ``benchmarks/results/executors.json`` (``--out``) with the date, machine, commit and command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "executors.json"
PHASES = ("curate", "train", "generate", "evaluate")
RUNS = {
    "inline": [],
    "subprocess": ["executor=subprocess"],
    "ray": ["executor={name: ray, address: local}"],
    "slurm": ["executor={name: slurm, partition: debug}"],
    "slurm, 9 tasks per job": ["executor={name: slurm, partition: debug, tasks_per_job: 9}"],
    "torchrun x2": ["train.launcher={name: torchrun, nproc_per_node: 2}"],
}


def stamp(path: str) -> None:
    """The task of the latency measurement: write when it started."""
    Path(path).write_text(repr(time.time()))


def have_slurm() -> bool:
    return bool(shutil.which("sbatch")) and subprocess.run(["squeue"], capture_output=True).returncode == 0


def latency(name: str, spec: dict[str, Any], work: Path, repeat: int) -> dict[str, Any]:
    """Submit-to-start and submit-to-done of ``repeat`` trivial tasks, one at a time."""
    from collapsebench.api import Resources, Task
    from collapsebench.registry import executors

    executor = executors.call(name, key="executor", kwargs=spec)
    run_dir = work / name
    run_dir.mkdir(parents=True)
    starts, dones = [], []
    for i in range(repeat):
        out = run_dir / f"start{i}"
        task = Task(key=f"latency{i}", target="benchmarks.executors:stamp", run_dir=str(run_dir),
                    kwargs={"path": str(out)})
        t0 = time.time()
        executor.wait([executor.submit(task, Resources())])
        dones.append(time.time() - t0)
        starts.append(float(out.read_text()) - t0)
    executor.close()
    return {"submit_to_start_s": summary(starts), "submit_to_done_s": summary(dones), "repeat": repeat}


def ray_latency(work: Path, repeat: int) -> dict[str, Any]:
    """Ray: its start, one-off tasks (a fresh worker each, as for a whole phase) and tasks of a phase
    on the actor pool (the first call starts the actors)."""
    import ray

    from collapsebench.executors.ray import RayExecutor

    t0 = time.time()
    executor = RayExecutor(address="local", workers=1)
    executor.connect()
    init_s = time.time() - t0
    out = latency_with(executor, work / "ray-task", repeat, context=None)
    pool_first = latency_with(executor, work / "ray-pool-first", 1, context=(1, "generate"))
    pool = latency_with(executor, work / "ray-pool", repeat, context=(1, "generate"))
    executor.close()
    ray.shutdown()
    return {"ray_init_s": round(init_s, 3), "task": out, "actor_pool_first_task": pool_first,
            "actor_pool_warm": pool}


def latency_with(executor: Any, run_dir: Path, repeat: int, context: tuple[int, str] | None) -> dict[str, Any]:
    from collapsebench.api import Resources, Task

    run_dir.mkdir(parents=True)
    if context is not None:  # a task of a phase: the worker rebuilds the phase's context from a run directory
        make_run(run_dir)
    starts, dones = [], []
    for i in range(repeat):
        out = run_dir / f"start{i}"
        target = "benchmarks.executors:stamp_in_phase" if context else "benchmarks.executors:stamp"
        task = Task(key=f"latency{i}", target=target, run_dir=str(run_dir), kwargs={"path": str(out)}, context=context)
        t0 = time.time()
        executor.wait([executor.submit(task, Resources())])
        dones.append(time.time() - t0)
        starts.append(float(out.read_text()) - t0)
    return {"submit_to_start_s": summary(starts), "submit_to_done_s": summary(dones), "repeat": repeat}


def stamp_in_phase(ctx: Any, path: str) -> None:
    stamp(path)


def make_run(run_dir: Path) -> None:
    from collapsebench.config import load_config
    from collapsebench.run import RunDir

    RunDir(run_dir).save_config(load_config(REPO / "configs" / "quickstart.yaml", [f"output_dir={run_dir}"]))


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def quickstart(name: str, overrides: list[str], work: Path) -> dict[str, Any]:
    out = work / name.replace(" ", "_")
    cmd = [sys.executable, "-m", "collapsebench", "run", "configs/quickstart.yaml", "iterations=1", f"output_dir={out}",
           *overrides]
    start = time.time()
    done = subprocess.run(cmd, cwd=REPO, env=environment(), capture_output=True, text=True)
    wall = time.time() - start
    if done.returncode != 0:
        return {"error": done.stdout[-1500:] + done.stderr[-1500:]}
    steps = json.loads((out / "state.json").read_text())["steps"]
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    return {"wall_s": round(wall, 2), "phases_s": {p: round(sum(e.get("duration_s", 0) for k, e in steps.items()
                                                               if k.endswith("." + p)), 2) for p in PHASES},
            "holdout_perplexity": row["holdout_perplexity"], "command": " ".join(cmd[1:])}


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLLAPSEBENCH_PROGRESS": "0", "RAY_AUTH_MODE": "disabled",
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-only", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", action="append", choices=list(RUNS),
                        help="run only these quickstart rows (no latency), updating the rows of --out")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    os.environ.update({k: v for k, v in environment().items() if k != "PYTHONPATH"})
    os.environ["PYTHONPATH"] = environment()["PYTHONPATH"]  # the workers import this file's stamp()
    sys.path[:0] = [str(REPO / "src"), str(REPO)]
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
        "cpus": os.cpu_count(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip(),
        "latency": {}, "quickstart": {}, "skipped": {}}
    slurm = have_slurm()
    if args.only:
        result = json.loads(args.out.read_text())
        with tempfile.TemporaryDirectory(prefix="collapsebench-executors-") as tmp:
            for name in args.only:
                result["quickstart"][name] = quickstart(name, RUNS[name], Path(tmp))
                print(name, json.dumps(result["quickstart"][name]), flush=True)
        return write(result, args.out)
    with tempfile.TemporaryDirectory(prefix="collapsebench-executors-") as tmp:
        work = Path(tmp)
        result["latency"]["inline"] = latency("inline", {}, work, args.repeat)
        result["latency"]["subprocess"] = latency("subprocess", {}, work, args.repeat)
        if slurm:
            result["latency"]["slurm"] = latency("slurm", {"partition": "debug", "poll_s": 0.2}, work, args.repeat)
        else:
            result["skipped"]["slurm"] = "no SLURM cluster reachable"
        result["latency"]["ray"] = ray_latency(work, args.repeat)
        print(json.dumps(result["latency"], indent=1), flush=True)
        if not args.latency_only:
            for name, overrides in RUNS.items():
                if name.startswith("slurm") and not slurm:
                    result["skipped"][name] = "no SLURM cluster reachable"
                    continue
                result["quickstart"][name] = quickstart(name, overrides, work)
                print(name, json.dumps(result["quickstart"][name]), flush=True)
    return write(result, args.out)


def write(result: dict[str, Any], out: Path) -> int:
    """Each row's wall time against inline, then the JSON."""
    base = result["quickstart"].get("inline", {})
    for row in result["quickstart"].values():
        if "wall_s" in row and "wall_s" in base:
            row["wall_vs_inline"] = round(row["wall_s"] / base["wall_s"], 2)
            row["overhead_s"] = round(row["wall_s"] - base["wall_s"], 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
