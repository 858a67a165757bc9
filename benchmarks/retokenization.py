"""What decoding and re-tokenizing generated text would change, on WikiText-2 with a byte-level BPE.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/retokenization.py --iterations 3 --documents 600

A replace run (alpha 1) on the first ``--documents`` lines of WikiText-2's valid split (from
``../shared/data/wikitext-2``, beside the repository), a byte-level BPE of 1024 tokens trained on
them and a 2-layer GPT-2 built from scratch. Per iteration it reports, from the run: the U+FFFD
characters decoding put into the samples (bytes of a multi-byte character cut by the generation;
the real text has none), the share of samples whose text re-tokenizes to other ids, and the blocks
the trainer packed from the generated ids; and, on the same curated dataset D(k), the blocks it
would have packed from the decoded text re-tokenized (what the trainer did before samples kept
their ids). Writes benchmarks/results/retokenization.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIKITEXT = ROOT.parent / "shared" / "data" / "wikitext-2" / "valid.txt"
BLOCK = 64


def retokenized_blocks(run: Path, k: int) -> int:
    """Blocks the causal trainer packs from D(k) with every row's text tokenized (as before ids were kept)."""
    import datasets

    from collapsebench.models.loading import bos_id, load_tokenizer
    from collapsebench.trainers.causal_lm import encode_documents, pack_blocks

    tok = load_tokenizer(run / "iter_000" / "curate" / "tokenizer")
    dataset = datasets.load_from_disk(str(run / f"iter_{k:03d}" / "curate" / "dataset"))
    blocks = 0
    for start in range(0, len(dataset), 1000):  # the trainer packs 1000 documents at a time
        texts = list(dataset.select(range(start, min(start + 1000, len(dataset))))["text"])
        blocks += len(pack_blocks(encode_documents(tok, texts), bos_id(tok), BLOCK)[0])
    return blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--documents", type=int, default=600)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "retokenization")
    args = parser.parse_args()
    if not WIKITEXT.exists():
        raise SystemExit(f"{WIKITEXT} is missing")
    from collapsebench.config import config_from_dict
    from collapsebench.layout import RunLayout
    from collapsebench.loop import run_experiment

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = config_from_dict({
            "name": "retokenization", "seed": 0, "iterations": args.iterations, "output_dir": f"{tmp}/run",
            "data": {"source": {"name": "local", "path": str(WIKITEXT), "sample_by": "line"},
                     "max_documents": args.documents + 60, "holdout": 60},
            "model": {"init": "scratch", "architecture": {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64},
                      "tokenizer": {"vocab_size": 1024}},
            "curate": {"regime": {"name": "replace", "alpha": 1.0}},
            "train": {"trainer": {"name": "causal_lm", "block_size": BLOCK,
                                  "args": {"num_train_epochs": 1, "learning_rate": 3e-3, "per_device_train_batch_size": 16}}},
            "generate": {"generator": {"name": "transformers", "batch_size": 64, "max_new_tokens": 128}},
            "evaluate": {"evaluations": ["perplexity"]},
        })
        run = run_experiment(config, quiet=True)
        layout = RunLayout(run.path)
        real = run.path / "iter_000" / "curate" / "real"
        import datasets

        real_fffd = sum(t.count("\ufffd") for t in datasets.load_from_disk(str(real))["text"])
        for k in range(1, args.iterations + 1):
            generate = layout.committed_stats(k, "generate")["metrics"]
            train = layout.committed_stats(k, "train")
            rows.append({"iteration": k, "samples": generate["samples"], "sample_tokens": generate["tokens"],
                         "replacement_chars": generate["replacement_chars"],
                         "retokenization_changed": generate["retokenization_changed"],
                         "blocks_from_ids": train["blocks"], "generated_rows": train["token_cache"]["generated_rows"],
                         "blocks_if_retokenized": retokenized_blocks(run.path, k),
                         "holdout_perplexity": layout.metrics_row(k)["holdout_perplexity"]})
            print(rows[-1], flush=True)
    command = (f"OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/retokenization.py --iterations {args.iterations} "
               f"--documents {args.documents}")
    machine = f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "machine": machine,
                                                         "real_replacement_chars": real_fffd, "rows": rows}, indent=1))
    lines = ["# Decode, then re-tokenize: what it would change", "", f"Command: `{command}`", "",
             f"Machine: {machine}. WikiText-2 valid, first {args.documents} training lines, byte-level BPE of 1024 "
             f"tokens, 2-layer GPT-2, replace with alpha 1, blocks of {BLOCK} tokens. The real text holds "
             f"{real_fffd} U+FFFD characters.", "",
             "| iteration | samples | U+FFFD in samples | samples re-tokenizing to other ids | blocks trained (ids) | "
             "blocks if re-tokenized | holdout perplexity |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['iteration']} | {r['samples']} | {r['replacement_chars']} | {r['retokenization_changed']:.1%} "
                     f"| {r['blocks_from_ids']} | {r['blocks_if_retokenized']} | {r['holdout_perplexity']:.1f} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
