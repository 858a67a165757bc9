"""Holdout perplexity: the ``perplexity`` evaluation against lm-evaluation-harness's
``loglikelihood_rolling`` (its HFLM) on the same model, text and batch size: the same number, and
tokens per second side by side in one process.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/perplexity_lm_eval.py           # ~5 min on 2 idle cores
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/perplexity_lm_eval.py --quick   # ~2 min

Setup (not timed): the overhead benchmark's experiment (``benchmarks/overhead/config.yaml``: a
2-layer GPT-2 with a BPE of 1024 tokens, on WikiText-2 ``valid.txt`` from ``$COLLAPSEBENCH_DATA``)
trained for one iteration (one epoch); its 246 held-out lines are the text.

The two conventions: the framework scores each document as BOS + tokens + EOS (every token after
BOS, EOS included: what its trainers train on); ``loglikelihood_rolling`` scores the document's
tokens after a prefix token (BOS = EOS here) and no EOS. Giving lm-eval each document with the EOS
text appended (its tokenizer reads it as the EOS token) makes the scored tokens the same; the
benchmark reports both lm-eval figures. Documents longer than the context are cut into windows
that both sides place the same way (each window conditions on the tokens before it in the window).

Timed: the evaluation call (``evaluations.perplexity``, model loaded from the run directory and its
per-document Parquet file included) against ``HFLM(...).loglikelihood_rolling`` (model loaded by
HFLM included), alternating, ``--rounds`` times per batch size; tokens per second count the scored
tokens (EOS included on both sides). Writes ``benchmarks/results/perplexity_lm_eval.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from results_file import machine, write_result

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "benchmarks" / "overhead" / "config.yaml"


def data_root() -> Path:
    return Path(os.environ.get("COLLAPSEBENCH_DATA") or ROOT / ".." / "shared" / "data").resolve()


def setup(root: Path, quick: bool) -> Any:
    """The overhead experiment's iteration 1, trained (generation and evaluation left minimal)."""
    from collapsebench.config import load_config
    from collapsebench.loop import run_experiment

    overrides = [f"output_dir={root / 'run'}", "iterations=1", f"data.source.path={data_root() / 'wikitext-2' / 'valid.txt'}",
                 "train.trainer.args.num_train_epochs=1", "generate.num_samples=4", "generate.generator.max_new_tokens=8",
                 "evaluate.evaluations=[sample_stats]"]
    if quick:
        overrides.append("data.max_documents=1000")
    config = load_config(CONFIG, overrides)
    run_experiment(config, quiet=True)
    return config


def framework(config: Any, run_dir: Path, out: Path, batch_size: int) -> dict[str, float]:
    from collapsebench.api import PhaseContext
    from collapsebench.evaluations.perplexity import perplexity
    from collapsebench.io import phase_seed

    out.mkdir(parents=True, exist_ok=True)
    ctx = PhaseContext(config=config, run_dir=run_dir, iteration=1, phase="evaluate",
                       seed=phase_seed(config.seed, 1, "evaluate"), out_dir=out)
    start = time.perf_counter()
    result = perplexity(ctx, batch_size=batch_size)
    seconds = time.perf_counter() - start
    ctx.close()
    return {"seconds": seconds, "perplexity": result["holdout_perplexity"], "tokens": result["holdout_tokens"]}


def harness(model_dir: Path, texts: list[str], batch_size: int, *, with_eos: bool) -> dict[str, float]:
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    start = time.perf_counter()
    lm = HFLM(pretrained=str(model_dir), tokenizer=str(model_dir), batch_size=batch_size, device="cpu")
    eos = lm.tokenizer.eos_token if with_eos else ""
    requests = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t + eos,), idx=i)
                for i, t in enumerate(texts)]
    logprobs = lm.loglikelihood_rolling(requests, disable_tqdm=True)
    seconds = time.perf_counter() - start
    tokens = sum(len(lm.tok_encode(t + eos)) for t in texts)
    return {"seconds": seconds, "perplexity": math.exp(-sum(logprobs) / tokens), "tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1000 lines of data, 1 round, batch 16; no result file")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not (data_root() / "wikitext-2" / "valid.txt").is_file():
        sys.exit(f"WikiText-2 not found under {data_root()} (set COLLAPSEBENCH_DATA)")
    if args.quick:
        args.rounds, args.batch_sizes = 1, [16]
    out = args.out or (None if args.quick else ROOT / "benchmarks" / "results" / "perplexity_lm_eval.json")

    import datasets
    import torch

    datasets.disable_progress_bars()
    torch.set_num_threads(args.threads)
    started = dt.datetime.now(dt.timezone.utc)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = setup(root, args.quick)
        run_dir = root / "run"
        model_dir = run_dir / "iter_001" / "train" / "model"
        texts = datasets.load_from_disk(str(run_dir / "iter_000" / "curate" / "holdout"))["text"]
        agreement = {"lm_eval_without_eos": harness(model_dir, texts, 16, with_eos=False)["perplexity"]}
        rounds = []
        for batch_size in args.batch_sizes:
            for r in range(args.rounds):
                order = ("framework", "lm_eval") if r % 2 == 0 else ("lm_eval", "framework")
                got = {side: framework(config, run_dir, root / f"eval-{batch_size}-{r}", batch_size)
                       if side == "framework" else harness(model_dir, texts, batch_size, with_eos=True) for side in order}
                row: dict[str, Any] = {"batch_size": batch_size, "round": r, "order": list(order)}
                for side, res in got.items():
                    row[f"{side}_perplexity"] = res["perplexity"]
                    row[f"{side}_tokens"] = res["tokens"]
                    row[f"{side}_seconds"] = round(res["seconds"], 3)
                    row[f"{side}_tokens_per_second"] = round(res["tokens"] / res["seconds"], 1)
                row["relative_difference"] = abs(row["framework_perplexity"] / row["lm_eval_perplexity"] - 1)
                row["throughput_ratio"] = round(row["framework_tokens_per_second"] / row["lm_eval_tokens_per_second"], 4)
                rounds.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    first = rounds[0]
    agreement.update(framework=first["framework_perplexity"], lm_eval_with_eos=first["lm_eval_perplexity"],
                     relative_difference=first["relative_difference"],
                     tokens_framework=first["framework_tokens"], tokens_lm_eval_with_eos=first["lm_eval_tokens"])
    by_batch = {b: statistics.median(r["throughput_ratio"] for r in rounds if r["batch_size"] == b)
                for b in args.batch_sizes}
    result = {"benchmark": "perplexity_lm_eval", "date": started.isoformat(timespec="seconds"),
              "command": "OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/perplexity_lm_eval.py " + " ".join(sys.argv[1:]),
              "machine": machine(args.threads, load_before),
              "documents": len(texts), "agreement": agreement, "median_throughput_ratio_by_batch_size": by_batch,
              "rounds": rounds, "target": "relative difference <= 1e-3, throughput ratio >= 1"}
    write_result(result, out, ("agreement", "median_throughput_ratio_by_batch_size"))


if __name__ == "__main__":
    main()
