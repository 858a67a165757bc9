"""Curation at corpus scale: seconds and peak memory of each regime as the corpus grows to 10 million
real documents (about a billion characters) and three generations of 10 million samples.

    python benchmarks/curation_scale.py                          # N = 1M, 3M, 10M (about 15 min; 25 GB of disk at most)
    python benchmarks/curation_scale.py --sizes 100000 --out /tmp/c  # a quick look

For each size N, a run directory holds N real documents and three synthetic generations of N
documents as saved datasets (Arrow, with the lineage columns), as iterations 1-3 leave them; then,
in a fresh process per (regime, N), the curate phase of iteration 4 builds D(4) and saves it:
replace (alpha 1: S(3), as many tokens as the real data), accumulate (all 4N rows) and accumulate_subsample (the
real data's tokens drawn from the 4N rows: about N rows). The regimes count tokens, their default for text.
Measured in that process: the phase's seconds, its peak RSS (VmHWM: every resident page,
pages of memory-mapped Arrow files included) and its peak anonymous RSS (/proc, sampled every 5 ms:
the process's own memory, the part that must not grow with the corpus).

The documents: one million distinct documents of the ground-truth language with 2-4 sentences
(about 96 characters each) make the real corpus, repeated to N rows with ids of their own; each
synthetic generation is the same texts in a permutation of its own. Curation reads and copies rows
without looking at their text, so only the sizes matter. The run directory is written in a
temporary folder under ``--tmp`` (default: the system's) and removed after each size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REGIMES = ["replace", "accumulate", "accumulate_subsample"]
DISTINCT = 1_000_000  # distinct documents; the corpus repeats them
SPEC = {"sentences_per_doc_min": 2, "sentences_per_doc_max": 4}  # ~96 characters per document
CHUNK = 100_000  # rows per record batch written
SHARD_ROWS = 4_000_000  # rows per Arrow file (about 500 MB, the size `datasets` cuts shards at)


# ------------------------------------------------------------------------------------ the corpus

def distinct_texts(n: int) -> Any:
    """``n`` documents of the ground-truth language (2-4 sentences each) as one Arrow string array."""
    import pyarrow as pa

    from collapsebench.sources.language import LanguageSpec, iter_batches

    texts = [pa.array(batch["text"], type=pa.string()) for batch in iter_batches(LanguageSpec(**SPEC), n, seed=0)]
    return pa.concat_arrays(texts)


def write_dataset(path: Path, n: int, texts: Any, order: np.ndarray | None, *, origin: str, generation: int,
                  prefix: str) -> None:
    """``n`` rows (text, id, origin, generation, parent, n_tokens) as a saved dataset, written chunk
    by chunk: row i has text ``texts[order[i % len(texts)]]`` (or ``texts[i % len]``) and id
    ``prefix + i``. ``n_tokens`` stands in for the token count every real row and sample of a text
    run carries (characters / 4 + 2), so the regimes work in tokens, their default for text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    path.mkdir(parents=True)
    files = []
    distinct = len(texts)
    for shard_start in range(0, n, SHARD_ROWS):
        name = f"data-{len(files):05d}-of-{(n + SHARD_ROWS - 1) // SHARD_ROWS:05d}.arrow"
        files.append({"filename": name})
        writer = None
        with pa.OSFile(str(path / name), "wb") as sink:
            for start in range(shard_start, min(shard_start + SHARD_ROWS, n), CHUNK):
                rows = np.arange(start, min(start + CHUNK, n, shard_start + SHARD_ROWS))
                pick = rows % distinct if order is None else order[rows % distinct]
                ids = pc.binary_join_element_wise(prefix, pc.utf8_lpad(pc.cast(pa.array(rows), pa.string()), 8, "0"), "")
                text = texts.take(pa.array(pick))
                table = pa.table({"text": text, "id": ids,
                                  "origin": pa.array(np.full(len(rows), origin)),
                                  "generation": pa.array(np.full(len(rows), generation, dtype=np.int64)),
                                  "parent": pa.array(np.full(len(rows), "")),
                                  "n_tokens": pc.add(pc.divide(pc.cast(pc.utf8_length(text), pa.int64()), 4), 2)})
                writer = writer or pa.ipc.new_stream(sink, table.schema)
                writer.write_table(table)
            assert writer is not None
            writer.close()
    (path / "state.json").write_text(json.dumps({"_data_files": files, "_fingerprint": f"{prefix}{n}",
                                                 "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
                                                 "_output_all_columns": False, "_split": None}))
    (path / "dataset_info.json").write_text("{}")


def build(root: Path, n: int, texts: Any) -> None:
    """The run directory as iterations 0-3 leave it: real/ and holdout/, S(1), S(2), S(3)."""
    write_dataset(root / "iter_000" / "curate" / "real", n, texts, None, origin="real", generation=0, prefix="real-")
    write_dataset(root / "iter_000" / "curate" / "holdout", 10, texts, None, origin="real", generation=0,
                  prefix="holdout-")
    for k in (1, 2, 3):
        order = np.random.default_rng(k).permutation(len(texts))
        write_dataset(root / f"iter_{k:03d}" / "generate" / "samples", n, texts, order, origin="synthetic",
                      generation=k, prefix=f"g{k:03d}-")
        (root / f"iter_{k:03d}" / "generate" / "stats.json").write_text("{}")  # committed
    (root / "iter_000" / "curate" / "stats.json").write_text("{}")


# ------------------------------------------------------------------------------------ one measurement

def status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status: ``RssAnon`` (anonymous resident
    memory: heap, Python objects, without file-backed pages) or ``VmHWM`` (peak resident memory
    since the process image started; getrusage's ru_maxrss would include the parent's pages
    before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def curate_once(root: str, regime: str) -> None:
    """Child process: the curate phase of iteration 4 into ``iter_004/curate-<regime>.tmp``; prints
    seconds, peak RSS and peak anonymous RSS (MiB) as JSON."""
    peak_anon = [status_mib("RssAnon")]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak_anon[0] = max(peak_anon[0], status_mib("RssAnon"))

    threading.Thread(target=sample, daemon=True).start()
    from collapsebench.api import PhaseContext
    from collapsebench.config import config_from_dict
    from collapsebench.io import phase_seed
    from collapsebench.phases import curate

    config = config_from_dict({"name": "bench", "iterations": 4, "curate": {"regime": regime}})
    out = Path(root) / "iter_004" / f"curate-{regime}.tmp"
    out.mkdir(parents=True)
    ctx = PhaseContext(config=config, run_dir=Path(root), iteration=4, phase="curate",
                       seed=phase_seed(config.seed, 4, "curate"), out_dir=out)
    start = time.perf_counter()
    stats = curate.run(ctx)
    took = time.perf_counter() - start
    done.set()
    peak = status_mib("VmHWM")
    print(json.dumps({"seconds": round(took, 2), "peak_rss_mib": round(peak), "peak_anon_mib": round(max(
        peak_anon[0], status_mib("RssAnon"))), "rows": stats["metrics"]["size"], "by_generation": stats["rows_by_generation"]}))


def measure(root: Path, regime: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, __file__, "--child", str(root), regime], capture_output=True, text=True,
                         env=env)
    if out.returncode != 0:
        sys.exit(f"curate {regime} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    folder = root / "iter_004" / f"curate-{regime}.tmp"
    result["on_disk_mib"] = round(sum(f.stat().st_size for f in folder.rglob("*.arrow")) / 2**20)
    shutil.rmtree(folder)
    return result


# ------------------------------------------------------------------------------------ report

def table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| real docs N | regime | rows of D(4) | written (MiB) | seconds | peak RSS (MiB) | peak anonymous RSS (MiB) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['n']:,} | {r['regime']} | {r['rows']:,} | {r['on_disk_mib']:,} | {r['seconds']:.1f} | "
                     f"{r['peak_rss_mib']:,} | {r['peak_anon_mib']:,} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--regimes", nargs="+", default=REGIMES, choices=REGIMES)
    parser.add_argument("--tmp", type=Path, default=None, help="where the corpus is written (default: the system's)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "curation_scale",
                        help="writes OUT.json and OUT.md")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        curate_once(*args.child)
        return
    started = dt.datetime.now(dt.timezone.utc)
    load_before = os.getloadavg()
    t = time.perf_counter()
    texts = distinct_texts(min(DISTINCT, max(args.sizes)))
    chars = sum(len(s) for s in texts.to_pylist()[:100_000]) / min(100_000, len(texts))
    print(f"{len(texts):,} distinct documents ({chars:.0f} characters each) in {time.perf_counter() - t:.0f} s",
          file=sys.stderr, flush=True)
    results = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(dir=args.tmp, prefix="curation-scale-") as tmp:
            root = Path(tmp)
            t = time.perf_counter()
            build(root, n, texts)
            size = sum(f.stat().st_size for f in root.rglob("*.arrow")) / 2**30
            print(f"N={n:,}: 4 datasets, {size:.1f} GiB, written in {time.perf_counter() - t:.0f} s", file=sys.stderr,
                  flush=True)
            for regime in args.regimes:
                results.append({"n": n, "regime": regime, **measure(root, regime)})
                print(table(results)[-1], file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    command = "python benchmarks/curation_scale.py " + " ".join(sys.argv[1:])
    machine = {"nproc": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"benchmark": "curation_scale", "date": started.isoformat(timespec="seconds"), "command": command.strip(),
         "machine": machine, "characters_per_document": round(chars, 1), "results": results}, indent=1))
    lines = ["# Curation at scale", "", f"Command: `{command.strip()}`", "",
             f"Date {started:%Y-%m-%d %H:%M} UTC; {machine['nproc']} cores, load average {machine['loadavg_before'][0]} "
             f"before and {machine['loadavg_after'][0]} after. Documents of about {chars:.0f} characters; D(4) from the "
             "real data and three synthetic generations of N documents each (see the script's docstring).", "",
             "Peak RSS counts every resident page, including the pages of the memory-mapped Arrow files the phase",
             "reads (the kernel's page cache, dropped under memory pressure); peak anonymous RSS is the process's own",
             "memory (Python objects, buffers): the part that must not grow with the corpus.", "", *table(results)]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
