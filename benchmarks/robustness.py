"""Fuzz the configuration path at scale: how many mutated configs end in a traceback or a hang?

    python benchmarks/robustness.py                        # 10,000 + 200 + 500 cases (an hour or so)
    python benchmarks/robustness.py --validate 500 --full 20 --runs 20   # a quick look

Three counts, each over configs mutated from the shipped ones by the generator of
``tests/test_robustness.py`` (values swapped for odd ones, keys deleted or misspelt, raw YAML
damaged), with a fixed seed:

* ``--validate`` cases through ``collapsebench validate --no-backend`` (in-process);
* ``--full`` cases through the full ``collapsebench validate`` (the backends' objects built in a
  child process);
* ``--runs`` toy mutants that ``validate`` accepts, through ``collapsebench run``.

Each outcome must be exit 0, or exit 2 with a message; anything else (an exception escaping: a
traceback) or a case over ``--timeout`` seconds (a hang) is counted and shown. Writes
``benchmarks/results/robustness.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


class Hang(Exception):
    pass


def outcome(argv: list[str], timeout: float) -> tuple[str, str]:
    """('exit0' | 'exit2' | 'exit2-silent' | 'traceback' | 'hang', detail) of one command, in-process."""
    from collapsebench.cli import main

    def alarm(signum: int, frame: Any) -> None:
        raise Hang()

    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(int(timeout))
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except Hang:
        return "hang", " ".join(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    except BaseException:  # a traceback: what this benchmark looks for
        return "traceback", traceback.format_exc(limit=6)
    finally:
        signal.alarm(0)
    if code == 0:
        return "exit0", ""
    return ("exit2", "") if code == 2 and err.getvalue().strip() else (f"exit{code}-silent", err.getvalue())


def texts(strategy: Any, count: int, seed: int) -> list[str]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as fix_seed

    found: list[str] = []

    @fix_seed(seed)
    @settings(max_examples=count, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(strategy)
    def collect(text: str) -> None:
        found.append(text)

    collect()
    return found


def fuzz(name: str, cases: list[str], argv: Any, timeout: float, folder: Path) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    examples: dict[str, str] = {}
    start = time.perf_counter()
    for i, text in enumerate(cases):
        path = folder / "fuzz.yaml"
        path.write_text(text)
        kind, detail = outcome(argv(path, i), timeout)
        counts[kind] += 1
        if kind not in ("exit0", "exit2"):
            examples.setdefault(kind, f"{text[:500]}\n---\n{detail[-1500:]}")
    seconds = time.perf_counter() - start
    print(f"{name}: {len(cases)} cases in {seconds:.0f} s: {dict(counts)}", flush=True)
    return {"cases": len(cases), "seconds": round(seconds, 1), "outcomes": dict(counts), "examples": examples}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--validate", type=int, default=10_000)
    ap.add_argument("--full", type=int, default=200)
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "robustness.json"))
    args = ap.parse_args()
    from hypothesis import strategies as st

    from test_robustness import BASES, PLAUSIBLE_VALUES, TOY_SMALL, mutated

    any_base = st.sampled_from(range(len(BASES))).flatmap(lambda i: mutated(BASES[i]))
    results: dict[str, Any] = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results["validate_no_backend"] = fuzz(
            "validate --no-backend", texts(any_base, args.validate, args.seed),
            lambda p, i: ["validate", str(p), "--no-backend"], args.timeout, folder)
        results["validate_full"] = fuzz(
            "validate", texts(any_base, args.full, args.seed + 1),
            lambda p, i: ["validate", str(p)], args.timeout, folder)
        accepted = [t for t in texts(mutated(TOY_SMALL, PLAUSIBLE_VALUES, most=2), args.runs * 15, args.seed + 2)
                    if outcome(["validate", str(_write(folder, t)), "--no-backend"], args.timeout)[0] == "exit0"]
        results["toy_runs"] = fuzz(
            "run (validate-accepted toy mutants)", accepted[: args.runs],
            lambda p, i: ["run", str(p), f"output_dir={folder / f'run{i}'}", "iterations=2"], args.timeout, folder)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    bad = sum(n for r in results.values() if isinstance(r, dict) for k, n in r["outcomes"].items()
              if k not in ("exit0", "exit2"))
    print(f"{bad} tracebacks or hangs -> {args.out}")
    return 0 if bad == 0 else 1


def _write(folder: Path, text: str) -> Path:
    path = folder / "probe.yaml"
    path.write_text(text)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
