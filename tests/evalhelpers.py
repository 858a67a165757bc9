"""Shared helpers of the evaluation tests: a real PhaseContext over a temporary run directory."""

from __future__ import annotations

import json
from pathlib import Path

from collapsebench.api import PhaseContext
from collapsebench.config import config_from_dict


def eval_ctx(tmp_path: Path, iteration: int = 1, **config) -> PhaseContext:
    raw = {"name": "t", "iterations": 3, "config_dir": str(tmp_path), **config}
    run_dir = tmp_path / "run"
    out_dir = run_dir / f"iter_{iteration:03d}" / "evaluate.tmp"
    out_dir.mkdir(parents=True, exist_ok=True)
    return PhaseContext(config=config_from_dict(raw), run_dir=run_dir, iteration=iteration,
                        phase="evaluate", seed=1234, out_dir=out_dir)


def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "metrics.jsonl").open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def save_samples(ctx: PhaseContext, iteration: int, texts: list[str]) -> None:
    """Commit a samples dataset for ``iteration`` with lineage columns."""
    import datasets

    path = ctx.phase_dir(iteration, "generate") / "samples"
    datasets.Dataset.from_dict({
        "id": [f"s{iteration}-{i}" for i in range(len(texts))],
        "origin": ["synthetic"] * len(texts),
        "generation": [iteration] * len(texts),
        "parent": [""] * len(texts),
        "text": texts,
    }).save_to_disk(str(path))


def save_real(ctx: PhaseContext, texts: list[str], split: str = "real") -> None:
    """Commit the real training split (``real``) or the holdout (``holdout``) of iteration 0."""
    import datasets

    path = ctx.phase_dir(0, "curate") / split
    datasets.Dataset.from_dict({
        "id": [f"r{i}" for i in range(len(texts))],
        "origin": ["real"] * len(texts),
        "generation": [0] * len(texts),
        "parent": [""] * len(texts),
        "text": texts,
    }).save_to_disk(str(path))


def tiny_causal_lm(path: Path, texts: list[str], *, train_steps: int = 0, seed: int = 0, n_embd: int = 32) -> Path:
    """A tiny GPT-2 with a word-level tokenizer built from ``texts``, optionally trained on them; saved to ``path``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    raw = Tokenizer(models.WordLevel(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    raw.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["<unk>", "<pad>", "<eos>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", pad_token="<pad>",
                                  eos_token="<eos>", bos_token="<eos>")
    config = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=n_embd, n_layer=2, n_head=2,
                        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = GPT2LMHeadModel(config)
    if train_steps:
        # with and without a leading BOS, so scoring works whichever way a caller frames the text
        framed = [t + " " + tok.eos_token for t in texts] + [tok.bos_token + " " + t + " " + tok.eos_token for t in texts]
        enc = tok(framed, padding=True, return_tensors="pt")
        labels = enc["input_ids"].clone()
        labels[enc["attention_mask"] == 0] = -100
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(train_steps):
            loss = model(**enc, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
    model.eval()
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def tiny_regression_classifier(folder, texts) -> str:
    """A one-output regression classifier (untrained, seed 0) sharing a tiny LM's tokenizer, in
    ``folder / "clf"``: the shape of a quality rater such as finemath's, for the filter and its audit."""
    import torch
    from transformers import AutoModelForSequenceClassification, GPT2Config

    from collapsebench.models.loading import load_tokenizer

    tiny_causal_lm(folder / "lm", texts)
    tok = load_tokenizer(folder / "lm")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_layer=1, n_head=2, n_embd=16, num_labels=1, problem_type="regression",
                     pad_token_id=tok.pad_token_id)
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(str(folder / "clf"))
    tok.save_pretrained(str(folder / "clf"))
    return str(folder / "clf")
