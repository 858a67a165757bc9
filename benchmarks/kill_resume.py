"""Kill a run at random moments (SIGKILL to the driver, or to the driver and its workers) and
resume it: does it end with the same data and metrics as an uninterrupted run?

    python benchmarks/kill_resume.py                 # 50 trials: 25 toy (Gaussian), 25 mini LM
    python benchmarks/kill_resume.py --trials 6      # a quick look

For each setting one uninterrupted reference run is made; each trial starts the same config with
``collapsebench run``, kills it after a uniformly drawn delay within the reference's duration,
runs ``collapsebench resume`` until it finishes, and compares every committed dataset (as Arrow
tables, row for row) and every metric (timing metrics aside) with the reference. The result goes
to ``benchmarks/results/kill_resume.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "collapsebench"]

SETTINGS: dict[str, list[str]] = {
    "toy": [str(REPO / "configs/toy/gaussian_replace.yaml"), "iterations=5", "data.source.n=600",
            "data.holdout=100", "generate.num_samples=500"],
    "mini_lm": [str(REPO / "configs/quickstart.yaml"), "iterations=2", "data.source.n_documents=300",
                "data.holdout=60", "train.trainer.args.num_train_epochs=1", "train.trainer.args.save_steps=5",
                "generate.generator.max_new_tokens=32", "generate.shard_size=64",
                "evaluate.evaluations=[perplexity, sample_stats]"],
}


def run_cli(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(CLI + argv, capture_output=True, text=True, env=env)


def datasets_of(run_dir: Path) -> dict[str, Any]:
    """Every committed dataset of a run as a pyarrow table (content only)."""
    import datasets

    out = {}
    for info in sorted(run_dir.glob("iter_*/*/*/dataset_info.json")):
        folder = info.parent
        if ".tmp" in str(folder.relative_to(run_dir)):
            continue
        out[str(folder.relative_to(run_dir))] = datasets.load_from_disk(str(folder)).data.table
    return out


def metrics_of(run_dir: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if "per_second" not in k} for r in rows]


def trial(argv: list[str], run_dir: Path, delay: float, env: dict[str, str], reference: Path) -> dict[str, Any]:
    """One kill-and-resume; returns what matched."""
    proc = subprocess.Popen(CLI + ["run", *argv, f"output_dir={run_dir}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and every worker it started
    proc.wait()
    resumes = 0
    while True:
        resumes += 1
        out = run_cli(["resume", str(run_dir)], env) if (run_dir / "config.yaml").exists() else run_cli(
            ["run", *argv, f"output_dir={run_dir}"], env)
        if out.returncode == 0 or resumes >= 3:
            break
    ours, theirs = datasets_of(run_dir), datasets_of(reference)
    same_data = ours.keys() == theirs.keys() and all(ours[k].equals(theirs[k]) for k in theirs)
    same_metrics = metrics_of(run_dir) == metrics_of(reference)
    return {"delay_s": round(delay, 2), "killed": killed, "resume_exit": out.returncode, "same_data": same_data,
            "same_metrics": same_metrics, "error": out.stderr[-500:] if out.returncode else ""}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "kill_resume.json"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    env = {**os.environ, "COLLAPSEBENCH_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    results: dict[str, Any] = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"), "settings": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in SETTINGS.items():
            env["COLLAPSEBENCH_CACHE"] = str(Path(tmp) / "cache" / name)
            reference = Path(tmp) / name / "reference"
            start = time.perf_counter()
            out = run_cli(["run", *argv, f"output_dir={reference}"], env)
            duration = time.perf_counter() - start
            if out.returncode != 0:
                raise SystemExit(f"reference run failed: {out.stderr[-2000:]}")
            trials = []
            for i in range(args.trials // len(SETTINGS)):
                delay = rng.uniform(0.5, duration)
                trials.append(trial(argv, Path(tmp) / name / f"trial{i}", delay, env, reference))
                print(name, i, trials[-1], flush=True)
            results["settings"][name] = {
                "reference_seconds": round(duration, 1), "trials": len(trials),
                "killed": sum(t["killed"] for t in trials),
                "equal": sum(t["same_data"] and t["same_metrics"] for t in trials), "details": trials}
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    total = sum(s["trials"] for s in results["settings"].values())
    equal = sum(s["equal"] for s in results["settings"].values())
    print(f"{equal} of {total} kill points resumed to equal data and metrics -> {args.out}")
    return 0 if equal == total else 1


if __name__ == "__main__":
    raise SystemExit(main())
