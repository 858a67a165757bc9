"""Curation at scale: time and peak memory of each regime as the corpus grows.

    python benchmarks/curation_scale.py --sizes 100000 1000000 --out benchmarks/results/curation_scale.md

For each size N: N real documents of the ground-truth language (~200 characters each) and three
synthetic generations of N documents are written to disk as Arrow; then, in a fresh process per
(regime, N), the curate phase of iteration 4 builds D(4) and saves it. Peak resident memory of that
process is measured with getrusage. Datasets are memory-mapped and regimes select indices, so peak
memory should stay flat as N grows, while time grows with the bytes written.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REGIMES = ["replace", "accumulate", "accumulate_subsample"]


def build(root: Path, n: int) -> None:
    import datasets

    from collapsebench.data import add_lineage
    from collapsebench.sources.language import LanguageSpec, iter_batches

    spec = LanguageSpec()

    def docs(seed: int):
        for batch in iter_batches(spec, n, seed=seed):
            for text in batch["text"]:
                yield {"text": text}

    for k in range(4):
        ds = datasets.Dataset.from_generator(docs, gen_kwargs={"seed": k}, cache_dir=str(root / "cache"))
        if k == 0:
            ds = add_lineage(ds, origin="real", generation=0, prefix="real-", parent="")
            ds.save_to_disk(str(root / "iter_000" / "curate" / "real"))
            ds.select(range(10)).save_to_disk(str(root / "iter_000" / "curate" / "holdout"))
        else:
            ds = add_lineage(ds, origin="synthetic", generation=k, prefix=f"g{k:03d}-", parent="")
            ds.save_to_disk(str(root / f"iter_{k:03d}" / "generate" / "samples"))


def rss_anon_mib() -> float:
    """Anonymous resident memory (heap, Python objects), without file-backed memory-mapped pages."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def curate_once(root: str, regime: str) -> None:
    """Child process: run the curate phase of iteration 4; print seconds, peak RSS (all resident
    pages, memory-mapped Arrow files included) and peak anonymous RSS (sampled every 5 ms)."""
    import threading

    peak_anon = [rss_anon_mib()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak_anon[0] = max(peak_anon[0], rss_anon_mib())

    threading.Thread(target=sample, daemon=True).start()
    from collapsebench.api import PhaseContext
    from collapsebench.config import config_from_dict
    from collapsebench.phases import curate

    config = config_from_dict({"name": "bench", "iterations": 4, "curate": {"regime": regime}})
    out = Path(root) / "iter_004" / f"curate-{regime}.tmp"
    out.mkdir(parents=True)
    ctx = PhaseContext(config=config, run_dir=Path(root), iteration=4, phase="curate", seed=1, out_dir=out)
    start = time.time()
    stats = curate.run(ctx)
    took = time.time() - start
    done.set()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": took, "peak_rss_mib": peak, "peak_anon_mib": max(peak_anon[0], rss_anon_mib()),
                      "rows": stats["metrics"]["size"]}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/curation_scale.md"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        curate_once(*args.child)
        return
    lines = ["# Curation at scale", "",
             f"Command: `python benchmarks/curation_scale.py --sizes {' '.join(map(str, args.sizes))}`", "",
             "Peak RSS counts every resident page, including the pages of the memory-mapped Arrow files",
             "that the phase reads (they are the kernel's page cache and are dropped under memory pressure);",
             "peak anonymous RSS is the process's own memory (Python objects, buffers): the part that must",
             "not grow with the corpus.", "",
             "| real docs N | regime | rows of D(4) | on disk (MiB) | seconds | peak RSS (MiB) | peak anonymous RSS (MiB) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            t = time.time()
            build(root, n)
            print(f"built N={n} in {time.time() - t:.1f}s", file=sys.stderr)
            for regime in REGIMES:
                out = subprocess.run([sys.executable, __file__, "--child", str(root), regime],
                                     capture_output=True, text=True, check=True)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                size = sum(f.stat().st_size for f in (root / "iter_004" / f"curate-{regime}.tmp").rglob("*.arrow"))
                lines.append(f"| {n:,} | {regime} | {res['rows']:,} | {size / 2**20:.0f} | {res['seconds']:.1f} | "
                             f"{res['peak_rss_mib']:.0f} | {res['peak_anon_mib']:.0f} |")
                print(lines[-1], file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
