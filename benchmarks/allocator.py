"""The allocator settings of ``collapsebench.allocator``, measured on a loop that knows nothing of
collapsebench: the overhead benchmark's hand-written script, run twice at the same time, once with
glibc's default malloc and once with the settings the framework applies to itself
(``MALLOC_MMAP_THRESHOLD_`` 32 MiB, ``MALLOC_TRIM_THRESHOLD_`` 256 MiB), each pinned to its own core
with one thread; then again with the cores swapped.

    python benchmarks/allocator.py                 # 1 iteration of the script (~4 min on 2 idle cores)
    python benchmarks/allocator.py --iterations 3  # the overhead benchmark's full loop (~9 min)

Reports, per side: wall time, CPU time, its system part, minor page faults and peak RSS, each
pairing's ratio tuned / default and their mean; and checks that both sides computed the same
perplexities (the allocator changes where memory lives, not the numbers). Writes
``benchmarks/results/allocator.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import overhead  # noqa: E402 - the benchmark next door: its launcher and script command

from collapsebench.allocator import SETTINGS  # noqa: E402

RESULT = overhead.REPO / "benchmarks" / "results" / "allocator.json"
TUNED = {env: str(value) for _, env, value in SETTINGS}
MEASURES = ("wall_s", "cpu_s", "sys_s", "minor_faults", "max_rss_mib")


def pairing(name: str, default_core: int, tuned_core: int, root: Path, iterations: int) -> dict[str, Any]:
    print(f"pairing {name}: default malloc on core {default_core}, tuned on core {tuned_core} ...", flush=True)
    sides: dict[str, dict[str, Any]] = {"default": {"core": default_core}, "tuned": {"core": tuned_core}}
    threads = []
    for side, info in sides.items():
        work = root / f"{name}-{side}"
        cmd = overhead.commands("script", info["core"], work, iterations, quick=False)
        info["command"] = " ".join(cmd)
        threads.append(overhead.launch(side, cmd, work, info, extra_env=TUNED if side == "tuned" else None))
    for thread in threads:
        thread.join()
    for side, info in sides.items():
        if info["returncode"] != 0:
            sys.exit(f"{side} failed with status {info['returncode']}; see {info['log']}")
        info["seconds"], info["holdout_perplexity"] = overhead.script_phases(root / f"{name}-{side}")
    ratio = {k: round(sides["tuned"][k] / sides["default"][k], 3) for k in MEASURES if sides["default"][k]}
    return {"name": name, **sides, "ratio": ratio}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    if not (overhead.data_root() / "wikitext-2" / "valid.txt").exists():
        print(f"no WikiText-2 at {overhead.data_root()} (set COLLAPSEBENCH_DATA)", file=sys.stderr)
        return 2
    started = dt.datetime.now(dt.timezone.utc)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="collapsebench-allocator-") as tmp:
        pairings = [pairing("A", 0, 1, Path(tmp), args.iterations), pairing("B", 1, 0, Path(tmp), args.iterations)]
    mean = {k: round(sum(p["ratio"][k] for p in pairings) / 2, 3) for k in pairings[0]["ratio"]}
    same = all(p["default"]["holdout_perplexity"] == p["tuned"]["holdout_perplexity"] for p in pairings)
    result = {"benchmark": "allocator", "date": started.isoformat(timespec="seconds"),
              "command": "python benchmarks/allocator.py " + " ".join(sys.argv[1:]),
              "machine": {"nproc": os.cpu_count(), "cpu_model": overhead.cpu_model(),
                          "loadavg_before": [round(x, 2) for x in load_before],
                          "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
              "versions": overhead.versions(), "tuned_env": TUNED, "iterations": args.iterations,
              "pairings": pairings, "mean_ratio_tuned_over_default": mean, "same_perplexities": same}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{'':14}" + "".join(f"{k:>14}" for k in MEASURES))
    for p in pairings:
        for side in ("default", "tuned"):
            print(f"{p['name'] + ' ' + side:14}" + "".join(f"{p[side][k]:>14}" for k in MEASURES))
    print(f"{'tuned/default':14}" + "".join(f"{mean.get(k, ''):>14}" for k in MEASURES))
    print(f"same perplexities: {same}; wrote {args.out}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
