"""Hand-written baseline: the model-collapse loop of benchmarks/overhead/config.yaml, without collapsebench.

    OMP_NUM_THREADS=1 python benchmarks/overhead/handwritten.py --out /tmp/hw --threads 1

FROZEN. This is the reference the framework's speed is measured against (benchmarks/overhead.py): the
script a researcher would write with transformers / tokenizers / torch alone, everything in memory,
nothing saved but the timings. Do not optimise it, or later measurements stop being comparable with
earlier ones; if it must change, say so in benchmarks/overhead/README.md and re-measure the "before".

The work is the framework's, step for step (see the README for what differs: only the framework's
bookkeeping, such as saving datasets, models, checkpoints and shards, which this script skips):

* prepare: read WikiText-2 valid.txt, one document per line, drop blank lines, shuffle, hold out 10%,
  train a byte-level BPE tokenizer (vocabulary 1024) on the rest;
* each iteration k: D(1) = the real training split, D(k) = len(real) samples of S(k-1) drawn without
  replacement (replace, alpha = 1), kept as the token ids the model generated; train a fresh 2-layer
  GPT-2 on D(k): every document framed BOS + tokens + EOS and packed into 128-token blocks that all
  start with BOS (the context generation starts from); sample NUM_SAMPLES documents from BOS alone
  (ancestral sampling); holdout perplexity.

Changed once, on 2026-12-01, when the framework began to frame every training block with BOS and to
train on the ids its models generate instead of re-tokenizing their decoded text: the script does the
same since (the data conventions are part of the work, not of the bookkeeping), and the "before" of
benchmarks/results/overhead.json was measured with the earlier script against the earlier framework.
Changed again on 2026-12-02, when the framework's regimes began to draw rows by random keys (so that a
draw from a pool of any size takes memory that does not grow with it): the script draws the same rows.

Seeds follow the framework's derivation (a hash of seed, iteration and phase), so both sides draw the
same split, initial weights, batch order and samples: perplexities that agree digit for digit show
that the work is the same. A researcher would pick any seeds; the choice costs nothing.
"""

import time

T0 = time.perf_counter()  # before the heavy imports: they are part of the script's cost

import argparse
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
    default_data_collator,
)

# ------------------------------------------------------------------------------------------------
# FROZEN SETTINGS: the same values as benchmarks/overhead/config.yaml (its single source on that side).
SEED = 0
ITERATIONS = 3
DATA_FILE = "wikitext-2/valid.txt"  # under $COLLAPSEBENCH_DATA (default ../shared/data of the repo)
HOLDOUT = 0.1  # fraction of the non-blank lines held out for perplexity
VOCAB_SIZE = 1024  # byte-level BPE trained on the real training split
ARCHITECTURE = {"n_layer": 2, "n_head": 2, "n_embd": 64}  # GPT-2 defaults otherwise (n_positions 1024)
BLOCK_SIZE = 128
EPOCHS = 3
TRAIN_BATCH = 16
LEARNING_RATE = 3e-3  # linear decay to 0, no warmup
NUM_SAMPLES = 2984  # = the number of training blocks of iteration 1
MAX_NEW_TOKENS = 127
GEN_BATCH = 64
SEED_EVERY = 256  # samples per generator reseed (the framework's shard_size); no effect on the work
EVAL_BATCH = 16
EVAL_CHUNK = 128  # holdout documents sorted by length within chunks of this many (the framework's 8 x 16)
ALPHA = 1.0  # replace: D(k+1) = S(k) only
# ------------------------------------------------------------------------------------------------

SPECIAL = "<|endoftext|>"


def seed_for(iteration: int, phase: str) -> int:
    """A seed per (iteration, phase): the framework's derivation, so that both sides draw alike."""
    return int(hashlib.sha256(f"{SEED}:{iteration}:{phase}".encode()).hexdigest()[:8], 16)


def shard_seed(seed: int, shard: int) -> int:
    return int(hashlib.sha256(f"{seed}:0:{shard}".encode()).hexdigest()[:15], 16) % 2**63


def data_root() -> Path:
    return Path(os.environ.get("COLLAPSEBENCH_DATA") or Path(__file__).resolve().parents[2] / ".." / "shared" / "data")


def prepare(path: Path, max_documents: int | None) -> tuple[list[str], list[str], PreTrainedTokenizerFast]:
    """Real training split, holdout, tokenizer trained on the training split."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    docs = [line for line in lines if line.strip()]
    order = np.random.default_rng(seed_for(0, "curate")).permutation(len(docs))
    docs = [docs[i] for i in order]
    if max_documents:
        docs = docs[:max_documents]
    n_holdout = round(HOLDOUT * len(docs))
    holdout, real = docs[:n_holdout], docs[n_holdout:]

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=[SPECIAL],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([real], trainer=trainer, length=len(real))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL, eos_token=SPECIAL,
                                        pad_token=SPECIAL, unk_token=None)
    return real, holdout, tokenizer


def pack(documents: list[list[int]], bos: int) -> tuple[list[list[int]], list[list[int]]]:
    """Per 1000 documents: each framed BOS + tokens + EOS and concatenated (BOS = EOS here, so the
    token between two documents is written once), cut into blocks of BLOCK_SIZE that all start with
    BOS: a block starting inside a document is BOS + BLOCK_SIZE - 1 tokens, and the prediction
    right after that BOS is not trained; the remainder of each group is dropped. (input ids, labels)."""
    blocks: list[list[int]] = []
    labels: list[list[int]] = []
    for lo in range(0, len(documents), 1000):
        stream: list[int] = []
        for doc in documents[lo : lo + 1000]:
            stream.extend([*doc, bos] if stream else [bos, *doc, bos])
        pos = 0
        while pos < len(stream):
            at_bos = stream[pos] == bos
            block = stream[pos : pos + BLOCK_SIZE] if at_bos else [bos, *stream[pos : pos + BLOCK_SIZE - 1]]
            if len(block) < BLOCK_SIZE:
                break
            label = list(block)
            if not at_bos and not (pos > 0 and stream[pos - 1] == bos):
                label[1] = -100
            blocks.append(block)
            labels.append(label)
            pos += BLOCK_SIZE if at_bos else BLOCK_SIZE - 1
    return blocks, labels


def train(documents: list[list[int]], tokenizer: PreTrainedTokenizerFast, seed: int,
          out: Path) -> tuple[GPT2LMHeadModel, dict]:
    """A fresh GPT-2 trained on the packed blocks of ``documents`` (token ids)."""
    torch.manual_seed(seed)
    special = tokenizer.eos_token_id
    config = GPT2Config(vocab_size=len(tokenizer), bos_token_id=special, eos_token_id=special,
                        pad_token_id=special, **ARCHITECTURE)
    model = GPT2LMHeadModel(config)
    blocks, labels = pack(documents, tokenizer.bos_token_id)
    args = TrainingArguments(output_dir=str(out / "trainer"), per_device_train_batch_size=TRAIN_BATCH,
                             num_train_epochs=EPOCHS, learning_rate=LEARNING_RATE, lr_scheduler_type="linear",
                             warmup_steps=0, logging_steps=10, save_strategy="no", report_to=[],
                             dataloader_num_workers=0, dataloader_pin_memory=False, disable_tqdm=True,
                             seed=seed, data_seed=seed)
    trainer = Trainer(model=model, args=args, train_dataset=[{"input_ids": b, "labels": lab} for b, lab in zip(blocks, labels)],
                      data_collator=default_data_collator)
    result = trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    model.eval()
    return model, {"blocks": len(blocks), "steps": result.global_step, "loss": losses[-1] if losses else None}


@torch.no_grad()
def generate(model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, n: int,
             seed: int) -> tuple[list[list[int]], int]:
    """``n`` samples from BOS alone, ancestral sampling, cut at the first EOS: their token ids
    (decoded too, as a researcher would to read them)."""
    eos = tokenizer.eos_token_id
    config = GenerationConfig(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=MAX_NEW_TOKENS,
                              pad_token_id=eos, eos_token_id=eos)
    texts: list[str] = []
    samples: list[list[int]] = []
    new_tokens = 0
    for lo in range(0, n, GEN_BATCH):
        if lo % SEED_EVERY == 0:
            torch.manual_seed(shard_seed(seed, lo // SEED_EVERY))
        rows = min(GEN_BATCH, n - lo)
        prompt = torch.full((rows, 1), tokenizer.bos_token_id, dtype=torch.long)
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), generation_config=config)
        for row in out[:, 1:].tolist():
            if eos in row:
                row = row[: row.index(eos)]
            texts.append(tokenizer.decode(row, skip_special_tokens=True))
            samples.append(row)
            new_tokens += len(row)
    return samples, new_tokens


@torch.no_grad()
def perplexity(model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, docs: list[str]) -> float:
    """Token-weighted holdout perplexity; each document scored as BOS + tokens + EOS (EOS included),
    in windows of the model's context overlapping by one token."""
    size = model.config.n_positions
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    nll, count = 0.0, 0
    for lo in range(0, len(docs), EVAL_CHUNK):
        windows = []
        for ids in tokenizer(docs[lo : lo + EVAL_CHUNK], add_special_tokens=False)["input_ids"]:
            seq = [bos, *ids, eos]
            windows.extend(seq[s : s + size] for s in range(0, len(seq) - 1, size - 1))
        windows.sort(key=len)
        for b in range(0, len(windows), EVAL_BATCH):
            batch = windows[b : b + EVAL_BATCH]
            width = max(len(w) for w in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, w in enumerate(batch):
                ids[row, : len(w)] = torch.tensor(w)
                mask[row, : len(w)] = 1
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float()[:, :-1], dim=-1)
            picked = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1).numpy()
            for row, w in enumerate(batch):
                nll -= picked[row, : len(w) - 1].astype(np.float64).sum()
                count += len(w) - 1
    return math.exp(nll / count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for handwritten.json (and Trainer scratch)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--iterations", type=int, default=ITERATIONS)
    parser.add_argument("--max-documents", type=int, default=None, help="smoke tests only: the first N shuffled lines")
    parser.add_argument("--num-samples", type=int, default=NUM_SAMPLES, help="smoke tests only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    seconds: dict[str, float] = {"startup": time.perf_counter() - T0}
    t = time.perf_counter()
    real, holdout, tokenizer = prepare(data_root() / DATA_FILE, args.max_documents)
    seconds["prepare"] = time.perf_counter() - t
    per_iteration = []
    samples: list[list[int]] = []
    for k in range(1, args.iterations + 1):
        t = time.perf_counter()
        if k == 1:
            dataset = tokenizer(real, add_special_tokens=False)["input_ids"]
        else:  # replace, alpha = 1: len(real) samples of S(k-1), drawn without replacement, order kept
            n_syn = round(ALPHA * len(real))
            # the framework's draw: a uniform key per row from (seed, 2 = the synthetic stream, window 0),
            # the n_syn rows of smallest keys
            keys = np.random.default_rng([seed_for(k, "curate"), 2, 0]).random(len(samples))
            picked = range(len(samples)) if n_syn == len(samples) else np.sort(np.argsort(keys)[:n_syn])
            dataset = [samples[i] for i in picked]
        seconds[f"{k}.curate"] = time.perf_counter() - t

        t = time.perf_counter()
        model, train_stats = train(dataset, tokenizer, seed_for(k, "train"), args.out)
        seconds[f"{k}.train"] = time.perf_counter() - t

        t = time.perf_counter()
        samples, new_tokens = generate(model, tokenizer, args.num_samples, seed_for(k, "generate"))
        seconds[f"{k}.generate"] = time.perf_counter() - t

        t = time.perf_counter()
        ppl = perplexity(model, tokenizer, holdout)
        seconds[f"{k}.evaluate"] = time.perf_counter() - t
        per_iteration.append({"iteration": k, "dataset_size": len(dataset), **train_stats, "new_tokens": new_tokens,
                              "holdout_perplexity": ppl})
        print(f"iteration {k}: holdout perplexity {ppl:.4f} ({train_stats['blocks']} blocks)", flush=True)
    seconds["total"] = time.perf_counter() - T0
    result = {"threads": args.threads, "iterations": args.iterations, "real_size": len(real),
              "holdout_size": len(holdout), "num_samples": args.num_samples, "max_documents": args.max_documents,
              "seconds": {k: round(v, 3) for k, v in seconds.items()},
              "holdout_perplexity": [row["holdout_perplexity"] for row in per_iteration],
              "per_iteration": per_iteration}
    (args.out / "handwritten.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result["seconds"]))


if __name__ == "__main__":
    main()
