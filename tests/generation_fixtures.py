"""A run directory with the real split, a trained tokenizer and a tiny random GPT-2 as iteration 1's
model, built from scratch once per test module; contexts for the generate phase over it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from conftest import tiny_config, write_corpus


def build_base(root: Path, n_embd: int = 32, n_head: int = 2) -> Path:
    """``root/run`` with iter_000/curate/{real,holdout,tokenizer} and iter_001/train/model."""
    import datasets
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from collapsebench.data import add_lineage
    from collapsebench.models.loading import load_tokenizer
    from collapsebench.models.tokenizer import train_tokenizer

    lines = write_corpus(root / "corpus.txt").read_text().splitlines()
    ds = add_lineage(datasets.Dataset.from_dict({"text": lines}), origin="real", generation=0, prefix="real-")
    curate = root / "run" / "iter_000" / "curate"
    ds.select(range(40, len(ds))).save_to_disk(str(curate / "real"))
    ds.select(range(40)).save_to_disk(str(curate / "holdout"))
    train_tokenizer(ds, "text", 300, curate / "tokenizer")
    tok = load_tokenizer(curate / "tokenizer")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_layer=1, n_head=n_head, n_embd=n_embd, n_positions=256,
                                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    model_dir = root / "run" / "iter_001" / "train" / "model"
    model.save_pretrained(str(model_dir))
    tok.save_pretrained(str(model_dir))
    (model_dir.parent / "stats.json").write_text("{}")
    return root / "run"


def gen_config(base: Path, tmp_path: Path, **generate: Any) -> dict[str, Any]:
    """A config dict whose run directory (tmp_path/run) links to ``base``'s committed phases."""
    run = tmp_path / "run"
    (run / "iter_001").mkdir(parents=True, exist_ok=True)
    if not (run / "iter_000").exists():
        os.symlink(base / "iter_000", run / "iter_000")
        os.symlink(base / "iter_001" / "train", run / "iter_001" / "train")
    raw = tiny_config(tmp_path)
    raw["output_dir"] = str(run)
    raw["iterations"] = 1
    raw["generate"] = {"generator": {"name": "transformers", "batch_size": 16, "max_new_tokens": 12},
                       "shard_size": 20, **generate}
    return raw


def gen_ctx(base: Path, tmp_path: Path, seed: int = 7, **generate: Any) -> Any:
    from collapsebench.api import PhaseContext
    from collapsebench.config import config_from_dict

    config = config_from_dict(gen_config(base, tmp_path, **generate))
    run = tmp_path / "run"
    out = run / "iter_001" / "generate.tmp"
    out.mkdir(parents=True, exist_ok=True)
    return PhaseContext(config=config, run_dir=run, iteration=1, phase="generate", seed=seed, out_dir=out)
