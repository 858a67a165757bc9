"""What a sweep of a vector world costs against its cells run one by one.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/toy_sweep.py        # ~1 min on 2 idle cores

Side by side in one invocation, each in a fresh process and a temporary folder:

* the 4 cells standalone: ``collapsebench run configs/toy/gaussian_accumulate.yaml seed=S`` for
  S = 100..103 (100 iterations each), one after the other;
* the same 4 cells as one sweep: ``collapsebench sweep configs/toy/gaussian_accumulate.yaml --grid
  'seed=[100,101,102,103]' --name t4`` (its default executor: 2 local processes), its report
  included.

The figure is the sweep's wall time over the sum of the standalone times divided by the sweep's
workers (the target is at most 1.3), and the same for the sweep's cells alone (the time between
the start and the end of its driver's session, from ``sweep.json``: without the interpreter start,
the checks of every cell's config and the comparison report); each cell's ``metrics.jsonl`` must
equal its standalone run's. CPU seconds (each command's and its children's, from ``wait4``) are
compared too: unlike wall time they do not depend on the cores the machine's other work leaves.
Writes benchmarks/results/toy_sweep.json with the command, the date and the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import machine, write_result

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "toy" / "gaussian_accumulate.yaml"
SEEDS = (100, 101, 102, 103)
WORKERS = 2  # the sweep executor's default (SweepConfig.executor)


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of ``cmd`` run to completion in ``cwd``, the CPU of the processes it
    waited for included (``wait4``); exit on failure, with its output."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            out.seek(0)
            sys.exit(f"{' '.join(cmd)} failed:\n{out.read().decode(errors='replace')[-4000:]}")
    return round(wall, 3), round(usage.ru_utime + usage.ru_stime, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "toy_sweep.json",
                        help="result file ('-': print only)")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "COLLAPSEBENCH_PROGRESS": "0",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cli = [sys.executable, "-m", "collapsebench"]
    load_before = os.getloadavg()
    started = dt.datetime.now(dt.timezone.utc)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        standalone, cpu = {}, {}
        for seed in SEEDS:
            where = root / f"standalone-{seed}"
            where.mkdir()
            standalone[seed], cpu[seed] = timed([*cli, "run", str(CONFIG), f"seed={seed}", f"iterations={args.iterations}"],
                                     where, env)
            print(f"standalone seed {seed}: {standalone[seed]} s", file=sys.stderr, flush=True)
        (root / "sweep").mkdir()
        sweep_s, sweep_cpu = timed([*cli, "sweep", str(CONFIG), f"iterations={args.iterations}", "--grid",
                         f"seed=[{','.join(map(str, SEEDS))}]", "--name", "t4"], root / "sweep", env)
        print(f"sweep: {sweep_s} s", file=sys.stderr, flush=True)
        manifest = json.loads((root / "sweep" / "runs" / "t4" / "sweep.json").read_text())
        session = manifest["history"][-1]  # when the sweep's driver started and finished running the cells
        identical = {}
        for cell in manifest["cells"]:
            ours = (root / "sweep" / "runs" / "t4" / cell["dir"] / "metrics.jsonl").read_text()
            alone = (root / f"standalone-{cell['seed']}" / "runs" / "gaussian_accumulate" / "metrics.jsonl").read_text()
            identical[str(cell["seed"])] = ours == alone
    per_worker = sum(standalone.values()) / WORKERS
    result = {
        "benchmark": "toy_sweep", "date": started.isoformat(timespec="seconds"),
        "command": ("OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/toy_sweep.py " + " ".join(sys.argv[1:])).strip(),
        "machine": machine(int(env["OMP_NUM_THREADS"]), load_before), "iterations": args.iterations,
        "workers": WORKERS, "standalone_s": {str(s): w for s, w in standalone.items()},
        "standalone_sum_s": round(sum(standalone.values()), 3), "sweep_s": sweep_s,
        "sweep_over_standalone_per_worker": round(sweep_s / per_worker, 3), "target": 1.3,
        # the sweep's wall split: the cells (from the manifest's session record), and the rest (interpreter
        # start, the grid expanded and every cell's config checked, then the comparison report)
        "sweep_cells_s": round(session["finished"] - session["started"], 3),
        "sweep_cells_over_standalone_per_worker": round((session["finished"] - session["started"]) / per_worker, 3),
        # CPU seconds do not depend on how many cores the machine's other work leaves free
        "standalone_cpu_sum_s": round(sum(cpu.values()), 3), "sweep_cpu_s": sweep_cpu,
        "sweep_cpu_over_standalone_cpu": round(sweep_cpu / sum(cpu.values()), 3),
        "metrics_identical_to_standalone": identical,
    }
    write_result(result, None if str(args.out) == "-" else args.out,
                 ("sweep_s", "standalone_sum_s", "sweep_over_standalone_per_worker", "sweep_cells_s",
                  "sweep_cells_over_standalone_per_worker", "sweep_cpu_over_standalone_cpu",
                  "metrics_identical_to_standalone"))


if __name__ == "__main__":
    main()
