"""Framework overhead: collapsebench against a frozen hand-written script doing the same work.

    python benchmarks/overhead.py                 # 3 iterations, both pairings (~10 min on 2 idle cores)
    python benchmarks/overhead.py --quick         # smoke test: 400 lines, 128 samples, 1 iteration (~2 min)

``benchmarks/overhead/handwritten.py`` (transformers / tokenizers / torch, nothing of collapsebench) and
``python -m collapsebench run benchmarks/overhead/config.yaml`` run side by side at the same time, each
pinned to its own core (``taskset``, one thread), so that both see the same machine state; then again
with the cores swapped, so that a busier core penalises each side once. The framework's per-phase
times come from its journal (``state.json``: ``steps[key].duration_s``), the script's from its JSON;
totals are the process wall times. For every phase and the total: seconds of each side, the ratio
framework / script of each pairing and their mean. Both sides use the same seed derivation, so their
holdout perplexities should agree to the last digit; a difference means the work differs.

Writes ``benchmarks/results/overhead.json`` (full runs; ``--out`` to choose) with the date, machine,
git commit and command, and prints a table. Exit status 2 when the WikiText-2 data is missing
(``$COLLAPSEBENCH_DATA/wikitext-2/valid.txt``, default ``../shared/data`` beside the repository).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "overhead" / "handwritten.py"
CONFIG = REPO / "benchmarks" / "overhead" / "config.yaml"
RESULT = REPO / "benchmarks" / "results" / "overhead.json"
PHASES = ("curate", "train", "generate", "evaluate")
# --quick: the first 400 shuffled lines and 128 samples, one iteration (same on both sides)
QUICK = {"max_documents": 400, "num_samples": 128, "iterations": 1}
NOISY_CPU_SHARE = 0.9  # a pinned single-threaded process getting less of its core than this was crowded


def data_root() -> Path:
    return Path(os.environ.get("COLLAPSEBENCH_DATA") or REPO / ".." / "shared" / "data").resolve()


def commands(side: str, core: int, work: Path, iterations: int | None, quick: bool) -> list[str]:
    """The command line of one side, pinned to ``core``."""
    pin = ["taskset", "-c", str(core), sys.executable]
    if side == "script":
        cmd = [*pin, str(SCRIPT), "--out", str(work), "--threads", "1"]
        if iterations:
            cmd += ["--iterations", str(iterations)]
        if quick:
            cmd += ["--max-documents", str(QUICK["max_documents"]), "--num-samples", str(QUICK["num_samples"])]
        return cmd
    cmd = [*pin, "-m", "collapsebench", "run", str(CONFIG), f"output_dir={work / 'run'}",
           f"data.source.path={data_root() / 'wikitext-2' / 'valid.txt'}"]
    if iterations:
        cmd.append(f"iterations={iterations}")
    if quick:
        cmd += [f"data.max_documents={QUICK['max_documents']}", f"generate.num_samples={QUICK['num_samples']}"]
    return cmd


def environment(work: Path) -> dict[str, str]:
    """One thread everywhere; this checkout's framework; a cold token cache of the run's own."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               COLLAPSEBENCH_DATA=str(data_root()), COLLAPSEBENCH_CACHE=str(work / "token_cache"),
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return env


def launch(side: str, cmd: list[str], work: Path, out: dict[str, Any],
           extra_env: dict[str, str] | None = None) -> threading.Thread:
    """Start ``cmd`` now; a thread waits for it and records wall time, CPU time (and its system
    part), page faults and peak memory."""
    work.mkdir(parents=True, exist_ok=True)
    log = open(work / f"{side}.log", "w")  # noqa: SIM115 - closed by the waiting thread
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env={**environment(work), **(extra_env or {})}, stdout=log,
                            stderr=subprocess.STDOUT)

    def wait() -> None:
        _, status, usage = os.wait4(proc.pid, 0)  # wait4: the child's own CPU time and peak memory
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.close()
        cpu = usage.ru_utime + usage.ru_stime
        out.update(returncode=proc.returncode, wall_s=round(wall, 3), cpu_s=round(cpu, 3),
                   sys_s=round(usage.ru_stime, 3), minor_faults=usage.ru_minflt, cpu_share=round(cpu / wall, 3),
                   max_rss_mib=round(usage.ru_maxrss / 1024, 1), log=str(log.name))

    thread = threading.Thread(target=wait)
    thread.start()
    return thread


def script_phases(work: Path) -> tuple[dict[str, float], list[float]]:
    """The script's phase times (its imports, ``startup``, fall under "outside phases")."""
    result = json.loads((work / "handwritten.json").read_text())
    seconds = {k: v for k, v in result["seconds"].items() if k not in ("startup", "total")}
    return seconds, result["holdout_perplexity"]


def script_startup(work: Path) -> float:
    return json.loads((work / "handwritten.json").read_text())["seconds"]["startup"]


def framework_phases(work: Path) -> tuple[dict[str, float], list[float]]:
    run = work / "run"
    state = json.loads((run / "state.json").read_text())
    seconds = {("prepare" if k == "0.curate" else k): v["duration_s"] for k, v in state["steps"].items()}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return seconds, [r["holdout_perplexity"] for r in sorted(rows, key=lambda r: r["iteration"])]


def rows_of(phases: dict[str, float], wall: float, cpu: float) -> dict[str, float]:
    """Every table row of one side: each step, each phase summed over iterations, the rest, the total."""
    rows = dict(phases)
    for phase in PHASES:
        rows[f"all {phase}"] = sum(v for k, v in phases.items() if k.endswith(f".{phase}"))
    rows["sum of phases"] = sum(phases.values())
    rows["outside phases"] = wall - rows["sum of phases"]
    rows["total (wall)"] = wall
    rows["total (CPU)"] = cpu
    return {k: round(v, 3) for k, v in rows.items()}


def pairing(name: str, script_core: int, framework_core: int, root: Path, iterations: int | None,
            quick: bool) -> dict[str, Any]:
    """Run both sides at once on their cores; return their measurements and the ratios."""
    print(f"pairing {name}: script on core {script_core}, framework on core {framework_core} ...", flush=True)
    sides: dict[str, dict[str, Any]] = {"script": {"core": script_core}, "framework": {"core": framework_core}}
    threads = []
    for side, info in sides.items():
        work = root / f"{name}-{side}"
        info["command"] = " ".join(commands(side, info["core"], work, iterations, quick))
        threads.append(launch(side, commands(side, info["core"], work, iterations, quick), work, info))
    for thread in threads:
        thread.join()
    for side, info in sides.items():
        if info["returncode"] != 0:
            tail = Path(info["log"]).read_text().splitlines()[-30:]
            sys.exit(f"{side} failed with status {info['returncode']} (pairing {name}); end of {info['log']}:\n"
                     + "\n".join(tail))
    for side, read in (("script", script_phases), ("framework", framework_phases)):
        info = sides[side]
        phases, info["holdout_perplexity"] = read(root / f"{name}-{side}")
        info["seconds"] = rows_of(phases, info["wall_s"], info["cpu_s"])
    sides["script"]["imports_s"] = script_startup(root / f"{name}-script")
    s, f = sides["script"]["seconds"], sides["framework"]["seconds"]
    ratios = {k: round(f[k] / s[k], 3) if s.get(k) else None for k in f if k in s}
    return {"name": name, **sides, "ratio": ratios}


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "datasets", "tokenizers"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 3) if values else None


def table(result: dict[str, Any]) -> str:
    a, b = result["pairings"]
    width = max(len(k) for k in a["framework"]["seconds"]) + 2
    head = (f"{'step':<{width}}{'script A':>10}{'frame A':>10}{'ratio A':>9} |{'script B':>10}{'frame B':>10}"
            f"{'ratio B':>9} |{'mean ratio':>11}{'extra s':>9}")
    lines = [head, "-" * len(head)]

    def fmt(x: float | None, spec: str) -> str:
        return format(x, spec) if x is not None else "-".rjust(int(spec.split(".")[0]))

    for key in a["framework"]["seconds"]:
        sa, fa = a["script"]["seconds"].get(key), a["framework"]["seconds"][key]
        sb, fb = b["script"]["seconds"].get(key), b["framework"]["seconds"][key]
        extra = mean([fa - sa if sa is not None else None, fb - sb if sb is not None else None])
        lines.append(f"{key:<{width}}{fmt(sa, '10.2f')}{fmt(fa, '10.2f')}{fmt(a['ratio'].get(key), '9.2f')} |"
                     f"{fmt(sb, '10.2f')}{fmt(fb, '10.2f')}{fmt(b['ratio'].get(key), '9.2f')} |"
                     f"{fmt(result['mean_ratio'].get(key), '11.2f')}{fmt(extra, '9.2f')}")
    lines.append(f"(the script's imports, within its 'outside phases': A {a['script']['imports_s']:.2f} s, "
                 f"B {b['script']['imports_s']:.2f} s; the framework imports lazily, mostly in prepare and 1.train)")
    lines.append("")
    lines.append("holdout perplexity by iteration")
    for side in ("script", "framework"):
        for p in (a, b):
            values = "  ".join(f"{v:.4f}" for v in p[side]["holdout_perplexity"])
            lines.append(f"  {side:<10} {p['name']}: {values}")
    lines.append(f"  max relative difference framework vs script: {result['perplexity']['max_relative_difference']:.2e}")
    shares = ", ".join(f"{p['name']}-{side} {p[side]['cpu_share']:.0%}" for p in (a, b) for side in ("script", "framework"))
    lines.append(f"CPU share of each process on its core: {shares}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=None, help="default: the config's (3); --quick: 1")
    parser.add_argument("--quick", action="store_true", help="smoke test: a 400-line slice, 128 samples, 1 iteration")
    parser.add_argument("--keep", action="store_true", help="keep the run directories (their path is printed)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"result JSON (default {RESULT.relative_to(REPO)}; --quick writes none unless given)")
    parser.add_argument("--note", default="", help="free text stored in the JSON (e.g. what else ran on the machine)")
    args = parser.parse_args()

    data = data_root() / "wikitext-2" / "valid.txt"
    if not data.is_file():
        print(f"overhead: WikiText-2 not found at {data}; set COLLAPSEBENCH_DATA to the folder holding "
              "wikitext-2/ (default: ../shared/data beside the repository)", file=sys.stderr)
        return 2
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or shutil.which("taskset") is None:
        print("overhead: needs taskset and at least two usable cores (one per side)", file=sys.stderr)
        return 1
    iterations = args.iterations or (QUICK["iterations"] if args.quick else None)
    out = args.out or (None if args.quick else RESULT)

    root = Path(tempfile.mkdtemp(prefix="collapsebench-overhead-"))
    started = dt.datetime.now(dt.timezone.utc)
    load_before = os.getloadavg()
    try:
        pairings = [pairing("A", cores[0], cores[1], root, iterations, args.quick),
                    pairing("B", cores[1], cores[0], root, iterations, args.quick)]
    finally:
        if args.keep:
            print(f"run directories kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()

    keys = list(pairings[0]["framework"]["seconds"])
    mean_ratio = {k: mean([p["ratio"].get(k) for p in pairings]) for k in keys}
    ppl_s = pairings[0]["script"]["holdout_perplexity"]
    ppl_f = pairings[0]["framework"]["holdout_perplexity"]
    every = [p[side]["holdout_perplexity"] for p in pairings for side in ("script", "framework")]
    diff = max(abs(x - y) / y for run in every for x, y in zip(run, ppl_s))
    shares = [p[side]["cpu_share"] for p in pairings for side in ("script", "framework")]
    noisy = min(shares) < NOISY_CPU_SHARE
    note = args.note
    if noisy:
        note = (note + " " if note else "") + (
            f"Shared/noisy machine: the pinned single-threaded processes got {min(shares):.0%}-{max(shares):.0%} "
            "of their core (CPU time / wall time); wall-time ratios carry that noise, CPU-time ratios less.")
    result = {
        "benchmark": "overhead",
        "date": started.isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/overhead.py", *sys.argv[1:]]),
        "machine": {"nproc": os.cpu_count(), "cpus_used": cores[:2], "cpu_model": cpu_model(),
                    "platform": platform.platform(), "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in load_after], "noisy": noisy},
        "git": {"commit": git("rev-parse", "HEAD"), "framework_src_commit": git("log", "-1", "--format=%H", "--", "src"),
                "src_dirty": bool(git("status", "--porcelain", "--", "src"))},
        "versions": versions(),
        "settings": {"config": str(CONFIG.relative_to(REPO)), "script": str(SCRIPT.relative_to(REPO)),
                     "quick": args.quick, "iterations": iterations or "config (3)",
                     **({k: v for k, v in QUICK.items() if k != "iterations"} if args.quick else {}),
                     "threads": 1, "env": "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false, "
                     "a cold COLLAPSEBENCH_CACHE per run"},
        "note": note,
        "pairings": pairings,
        "mean_ratio": mean_ratio,
        "perplexity": {"script": ppl_s, "framework": ppl_f, "max_relative_difference": diff},
    }
    print(table(result))
    if note:
        print(f"note: {note}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}")
    if not all(math.isfinite(v) for run in every for v in run):
        print("overhead: a perplexity is not finite", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
