"""Run the benchmarks and print their headline figures.

    PYTHONPATH=src python benchmarks/run_all.py --quick     # the cheap variants, a few minutes; results in a temporary folder
    PYTHONPATH=src python benchmarks/run_all.py             # every benchmark with its committed settings (hours;
                                                            # writes benchmarks/results/)
    PYTHONPATH=src python benchmarks/run_all.py --only toy_gaussian curation_scale

Each benchmark runs in its own process (``OMP_NUM_THREADS=1``); a failure is reported and the
others still run. The exit status is 1 when any failed. The table of every benchmark, its command,
latest figures and target is ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Benchmark:
    name: str
    quick: list[str]  # arguments of the cheap variant; {out} is the temporary result folder
    full: list[str]  # arguments of the committed run
    result: str  # the result file, relative to the out folder (quick) or benchmarks/results (full)
    headline: Callable[[dict[str, Any]], str]


def _toy(r: dict[str, Any]) -> str:
    b = r["cli"]["batched"]
    per = b["per_iteration"]
    return (f"CLI {r['iterations']} accumulate iterations: {b['median_wall_s']:.2f} s wall, {b['median_cpu_s']:.2f} s CPU; "
            f"iteration {per[0]['iteration']}: {1000 * per[0]['mean_of_5_seconds']:.1f} ms, "
            f"iteration {per[1]['iteration']}: {1000 * per[1]['mean_of_5_seconds']:.1f} ms")


def _curation(r: dict[str, Any]) -> str:
    return "; ".join(f"{x['regime']} N={x['n']:,}: {x['seconds']:.1f} s, anon {x['peak_anon_mib']} MiB"
                     for x in r["results"])


def _overhead(r: dict[str, Any]) -> str:
    m = r["mean_ratio"]
    return (f"total ratio {m['total (wall)']:.3f} (CPU {m['total (CPU)']:.3f}); perplexity difference "
            f"{r['perplexity']['max_relative_difference']:.1e}")


BENCHMARKS = [
    Benchmark("toy_gaussian", ["--seeds", "1", "--quick", "--cli-repeats", "1", "--out", "{out}/toy_gaussian"], [],
              "toy_gaussian.json", _toy),
    Benchmark("toy_sweep", ["--iterations", "20", "--out", "{out}/toy_sweep.json"], [], "toy_sweep.json",
              lambda r: (f"sweep {r['sweep_s']:.1f} s vs standalone {r['standalone_sum_s']:.1f} s: "
                         f"{r['sweep_over_standalone_per_worker']:.2f}x per worker, CPU "
                         f"{r['sweep_cpu_over_standalone_cpu']:.2f}x")),
    Benchmark("curation_scale", ["--sizes", "100000", "--out", "{out}/curation_scale"], [], "curation_scale.json",
              _curation),
    Benchmark("generation", ["--quick", "--out", "{out}/generation.json"], [], "generation.json",
              lambda r: f"framework / raw tokens/s: {r['median_ratio']:.3f}"),
    Benchmark("perplexity_lm_eval", ["--quick", "--out", "{out}/perplexity_lm_eval.json"], [], "perplexity_lm_eval.json",
              lambda r: (f"relative difference {r['agreement']['relative_difference']:.1e}; tokens/s ratio "
                         + ", ".join(f"batch {b}: {v:.3f}" for b, v in r["median_throughput_ratio_by_batch_size"].items()))),
    Benchmark("overhead", ["--quick", "--out", "{out}/overhead.json"], [], "overhead.json", _overhead),
    Benchmark("kill_resume", ["--trials", "4", "--out", "{out}/kill_resume.json"], [], "kill_resume.json",
              lambda r: "; ".join(f"{name}: {s['equal']} of {s['trials']} kills resumed to equal data and metrics"
                                  for name, s in r["settings"].items())),
    Benchmark("robustness", ["--validate", "200", "--full", "4", "--runs", "10", "--out", "{out}/robustness.json"], [],
              "robustness.json", lambda r: "; ".join(f"{k}: {v['cases']} cases, {v['outcomes']}" for k, v in r.items()
                                                     if isinstance(v, dict) and "outcomes" in v)),
]


def run(bench: Benchmark, quick: bool, out: Path) -> tuple[bool, float, str]:
    args = [a.format(out=out) for a in (bench.quick if quick else bench.full)]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{bench.name}.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return False, seconds, (proc.stderr or proc.stdout).strip().splitlines()[-1:][0] if (proc.stderr or proc.stdout) else ""
    path = (out if quick else RESULTS) / bench.result
    try:
        return True, seconds, bench.headline(json.loads(path.read_text()))
    except (OSError, KeyError, ValueError, TypeError) as exc:
        return True, seconds, f"(no headline: {type(exc).__name__}: {exc})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the cheap variants, results in a temporary folder")
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHMARKS], default=None)
    args = parser.parse_args()
    failed = 0
    with tempfile.TemporaryDirectory(prefix="collapsebench-benchmarks-") as tmp:
        for bench in BENCHMARKS:
            if args.only and bench.name not in args.only:
                continue
            print(f"{bench.name} ...", file=sys.stderr, flush=True)
            ok, seconds, headline = run(bench, args.quick, Path(tmp))
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {bench.name:<20} {seconds:7.1f} s  {headline}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
