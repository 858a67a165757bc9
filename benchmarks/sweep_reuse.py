"""Shared steps in a sweep: a quickstart-sized LM sweep (2 alphas x 2 seeds) with and without sharing.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/sweep_reuse.py --iterations 3 --workers 2

Runs ``collapsebench sweep configs/quickstart.yaml --grid curate.regime.alpha=[0.5, 1.0] --grid
seed=[0, 1]`` twice, once as it runs by default (the steps both alphas of a seed have in common,
iteration 0 and iteration 1, computed once and hard-linked) and once with ``--no-share``, each on
``--workers`` local processes, and writes benchmarks/results/sweep_reuse.json: the wall time of
each sweep, the seconds its cells' steps took (the sum of the journals' step durations: the
compute spent), the steps shared and the seconds they took where they ran (the compute saved), and
whether every cell ended with the same metrics both ways.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOLATILE = ("per_second", "seconds")  # wall-clock rates, not results


def sweep(out: Path, iterations: int, workers: int, share: bool) -> dict[str, object]:
    from collapsebench.layout import SweepLayout
    from collapsebench.sweep.runner import shared_summary

    argv = [sys.executable, "-m", "collapsebench", "sweep", str(ROOT / "configs" / "quickstart.yaml"),
            f"iterations={iterations}", f"output_dir={out}", "--grid", "curate.regime.alpha=[0.5, 1.0]",
            "--grid", "seed=[0, 1]", "--workers", str(workers), *([] if share else ["--no-share"])]
    start = time.perf_counter()
    subprocess.run(argv, check=True, env={**os.environ, "COLLAPSEBENCH_PROGRESS": "0"})
    wall = time.perf_counter() - start
    layout = SweepLayout(out)
    step_seconds = sum(float(r.duration_s or 0.0) for c in layout.cells() for _, r in layout.run(c).read_state().records())
    metrics = {c["dir"]: [{k: v for k, v in r.items() if not any(x in k for x in VOLATILE)}
                          for r in layout.run(c).read_metrics()] for c in layout.cells()}
    shared = shared_summary(layout)
    return {"wall_s": round(wall, 1), "step_seconds": round(step_seconds, 1), "shared_steps": shared["steps"],
            "shared_seconds_saved": shared["seconds_saved"], "shared": shared["rows"], "metrics": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sweep_reuse.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        shared = sweep(Path(tmp) / "shared", args.iterations, args.workers, share=True)
        alone = sweep(Path(tmp) / "alone", args.iterations, args.workers, share=False)
    same = shared.pop("metrics") == alone.pop("metrics")
    result = {
        "command": f"OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/sweep_reuse.py --iterations {args.iterations} "
                   f"--workers {args.workers}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other work), "
                   f"{platform.python_implementation()} {platform.python_version()}",
        "grid": "configs/quickstart.yaml, curate.regime.alpha in [0.5, 1.0] x seed in [0, 1]",
        "iterations": args.iterations, "with_sharing": shared, "without_sharing": alone,
        "compute_saved_s": round(float(alone["step_seconds"]) - float(shared["step_seconds"]), 1),  # type: ignore[arg-type]
        "wall_saved_s": round(float(alone["wall_s"]) - float(shared["wall_s"]), 1),  # type: ignore[arg-type]
        "same_metrics": same,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("with_sharing", "without_sharing")}, indent=1))


if __name__ == "__main__":
    main()
