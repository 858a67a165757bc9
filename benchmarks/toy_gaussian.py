"""Gaussian collapse under each curation regime, and what a vector world costs to run.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/toy_gaussian.py                 # ~1 min on 2 idle cores
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/toy_gaussian.py --seeds 1 --quick  # a few seconds

1. The numbers: configs/toy/gaussian_{replace,accumulate,accumulate_subsample,truncation}.yaml,
   100 iterations x 100 samples, seeds 0..4, through the loop driver (run directory, journal,
   metrics, report included): the fitted variance after the last iteration (true variance 1), the
   wall and CPU time of each run. The fitted variances are compared with those of the previous
   result file, if there is one: the same seed must give the same number.
2. The command a researcher types, ``python -m collapsebench run configs/toy/gaussian_accumulate.yaml``
   (100 iterations), in a fresh process: wall and CPU time, interpreter start and imports included
   (median of ``--cli-repeats``), with the batched driver (the default for vector worlds) and once
   with the general driver (``COLLAPSEBENCH_BATCH=0``), side by side; the cost of an iteration at
   iteration 10 and at iteration 100 (the journal's step durations, each the mean over five
   iterations around it); the imports that take longest (``python -X importtime``).
3. Start-up: the same command at 10 and at 100 iterations, the median of ``--startup-repeats``
   (5) rounds, with bytecode cached as in an installation; with ``--baseline-src OLD/src`` (another
   tree's sources, e.g. ``git archive <ref> src | tar -x -C OLD``) the two trees alternate in
   each round, so before and after are measured side by side:

    git archive b325fd2 src | tar -x -C /tmp/before
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/toy_gaussian.py --baseline-src /tmp/before/src

   ``--startup-only`` measures this part alone and prints it (about a minute; no result file).

Writes benchmarks/results/toy_gaussian.{json,md} with the date, machine and load averages.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REGIMES = ["replace", "accumulate", "accumulate_subsample", "truncation"]
CLI_CONFIG = ROOT / "configs" / "toy" / "gaussian_accumulate.yaml"


def run_one(regime: str, seed: int, iterations: int, out_root: Path) -> dict[str, float]:
    from collapsebench.config import load_config
    from collapsebench.loop import run_experiment

    config = load_config(ROOT / "configs" / "toy" / f"gaussian_{regime}.yaml",
                         [f"seed={seed}", f"iterations={iterations}", f"output_dir={out_root / f'{regime}-{seed}'}"])
    start, cpu = time.perf_counter(), time.process_time()
    run = run_experiment(config, quiet=True)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    last = json.loads((run.path / "metrics.jsonl").read_text().splitlines()[-1])
    return {"seed": seed, "fitted_var": last["fitted_var"], "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "iteration": last["iteration"]}


def cli_run(out: Path, iterations: int, env: dict[str, str]) -> dict[str, float]:
    """``python -m collapsebench run`` in a fresh process: wall and CPU time (its own, from wait4)."""
    cmd = [sys.executable, "-m", "collapsebench", "run", str(CLI_CONFIG), f"output_dir={out}", f"iterations={iterations}"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode() if proc.stderr else ''}")
    return {"wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3)}


def startup(root: Path, env: dict[str, str], trees: dict[str, Path], repeats: int) -> dict[str, Any]:
    """The command at 10 and at 100 iterations, ``repeats`` alternating rounds over the source
    ``trees`` (this one, and a baseline given by ``--baseline-src``): median wall per tree and
    length, and median CPU time (the report's process included). Bytecode is written and reused as
    in a user's installation (``PYTHONDONTWRITEBYTECODE`` unset; one warm-up run per tree first)."""
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    tree_env = {name: {**env, "PYTHONPATH": str(src)} for name, src in trees.items()}
    for name in trees:
        cli_run(root / f"warm-{name}", 3, tree_env[name])
    runs: dict[str, dict[int, list[dict[str, float]]]] = {name: {10: [], 100: []} for name in trees}
    for iterations in (10, 100):
        for r in range(repeats):
            for name in trees:
                runs[name][iterations].append(cli_run(root / f"start-{name}-{iterations}-{r}", iterations,
                                                      tree_env[name]))
    return {name: {f"{n}_iterations": {"walls_s": [x["wall_s"] for x in w],
                                       "median_wall_s": statistics.median(x["wall_s"] for x in w),
                                       "median_cpu_s": statistics.median(x["cpu_s"] for x in w)}
                   for n, w in by_n.items()}
            for name, by_n in runs.items()}


def per_iteration(run_dir: Path, around: int) -> dict[str, float]:
    """Seconds of the four steps of iteration ``around``, and their mean over the five iterations
    ending at or centred on it (the journal rounds each step to a millisecond)."""
    steps = json.loads((run_dir / "state.json").read_text())["steps"]
    last = max(int(k.split(".")[0]) for k in steps)

    def seconds(k: int) -> float:
        return sum(steps[f"{k}.{p}"]["duration_s"] for p in ("curate", "train", "generate", "evaluate"))

    window = [k for k in range(around - 2, around + 3) if 1 <= k <= last] if around < last else range(last - 4, last + 1)
    return {"iteration": around, "seconds": round(seconds(around), 4),
            "mean_of_5_seconds": round(statistics.mean(seconds(k) for k in window), 4)}


def slowest_imports(out: Path, env: dict[str, str], top: int = 8) -> list[tuple[str, float]]:
    """Top-level imports of a 3-iteration CLI run by cumulative seconds (``python -X importtime``)."""
    cmd = [sys.executable, "-X", "importtime", "-m", "collapsebench", "run", str(CLI_CONFIG), f"output_dir={out}",
           "iterations=3"]
    err = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stderr
    found = []
    for line in err.splitlines():  # "import time: self [us] | cumulative | name", nested names indented
        parts = line.removeprefix("import time:").split("|")
        top_level = len(parts) == 3 and parts[1].strip().isdigit() and not parts[2][1:].startswith(" ")
        if line.startswith("import time:") and top_level:
            found.append((parts[2].strip(), int(parts[1]) / 1e6))
    return [(n, round(s, 3)) for n, s in sorted(found, key=lambda x: -x[1])[:top]]


def source_trees(args: argparse.Namespace) -> dict[str, Path]:
    """The source trees the start-up is measured on: this one, and ``--baseline-src`` if given."""
    return {"this": ROOT / "src", **({"baseline": args.baseline_src.resolve()} if args.baseline_src else {})}


def startup_only(args: argparse.Namespace) -> None:
    """Part 3 alone: the start-up table, with the load averages before and after (no result file
    is written: the full benchmark's file keeps the numbers of all three parts together)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    trees = source_trees(args)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        found = startup(Path(tmp), env, trees, args.startup_repeats)
    load_after = os.getloadavg()
    print(f"Start-up, median wall of {args.startup_repeats} alternating rounds; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after ({os.cpu_count()} cores)")
    print("| source | 10 iterations (s) | 100 iterations (s) | CPU at 10 (s) | CPU at 100 (s) | walls at 10 "
          "| walls at 100 |\n|---|---|---|---|---|---|---|")
    for name, by_n in found.items():
        ten, hundred = by_n["10_iterations"], by_n["100_iterations"]
        print(f"| {trees[name]} | {ten['median_wall_s']:.3f} | {hundred['median_wall_s']:.3f} "
              f"| {ten['median_cpu_s']:.3f} | {hundred['median_cpu_s']:.3f} | {ten['walls_s']} | {hundred['walls_s']} |")
    if "baseline" in found:
        print("this / baseline: " + ", ".join(
            f"{n} iterations {found['this'][k]['median_wall_s'] / found['baseline'][k]['median_wall_s']:.2f}"
            for n, k in ((10, "10_iterations"), (100, "100_iterations"))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--cli-repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip the general driver's CLI run (about 30 s)")
    parser.add_argument("--startup-repeats", type=int, default=5, help="rounds of the start-up measurement")
    parser.add_argument("--baseline-src", type=Path, help="another tree's src/ folder, measured in the same rounds")
    parser.add_argument("--startup-only", action="store_true",
                        help="only part 3 (start-up, side by side with --baseline-src), printed; no result file")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "toy_gaussian")
    args = parser.parse_args()
    if args.startup_only:
        startup_only(args)
        return
    previous = json.loads(args.out.with_suffix(".json").read_text()) if args.out.with_suffix(".json").exists() else None
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    load_before = os.getloadavg()
    started = dt.datetime.now(dt.timezone.utc)
    results: dict[str, list[dict[str, float]]] = {}
    cli: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for regime in REGIMES:
            results[regime] = [run_one(regime, s, args.iterations, root) for s in range(args.seeds)]
            print(regime, results[regime], file=sys.stderr, flush=True)
        batched = [cli_run(root / f"cli-{i}", args.iterations, env) for i in range(args.cli_repeats)]
        cli["batched"] = {"runs": batched, "median_wall_s": statistics.median(r["wall_s"] for r in batched),
                          "median_cpu_s": statistics.median(r["cpu_s"] for r in batched)}
        cli["batched"]["per_iteration"] = [per_iteration(root / "cli-0", 10), per_iteration(root / "cli-0", args.iterations)]
        if not args.quick:
            general = cli_run(root / "cli-general", args.iterations, {**env, "COLLAPSEBENCH_BATCH": "0"})
            cli["general"] = {**general, "per_iteration": [per_iteration(root / "cli-general", 10),
                                                          per_iteration(root / "cli-general", args.iterations)]}
            same = (root / "cli-general" / "metrics.jsonl").read_text() == (root / "cli-0" / "metrics.jsonl").read_text()
            cli["general"]["metrics_identical_to_batched"] = same
        trees = source_trees(args)
        cli["startup"] = startup(root, env, trees, args.startup_repeats)
        cli["slowest_imports_s"] = slowest_imports(root / "imports", env)
        print("cli", cli, file=sys.stderr, flush=True)
    load_after = os.getloadavg()

    summary = {r: {"median_fitted_var": statistics.median(x["fitted_var"] for x in rows),
                   "min_fitted_var": min(x["fitted_var"] for x in rows),
                   "max_fitted_var": max(x["fitted_var"] for x in rows),
                   "median_wall_s": statistics.median(x["wall_s"] for x in rows),
                   "median_cpu_s": statistics.median(x["cpu_s"] for x in rows)} for r, rows in results.items()}
    unchanged = None
    if previous and previous.get("iterations") == args.iterations:
        before = {(r, x["seed"]): x["fitted_var"] for r, rows in previous["runs"].items() for x in rows}
        pairs = [(x["fitted_var"], before[(r, x["seed"])]) for r, rows in results.items() for x in rows
                 if (r, x["seed"]) in before]
        unchanged = {"compared": len(pairs), "identical": sum(a == b for a, b in pairs),
                     "max_abs_difference": max((abs(a - b) for a, b in pairs), default=0.0)}
    command = "OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/toy_gaussian.py " + " ".join(sys.argv[1:])
    machine = {"nproc": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"benchmark": "toy_gaussian", "date": started.isoformat(timespec="seconds"), "command": command.strip(),
         "machine": machine, "iterations": args.iterations, "num_samples": 100, "summary": summary,
         "fitted_var_vs_previous_result": unchanged, "cli": cli, "runs": results,
         "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}, indent=1))
    lines = ["# Gaussian collapse per curation regime", "", f"Command: `{command.strip()}`", "",
             f"Date {started:%Y-%m-%d %H:%M} UTC; {machine['nproc']} cores, load average "
             f"{machine['loadavg_before'][0]} before and {machine['loadavg_after'][0]} after; Python "
             f"{machine['python']}. 1-D N(0, 1), 100 real training rows, 100 samples per iteration, MLE fit "
             f"(ddof 0), {args.iterations} iterations, seeds 0..{args.seeds - 1}. True variance: 1.", "",
             "| regime | median fitted variance | min | max | median wall per run (s) | median CPU per run (s) |",
             "|---|---|---|---|---|---|"]
    for r, s in summary.items():
        lines.append(f"| {r} | {s['median_fitted_var']:.4g} | {s['min_fitted_var']:.4g} | {s['max_fitted_var']:.4g} "
                     f"| {s['median_wall_s']:.2f} | {s['median_cpu_s']:.2f} |")
    if unchanged:
        lines += ["", f"Fitted variances against the previous result file: {unchanged['identical']} of "
                      f"{unchanged['compared']} identical (largest difference {unchanged['max_abs_difference']:.3g})."]
    b = cli["batched"]
    lines += ["", f"`python -m collapsebench run configs/toy/gaussian_accumulate.yaml` ({args.iterations} iterations, "
                  "a fresh process, imports included):", "",
              "| driver | wall (s) | CPU (s) | iteration 10 (ms, mean of 5) | iteration "
              f"{args.iterations} (ms, mean of 5) |", "|---|---|---|---|---|",
              f"| batched (default) | {b['median_wall_s']:.2f} (median of {len(b['runs'])}) | {b['median_cpu_s']:.2f} "
              f"| {1000 * b['per_iteration'][0]['mean_of_5_seconds']:.1f} "
              f"| {1000 * b['per_iteration'][1]['mean_of_5_seconds']:.1f} |"]
    if "general" in cli:
        g = cli["general"]
        lines.append(f"| general (COLLAPSEBENCH_BATCH=0) | {g['wall_s']:.2f} | {g['cpu_s']:.2f} "
                     f"| {1000 * g['per_iteration'][0]['mean_of_5_seconds']:.1f} "
                     f"| {1000 * g['per_iteration'][1]['mean_of_5_seconds']:.1f} |")
        lines += ["", f"Metrics of the two drivers identical: {g['metrics_identical_to_batched']}."]
    lines += ["", f"Start-up: the same command at 10 and 100 iterations, median wall of {args.startup_repeats} "
              "alternating rounds (bytecode cached, as installed):", "",
              "| source | 10 iterations (s) | 100 iterations (s) |", "|---|---|---|"]
    for name, by_n in cli["startup"].items():
        label = "this tree" if name == "this" else f"baseline ({args.baseline_src})"
        lines.append(f"| {label} | {by_n['10_iterations']['median_wall_s']:.2f} "
                     f"| {by_n['100_iterations']['median_wall_s']:.2f} |")
    lines += ["", "Slowest top-level imports of the command (s, cumulative): "
              + ", ".join(f"{n} {s:.2f}" for n, s in cli["slowest_imports_s"]) + "."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
