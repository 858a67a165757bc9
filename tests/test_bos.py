"""Train what you generate from: after training on documents whose first token follows a known
law, the model's first token after BOS (what unconditional generation starts from) follows it too.

Two trainers and two tokenizers: SFT with the built-in byte-level BPE (one token for BOS and EOS),
and the causal trainer with a word-level tokenizer built here whose BOS differs from its EOS."""

from __future__ import annotations

import numpy as np
import pytest

from collapsebench.api import PhaseContext
from collapsebench.config import config_from_dict
from conftest import tiny_config

SYMBOLS = [chr(ord("A") + i) for i in range(20)]  # the first word of every document
FILLER = [f"w{i}" for i in range(30)]
N_DOCS = 5000
LAW = 1.0 / np.arange(1, len(SYMBOLS) + 1)
LAW /= LAW.sum()


def corpus(n: int = N_DOCS, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    first = rng.choice(len(SYMBOLS), size=n, p=LAW)
    return [" ".join([SYMBOLS[f], *rng.choice(FILLER, size=int(rng.integers(3, 7)))]) for f in first]


def separate_bos_tokenizer(path):
    """A word-level tokenizer whose BOS (<s>) is not its EOS (</s>), built from scratch."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<s>", "</s>", "<pad>", "<unk>", *SYMBOLS, *FILLER])}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.decoder = decoders.WordPiece()  # joins the words with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>")
    tok.save_pretrained(str(path))
    return path


def train_context(tmp_path, monkeypatch, trainer: str, tokenizer: str) -> tuple[PhaseContext, list[str]]:
    import datasets

    from collapsebench.data import add_lineage
    from collapsebench.models.tokenizer import train_tokenizer

    monkeypatch.setenv("COLLAPSEBENCH_CACHE", str(tmp_path / "cache"))
    docs = corpus()
    cfg = tiny_config(tmp_path)
    cfg["model"]["architecture"].update(n_layer=1, n_embd=32, n_positions=64)
    curate = tmp_path / "run" / "iter_000" / "curate"
    real = add_lineage(datasets.Dataset.from_dict({"text": docs}), origin="real", generation=0, prefix="real-")
    real.save_to_disk(str(curate / "real"))
    real.select(range(10)).save_to_disk(str(curate / "holdout"))
    if tokenizer == "separate":
        cfg["model"]["tokenizer"] = {"path": str(separate_bos_tokenizer(tmp_path / "tok"))}
    else:
        train_tokenizer(real, "text", 300, curate / "tokenizer")
    cfg["train"] = {"trainer": {"name": trainer}}
    out = tmp_path / "run" / "iter_001" / "train.tmp"
    out.mkdir(parents=True)
    ctx = PhaseContext(config=config_from_dict(cfg), run_dir=tmp_path / "run", iteration=1, phase="train",
                       seed=5, out_dir=out)
    return ctx, docs


ARGS = {"num_train_epochs": 2, "learning_rate": 1e-2, "per_device_train_batch_size": 32, "save_strategy": "no",
        "warmup_steps": 0}


def first_token_tv(ctx: PhaseContext, docs: list[str], n: int = N_DOCS) -> float:
    """Total variation between the first words of ``n`` unconditional samples and of the documents."""
    from collapsebench.generators.hf import generate_batch, generation_config
    from collapsebench.models.loading import load_causal_lm

    model, tok = load_causal_lm(ctx.out_dir / "model")
    gen = generation_config(None, 1, tok)
    import torch

    torch.manual_seed(0)
    firsts: list[str] = []
    for _ in range(0, n, 1000):
        texts, _ = generate_batch(model, tok, [""] * 1000, gen)
        firsts += [t.split()[0] if t.split() else "<end>" for t in texts]
    labels = [*SYMBOLS, "<other>"]
    def law(words: list[str]) -> np.ndarray:
        counts = np.array([sum(w == s for w in words) for s in SYMBOLS] + [0.0])
        counts[-1] = len(words) - counts.sum()
        return counts / len(words)
    data = law([d.split()[0] for d in docs])
    model_law = law(firsts)
    assert len(labels) == len(data)
    return float(0.5 * np.abs(model_law - data).sum())


@pytest.mark.parametrize("trainer,tokenizer,epochs", [
    ("sft", "builtin", 1), ("causal_lm", "separate", 2),
    # one token for BOS and EOS: BOS at position 0 followed by a document start occurs only in the
    # blocks that start at a document boundary (about 1 in 8 here), so it takes more epochs
    pytest.param("causal_lm", "builtin", 4, marks=pytest.mark.slow),
    pytest.param("sft", "separate", 1, marks=pytest.mark.slow),
])
def test_first_token_after_bos_follows_the_training_documents(tmp_path, monkeypatch, trainer, tokenizer, epochs):
    from collapsebench.registry import trainers

    ctx, docs = train_context(tmp_path, monkeypatch, trainer, tokenizer)
    args = {**ARGS, "num_train_epochs": epochs}
    kwargs = {"args": args, "block_size": 32} if trainer == "causal_lm" else {"args": {**args, "max_length": 16}}
    trainers.call(trainer, ctx, ctx.real(), key="train.trainer", kwargs=kwargs)
    tv = first_token_tv(ctx, docs)
    assert tv <= 0.1, f"total variation {tv:.3f} between first tokens after BOS and the documents' first tokens"


def test_blocks_start_with_bos_and_learn_only_document_starts_from_it():
    from collapsebench.trainers.causal_lm import pack_blocks

    bos, eos = 0, 1  # separate tokens: each document is 0 ... 1
    docs = [[bos, 5, 6, 7, eos], [bos, 8, 9, eos], [bos, 10, 11, 12, 13, eos]]
    blocks, labels = pack_blocks(docs, bos, 4)
    assert blocks == [[0, 5, 6, 7], [0, 1, 0, 8], [0, 9, 1, 0], [0, 10, 11, 12]]
    assert [lab[1] for lab in labels] == [5, -100, -100, 10]  # after BOS: a document start, or no loss
    same = [[eos, 5, 6, eos], [eos, 8, eos]]  # one token for both: written once between documents
    blocks, labels = pack_blocks(same, eos, 3)
    assert blocks == [[1, 5, 6], [1, 8, 1]] and labels[1][1] == 8


def test_sft_template_rows_are_framed_and_mask_the_prompt(tmp_path, monkeypatch):
    """A template row is BOS + the prompt's tokens (tokenized alone, as generation tokenizes a
    prompt) + the completion's + EOS; with completion_only_loss only the completion and EOS count,
    and TRL trains on those ids as they are."""
    import datasets

    from collapsebench.models.loading import load_tokenizer
    from collapsebench.trainers.sft import to_sft_rows

    ctx, _ = train_context(tmp_path, monkeypatch, "sft", "separate")
    tok = load_tokenizer(tmp_path / "tok")
    ds = datasets.Dataset.from_dict({"q": ["A w1", "B w2 w3"], "a": ["w4", "w5 w6"]})
    rows = to_sft_rows(ctx, ds, tok, "template", "{q} {a}", None, "prompt", None, True)
    bos, eos = tok.bos_token_id, tok.eos_token_id
    first = tok("A w1 ", add_special_tokens=False)["input_ids"], tok("w4", add_special_tokens=False)["input_ids"]
    assert rows[0]["input_ids"] == [bos, *first[0], *first[1], eos]
    assert rows[0]["completion_mask"] == [0] * (1 + len(first[0])) + [1] * (len(first[1]) + 1)
    stats = trainers_call(ctx, ds, template="{q} {a}", completion_only_loss=True)
    assert stats["rows"] == 2 and stats["steps"] >= 1


def trainers_call(ctx, ds, **kwargs):
    from collapsebench.registry import trainers

    args = {**ARGS, "num_train_epochs": 1, "max_length": 16}
    return trainers.call("sft", ctx, ds, key="train.trainer", kwargs={"format": "template", "args": args, **kwargs})
