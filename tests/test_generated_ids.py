"""Samples keep the token ids the model generated; the next iteration trains on those ids, not on
the decoded text re-tokenized; the generate phase records how often re-tokenizing would have
changed a sample, and how many U+FFFD characters decoding made (a cut multi-byte character)."""

from __future__ import annotations

import json

import datasets
import numpy as np

from collapsebench.generators.hf import generate
from collapsebench.models.loading import frame_ids, load_tokenizer
from generation_fixtures import gen_ctx


def test_samples_keep_generated_ids_and_training_uses_them(gen_base, tmp_path, monkeypatch):
    monkeypatch.setenv("COLLAPSEBENCH_CACHE", str(tmp_path / "cache"))
    ctx = gen_ctx(gen_base, tmp_path, num_samples=60)
    stats = generate(ctx, batch_size=16, max_new_tokens=12)
    samples = datasets.load_from_disk(str(ctx.out_dir / "samples"))
    tok = load_tokenizer(ctx.model_dir())
    ids, texts = list(samples["input_ids"]), list(samples["text"])
    assert all(tok.decode(x) == t for x, t in zip(ids, texts))  # the text is the ids, decoded
    retokenized = tok(texts, add_special_tokens=False)["input_ids"]
    changed = sum(r != x for r, x in zip(retokenized, ids))
    assert changed > 0  # a random model's tokens are rarely the tokenizer's own segmentation
    metrics = stats["metrics"]
    assert metrics["retokenization_changed"] == changed / len(texts)
    assert metrics["replacement_chars"] == sum(t.count("\ufffd") for t in texts) > 0  # cut multi-byte characters
    assert list(samples["n_tokens"]) == [len(x) + 2 for x in ids]

    # the trainer's tokens for these rows are the generated ids (framed), not the re-tokenized text
    from collapsebench.trainers.causal_lm import encode_documents
    from collapsebench.trainers.token_cache import tokenize_with_cache

    (ctx.out_dir / "stats.json").write_text("{}")
    ctx.out_dir.rename(ctx.phase_dir(1, "generate"))
    train = ctx.replace(iteration=2, phase="train", out_dir=tmp_path / "run" / "iter_002" / "train.tmp")
    train.out_dir.mkdir(parents=True)
    mixed = datasets.concatenate_datasets([
        train.real().select(range(5)).select_columns(["id", "origin", "generation", "parent", "text"]),
        samples.select_columns(["id", "origin", "generation", "parent", "text"])])
    tokens, info = tokenize_with_cache(train, mixed, tok, encode_documents)
    got = list(tokens["input_ids"])
    assert got[5:] == [frame_ids(tok, x) for x in ids]
    assert got[:5] == encode_documents(tok, list(mixed["text"][:5]))
    assert info["generated_rows"] == len(ids)
    edited = mixed.map(lambda row: {"text": row["text"] + "!"})  # a curate.preprocess that edits text
    redone, info = tokenize_with_cache(train, edited, tok, encode_documents)
    assert info["generated_rows"] == 0 and list(redone["input_ids"])[5:] == encode_documents(tok, list(edited["text"])[5:])
    assert np.isclose(metrics["retokenization_changed"], changed / 60)


def test_the_real_split_is_tokenized_once_and_training_reads_the_cache(tmp_path, monkeypatch):
    """Preparing the data makes the real split's ids once: their lengths are the counts
    (``n_tokens``) and they are the token-cache entry causal-LM training reads (a hit in every
    iteration, the first included)."""
    from collapsebench.config import config_from_dict
    from collapsebench.loop import run_experiment
    from conftest import tiny_config

    monkeypatch.setenv("COLLAPSEBENCH_CACHE", str(tmp_path / "cache"))
    run = run_experiment(config_from_dict(tiny_config(tmp_path)), quiet=True)
    info = [json.loads((run.phase_dir(k, "train") / "stats.json").read_text())["token_cache"] for k in (1, 2)]
    real = datasets.load_from_disk(str(run.phase_dir(0, "curate") / "real"))
    assert [i["cache_hit"] for i in info] == [True, True]
    assert info[0]["cache"] == info[1]["cache"] and info[0]["cached_rows"] == len(real)
    entries = list((tmp_path / "cache").iterdir())
    assert len(entries) == 1, "one entry, no scratch left behind"
    cached = datasets.load_from_disk(str(entries[0]))
    assert list(cached["id"]) == list(real["id"])
    assert [len(x) for x in cached["input_ids"]] == list(real["n_tokens"])
    tok = load_tokenizer(run.phase_dir(1, "train") / "model")
    encoded = tok(list(real["text"]), add_special_tokens=False)["input_ids"]
    assert list(cached["input_ids"]) == [frame_ids(tok, x) for x in encoded]
