"""How close `collapsebench plan --calibrate` comes to the measured phase times of the quickstart.

    python benchmarks/plan_calibration.py            # calibrate, then run the quickstart (~6 min on 2 cores)

First ``collapsebench plan configs/quickstart.yaml --calibrate --json`` (two reduced runs of
iteration 1 on this machine, each phase fitted as fixed + FLOPs / rate), then the quickstart itself
(``collapsebench run configs/quickstart.yaml``, 5 iterations, a cold token cache); for every phase,
the seconds the plan predicted for the whole run against the seconds the journal measured
(``state.json``, summed over iterations; curate includes iteration 0), and their ratio. The plan
is meant to land within 2x. The machine is shared: times are noisy.

Writes ``benchmarks/results/plan_calibration.json`` (``--out``) with the date, machine, commit and
commands.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "plan_calibration.json"
CONFIG = "configs/quickstart.yaml"
PHASES = ("curate", "train", "generate", "evaluate")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLLAPSEBENCH_PROGRESS": "0",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with tempfile.TemporaryDirectory(prefix="collapsebench-plan-bench-") as tmp:
        plan_cmd = [sys.executable, "-m", "collapsebench", "plan", CONFIG, "--calibrate", "--json"]
        start = time.time()
        done = subprocess.run(plan_cmd, cwd=REPO, env=env, capture_output=True, text=True, check=True)
        calibrate_s = time.time() - start
        plan = json.loads(done.stdout)
        run_cmd = [sys.executable, "-m", "collapsebench", "run", CONFIG, f"output_dir={Path(tmp) / 'run'}"]
        start = time.time()
        subprocess.run(run_cmd, cwd=REPO, env={**env, "COLLAPSEBENCH_CACHE": str(Path(tmp) / "cache")},
                       capture_output=True, text=True, check=True)
        wall = time.time() - start
        steps = json.loads((Path(tmp) / "run" / "state.json").read_text())["steps"]
    measured = {p: sum(e.get("duration_s", 0.0) for k, e in steps.items() if k.endswith("." + p)) for p in PHASES}
    predicted = {p["name"]: p["seconds"] for p in plan["phases"]}
    rows: dict[str, Any] = {}
    for phase in (*PHASES, "total"):
        got = sum(measured.values()) if phase == "total" else measured[phase]
        want = sum(predicted.values()) if phase == "total" else predicted[phase]
        ratio = want / got if got else None
        rows[phase] = {"predicted_s": round(want, 2), "measured_s": round(got, 2),
                       "predicted_over_measured": round(ratio, 3) if ratio else None,
                       "within_2x": ratio is not None and 0.5 <= ratio <= 2.0}
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
        "cpus": os.cpu_count(), "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                                          text=True).stdout.strip(),
        "commands": [" ".join(["collapsebench", *plan_cmd[3:]]), " ".join(["collapsebench", *run_cmd[3:4]])],
        "calibration_seconds": round(calibrate_s, 1), "run_wall_seconds": round(wall, 1), "phases": rows,
        "calibration": plan["calibration"], "hardware": plan["hardware"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{'phase':10} {'predicted s':>12} {'measured s':>11} {'ratio':>6}")
    for phase, row in rows.items():
        print(f"{phase:10} {row['predicted_s']:12.1f} {row['measured_s']:11.1f} {row['predicted_over_measured']:6.2f}")
    print(f"calibration took {calibrate_s:.0f} s; wrote {args.out}")
    return 0 if all(r["within_2x"] for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
