"""Training throughput on the CPU: the causal_lm trainer (transformers, packed blocks) against the
sft trainer (TRL) on the same documents, with this project's CPU defaults and with TRL's defaults.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/sft_vs_causal_lm.py > benchmarks/sft_vs_causal_lm.json

Tokens per second count the tokens the trainer feeds the model (padding excluded for sft)."""

from __future__ import annotations

import json
import platform
import sys
import tempfile
from pathlib import Path

import datasets
import torch

from collapsebench.api import PhaseContext
from collapsebench.config import config_from_dict
from collapsebench.models.tokenizer import train_tokenizer
from collapsebench.sources.language import ground_truth_language_source
from collapsebench.trainers.causal_lm import train_causal_lm
from collapsebench.trainers.sft import train_sft

N_DOCS, EPOCHS, TRL_STEPS = 400, 1, 3
ARCH = {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64}
ARGS = {"num_train_epochs": EPOCHS, "per_device_train_batch_size": 16, "save_strategy": "no", "logging_steps": 1000}


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    raw = {"name": "bench", "iterations": 1, "output_dir": str(tmp / "run"),
           "model": {"init": "scratch", "architecture": ARCH, "tokenizer": {"path": str(tmp / "tok")}}}
    config = config_from_dict(raw)

    def ctx(name: str) -> PhaseContext:
        out = tmp / name
        out.mkdir(parents=True, exist_ok=True)
        return PhaseContext(config=config, run_dir=tmp / "run", iteration=1, phase="train", seed=0, out_dir=out)

    docs = ground_truth_language_source(ctx("data"), n_documents=N_DOCS)
    train_tokenizer(docs, "text", 1024, tmp / "tok")
    docs = datasets.Dataset.from_dict({"text": docs["text"]})
    runs = {
        "causal_lm (block 128)": lambda c: train_causal_lm(c, docs, block_size=128, args=ARGS),
        "sft, CPU defaults (no packing, no bf16, no grad. checkpointing)":
            lambda c: train_sft(c, docs, args={**ARGS, "max_length": 256}),
        "sft, CPU defaults + packing (bfd)": lambda c: train_sft(c, docs, args={**ARGS, "max_length": 256, "packing": True}),
        # so slow on a CPU that it runs only TRL_STEPS steps; its rate is per step, on the same batches
        "sft, TRL defaults (gradient checkpointing, bf16)":
            lambda c: train_sft(c, docs, args={**ARGS, "max_length": 256, "gradient_checkpointing": True, "bf16": True,
                                               "use_cpu": True, "max_steps": TRL_STEPS}),
    }
    results = []
    for i, (name, fn) in enumerate(runs.items()):
        stats = fn(ctx(f"r{i}"))
        rate = stats["metrics"]["tokens_per_second"]
        if "TRL defaults" in name:  # same batches as the unpacked sft run: scale its rate by step time
            unpacked = results[1]
            rate = unpacked["tokens_per_second"] * (unpacked["seconds"] / unpacked["steps"]) / (stats["seconds"] / stats["steps"])
        results.append({"run": name, "tokens_per_second": round(rate, 1), "seconds": stats["seconds"],
                        "steps": stats["steps"], "seconds_per_step": round(stats["seconds"] / stats["steps"], 3),
                        "loss": round(stats["metrics"]["loss"], 4)})
        print(results[-1], file=sys.stderr)
    base = results[0]["tokens_per_second"]
    for r in results:
        r["slowdown_vs_causal_lm"] = round(base / r["tokens_per_second"], 2)
    print(json.dumps({"documents": N_DOCS, "architecture": ARCH, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
                      "results": results}, indent=1))


if __name__ == "__main__":
    main()
