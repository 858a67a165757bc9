"""Generation throughput on the CPU: the ``transformers`` generator (the framework's path: the
generate phase, through the quota loop) against a raw batched ``model.generate`` on the same
model, prompts and sampling, side by side in one process.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/generation.py            # ~4 min on 2 idle cores
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/generation.py --quick    # ~1 min

Setup (not timed): the quickstart's tiny GPT-2 (2 layers, 64 dimensions, BPE of 1024 tokens)
trained for one iteration of ``configs/quickstart.yaml`` on the ground-truth language.

* framework: the generate phase of iteration 1 (``collapsebench.phases.work``: the model loaded
  from its folder, the prompt table, shards generated with per-shard seeds and written as Parquet,
  the validator chain, the samples saved with lineage), ``--samples`` unconditional samples, batches
  of ``--batch-size``, ``--max-new-tokens``, ancestral sampling (temperature 1, top-k 0, top-p 1);
* raw: the script a researcher would write: the model and tokenizer loaded with ``from_pretrained``,
  ``model.generate`` on batches of BOS, torch reseeded at every shard as the framework does, each
  row cut at the first EOS and decoded.

Both sides draw the same seeds, so they generate the same texts (checked). Tokens per second count
the generated tokens (up to the EOS) over the side's wall time. The sides alternate for
``--rounds`` rounds (9: the per-round ratio varies by +-20% on a shared 2-core machine); the ratio
framework / raw of each round, their median and the ratio of the totals are reported.
Writes ``benchmarks/results/generation.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from results_file import machine, write_result

ROOT = Path(__file__).resolve().parents[1]


def setup(root: Path) -> Any:
    """A quickstart run with iteration 1 trained; returns the config to generate with."""
    from collapsebench.config import load_config
    from collapsebench.loop import run_experiment

    config = load_config(ROOT / "configs" / "quickstart.yaml",
                         [f"output_dir={root / 'run'}", "iterations=1", "generate.num_samples=8",
                          "evaluate.evaluations=[sample_stats]"])
    run_experiment(config, quiet=True)
    return config


def framework(config: Any, run_dir: Path, out: Path, samples: int, batch_size: int, max_new_tokens: int) -> dict[str, Any]:
    """The generate phase of iteration 1 into ``out``: seconds, generated tokens, texts."""
    import datasets

    from collapsebench.api import PhaseContext
    from collapsebench.io import phase_seed
    from collapsebench.phases import work

    cfg = config.model_copy(deep=True)
    cfg.generate.num_samples = samples
    cfg.generate.generator.kwargs.update(batch_size=batch_size, max_new_tokens=max_new_tokens)
    ctx = PhaseContext(config=cfg, run_dir=run_dir, iteration=1, phase="generate",
                       seed=phase_seed(cfg.seed, 1, "generate"), out_dir=out)
    start = time.perf_counter()
    work(ctx, "benchmark")
    seconds = time.perf_counter() - start
    saved = datasets.load_from_disk(str(out / "samples"))
    tokens = saved["new_tokens"] if "new_tokens" in saved.column_names else None
    return {"seconds": seconds, "texts": saved["text"], "tokens": None if tokens is None else int(sum(tokens))}


def raw(config: Any, run_dir: Path, samples: int, batch_size: int, max_new_tokens: int) -> dict[str, Any]:
    """The same samples with ``model.generate`` in a plain loop."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from collapsebench.io import derive_seed, phase_seed

    seed = phase_seed(config.seed, 1, "generate")
    shard = config.generate.shard_size
    start = time.perf_counter()
    model_dir = run_dir / "iter_001" / "train" / "model"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    eos = tokenizer.eos_token_id
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    gen = GenerationConfig(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens,
                           pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
                           eos_token_id=eos)
    texts, tokens = [], 0
    with torch.no_grad():
        for lo in range(0, samples, batch_size):
            if lo % shard == 0:
                torch.manual_seed(derive_seed(seed, 0, lo // shard) % 2**63)
            prompt = torch.full((min(batch_size, samples - lo), 1), bos, dtype=torch.long)
            out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), generation_config=gen)
            for row in out[:, 1:].tolist():
                if eos in row:
                    row = row[: row.index(eos)]
                texts.append(tokenizer.decode(row, skip_special_tokens=True))
                tokens += len(row)
    return {"seconds": time.perf_counter() - start, "texts": texts, "tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true", help="256 samples, 2 rounds; writes no result unless --out")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.samples, args.rounds = 256, 2
    out = args.out or (None if args.quick else ROOT / "benchmarks" / "results" / "generation.json")

    import datasets
    import torch

    datasets.disable_progress_bars()
    torch.set_num_threads(args.threads)
    started = dt.datetime.now(dt.timezone.utc)
    load_before = os.getloadavg()
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = setup(root)
        run_dir = root / "run"
        for r in range(args.rounds):
            sides = ("framework", "raw") if r % 2 == 0 else ("raw", "framework")
            got: dict[str, dict[str, Any]] = {}
            for side in sides:
                if side == "framework":
                    folder = root / f"gen-{r}"
                    got[side] = framework(config, run_dir, folder, args.samples, args.batch_size, args.max_new_tokens)
                    shutil.rmtree(folder)
                else:
                    got[side] = raw(config, run_dir, args.samples, args.batch_size, args.max_new_tokens)
            same = got["framework"]["texts"] == got["raw"]["texts"]
            tokens = got["raw"]["tokens"]
            row = {"round": r, "order": list(sides), "identical_texts": same, "generated_tokens": tokens,
                   "framework_tokens": got["framework"]["tokens"],
                   **{f"{s}_seconds": round(got[s]["seconds"], 3) for s in sides},
                   **{f"{s}_tokens_per_second": round(tokens / got[s]["seconds"], 1) for s in sides}}
            row["ratio"] = round(row["framework_tokens_per_second"] / row["raw_tokens_per_second"], 4)
            rounds.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    result = {"benchmark": "generation", "date": started.isoformat(timespec="seconds"),
              "command": "OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/generation.py " + " ".join(sys.argv[1:]),
              "machine": machine(args.threads, load_before),
              "settings": {"model": "configs/quickstart.yaml (GPT-2, 2 layers, 64 dims), trained 1 iteration",
                           "samples": args.samples, "batch_size": args.batch_size,
                           "max_new_tokens": args.max_new_tokens, "sampling": "temperature 1, top-k 0, top-p 1"},
              "rounds": rounds, "median_ratio": statistics.median(r["ratio"] for r in rounds),
              # all rounds' tokens over all rounds' seconds: less sensitive to one slow round
              "total_ratio": round(sum(r["raw_seconds"] for r in rounds) / sum(r["framework_seconds"] for r in rounds), 4),
              "target": ">= 0.95"}
    write_result(result, out, ("median_ratio", "total_ratio", "settings"))


if __name__ == "__main__":
    main()
