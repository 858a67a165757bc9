"""A shared, content-addressed cache of the tokenized real data.

The real training split is tokenized once per (prepared split, tokenizer, tokenization code) and
reused by every iteration, and by every run that reads the same prepared split (a redone step,
sweep cells that share the data step). When a causal-LM trainer is configured, the split is
tokenized while it is prepared (:func:`count_and_cache`: the same pass gives the token counts), so
training finds the entry from its first iteration on. The key hashes the real split's
fingerprint (the `datasets` fingerprint recorded when it was saved), the tokenizer's
files (its full serialisation and special tokens) and the source code of the function that
encodes the documents and of the framing it applies (:func:`collapsebench.models.loading.frame_ids`),
so an edit of either cannot serve stale tokens. Entries are
``save_to_disk`` folders with ``id`` and ``input_ids`` under ``$COLLAPSEBENCH_CACHE`` (default
``~/.cache/collapsebench/tokens``; ``collapsebench status`` shows its size), written to a temporary
folder and renamed into place, so concurrent runs never see half an entry.

Synthetic rows are not cached here: they are trained on the token ids their model generated,
kept with the samples (``input_ids`` of S(g)), so decoding and re-tokenizing never changes them.

Block size is not part of the key: documents are cached, and blocks are packed per iteration
after the real rows are mixed with the synthetic ones (packing is cheap; tokenizing is not).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from collapsebench.api import Dataset, PhaseContext, Tokenizer
from collapsebench.errors import UserError
from collapsebench.io import cache_folder
from collapsebench.models.loading import frame_ids

Encoder = Callable[[Any, list[str]], list[list[int]]]


def cache_root() -> Path:
    return Path(os.environ.get("COLLAPSEBENCH_CACHE") or cache_folder("tokens")).expanduser()


def cache_size() -> tuple[int, int]:
    """(entries, bytes) of the token cache."""
    root = cache_root()
    if not root.is_dir():
        return 0, 0
    entries = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return len(entries), sum(f.stat().st_size for e in entries for f in e.rglob("*") if f.is_file())


def tokenizer_hash(tokenizer: Tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    extra = f"{tokenizer.eos_token_id}|{tokenizer.bos_token_id}|{type(tokenizer).__name__}"
    return hashlib.sha256((body + extra).encode()).hexdigest()[:16]


def cache_key(split: str, tokenizer: Tokenizer, encode: Encoder, field: str) -> str:
    """The entry of the real split whose saved fingerprint is ``split`` (:func:`saved_fingerprint`)."""
    code = inspect.getsource(encode) + inspect.getsource(frame_ids)
    return hashlib.sha256(f"{split}|{tokenizer_hash(tokenizer)}|{field}|{code}".encode()).hexdigest()[:24]


def saved_fingerprint(folder: Path) -> str:
    """The content fingerprint a saved dataset folder records (``state.json``): what the split was
    when it was saved (`datasets` gives the loaded table a fingerprint of its own, derived from it)."""
    return str(json.loads((Path(folder) / "state.json").read_text())["_fingerprint"])


def _mapper(tokenizer: Tokenizer, encode: Encoder, field: str) -> Callable[[dict[str, list[Any]]], dict[str, list[Any]]]:
    return lambda batch: {"input_ids": encode(tokenizer, batch[field])}


def real_tokens(real: Dataset, split: str, tokenizer: Tokenizer, encode: Encoder, *,
                field: str) -> tuple[Dataset, Path, bool]:
    """The cached ``(id, input_ids)`` table of the real split ``real`` (saved with the fingerprint
    ``split``); (dataset, folder, was it a hit)."""
    import datasets

    folder = cache_root() / cache_key(split, tokenizer, encode, field)
    if (folder / "dataset_info.json").exists():
        return datasets.load_from_disk(str(folder)), folder, True
    with _scratch(folder) as tmp_cache:
        tokens = real.select_columns(["id", field]).map(
            _mapper(tokenizer, encode, field), batched=True, batch_size=1000, remove_columns=[field],
            cache_file_name=str(tmp_cache / "map.arrow"), desc="tokenize real (cached)")
        _store(tokens, folder)
    return datasets.load_from_disk(str(folder)), folder, False


def count_and_cache(ctx: PhaseContext, real: Dataset, tokenizer: Tokenizer, encode: Encoder) -> Dataset:
    """The real split with its framed token counts (``n_tokens``), tokenized once: the ids ``encode``
    makes give the counts and become the cache entry :func:`real_tokens` looks up for the split
    with those counts (saved as it is returned, by :func:`collapsebench.data.save`, which records
    its fingerprint), so training does not tokenize the split again. (``encode`` must frame
    documents as the counts count them: BOS + tokens + EOS.)"""
    from collapsebench.models.tokens import COLUMN

    field = ctx.text_field
    if COLUMN in real.column_names:
        real = real.remove_columns([COLUMN])
    mapper = _mapper(tokenizer, encode, field)

    def ids_and_counts(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        ids = mapper(batch)["input_ids"]
        return {"input_ids": ids, COLUMN: [len(x) for x in ids]}

    both = real.map(ids_and_counts, batched=True, batch_size=1000, desc="tokenize and count",
                    cache_file_name=str(ctx.cache_dir / f"ids-and-counts-{real._fingerprint}.arrow"))
    counted = both.remove_columns(["input_ids"])
    folder = cache_root() / cache_key(counted._fingerprint, tokenizer, encode, field)
    if not (folder / "dataset_info.json").exists():
        _store(both.select_columns(["id", "input_ids"]), folder)
    return counted


@contextmanager
def _scratch(folder: Path) -> Iterator[Path]:
    """A temporary folder beside the cache entry ``folder`` for `datasets` map files, removed after."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp-map"
    tmp.mkdir(parents=True)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _store(tokens: Dataset, folder: Path) -> None:
    """Save ``tokens`` as the cache entry ``folder``: written beside it and renamed into place, so
    concurrent runs never see half an entry (the first to commit wins)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tokens.save_to_disk(str(tmp))
        with suppress(OSError):  # another run committed the same entry first
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def generated_sources(ctx: PhaseContext, dataset: Dataset) -> dict[int, Dataset]:
    """The committed samples S(g), with their generated token ids, of every generation g > 0 that
    rows of ``dataset`` come from."""
    from collapsebench.data import count_by

    if not {"id", "generation"} <= set(dataset.column_names):
        return {}
    sources = {}
    for g in sorted(int(k) for k in count_by(dataset, "generation") if int(k) > 0):
        try:
            samples = ctx.samples(g)
        except UserError:  # not generated in this run (a plug-in used on its own)
            continue
        if "input_ids" in samples.column_names and "id" in samples.column_names:
            sources[g] = samples
    return sources


def _generated_or_encoded(tokenizer: Tokenizer, encode: Encoder, field: str,
                          sources: dict[int, Dataset]) -> Callable[[dict[str, list[Any]]], dict[str, list[Any]]]:
    """A batch mapper: the framed generated ids of a synthetic row whose text is still the text its
    ids decode to (looked up by id in S(generation)), else the encoded text."""
    import pyarrow as pa

    from collapsebench.data import positions_in

    id_sets = {g: s.data.column("id") for g, s in sources.items()}

    def fn(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        texts = batch[field]
        out: list[list[int] | None] = [None] * len(texts)
        for g, samples in sources.items():
            rows = [i for i, gen in enumerate(batch["generation"]) if gen == g]
            if not rows:
                continue
            position = positions_in(pa.array([batch["id"][i] for i in rows], pa.string()), id_sets[g])
            found = [(i, int(p)) for i, p in zip(rows, position) if p >= 0]
            if not found:
                continue
            stored = samples.select([p for _, p in found]).select_columns([field, "input_ids"])[:]
            for (i, _), text, ids in zip(found, stored[field], stored["input_ids"]):
                if text == texts[i]:  # not rewritten since (e.g. by a curate.preprocess step)
                    out[i] = frame_ids(tokenizer, ids)
        generated = [x is not None for x in out]
        todo = [i for i, x in enumerate(out) if x is None]
        for i, ids in zip(todo, encode(tokenizer, [texts[i] for i in todo]) if todo else []):
            out[i] = ids
        return {"input_ids": out, "generated": generated}

    return fn


def _tokenize_rest(ctx: PhaseContext, rest: Dataset, tokenizer: Tokenizer, encode: Encoder) -> tuple[Dataset, int]:
    """``input_ids`` of rows that are not in the real cache: generated ids or encoded text."""
    field = ctx.text_field
    sources = generated_sources(ctx, rest)
    fresh_file = str(ctx.cache_dir / f"tokens-{rest._fingerprint}.arrow")  # an explicit cache file is reused as is
    if not sources:
        return rest.map(_mapper(tokenizer, encode, field), batched=True, batch_size=1000,
                        remove_columns=rest.column_names, cache_file_name=fresh_file, desc="tokenize"), 0
    out = rest.map(_generated_or_encoded(tokenizer, encode, field, sources), batched=True, batch_size=1000,
                   remove_columns=rest.column_names, cache_file_name=fresh_file, desc="tokenize")
    generated = int(np.asarray(out.data.column("generated")).sum())
    return out.remove_columns(["generated"]), generated


def tokenize_with_cache(ctx: PhaseContext, dataset: Dataset, tokenizer: Tokenizer,
                        encode: Encoder) -> tuple[Dataset, dict[str, Any]]:
    """``input_ids`` for every row of ``dataset`` (in its order): real rows from the cache,
    synthetic rows from the token ids their model generated (``input_ids`` of S(g), framed with
    :func:`collapsebench.models.loading.frame_ids` as ``encode`` frames text; a row whose text was
    rewritten after generation is encoded), the others encoded now. Without lineage (a plug-in used
    on its own) everything is encoded now."""
    import datasets

    from collapsebench.data import positions_in, string_column

    field = ctx.text_field
    real = None
    if "id" in dataset.column_names and "origin" in dataset.column_names:
        try:
            real = ctx.real()
        except UserError:  # no prepared real split: no cache
            real = None
    if real is None or field not in real.column_names:
        out, generated = _tokenize_rest(ctx, dataset, tokenizer, encode)
        return out, {"cached_rows": 0, "generated_rows": generated}
    cached, folder, hit = real_tokens(real, saved_fingerprint(ctx.real_dir), tokenizer, encode, field=field)
    position = positions_in(string_column(dataset), cached.data.column("id"))
    found = position >= 0
    hits, misses = np.flatnonzero(found), np.flatnonzero(~found)
    parts, generated = [], 0
    if len(hits):
        parts.append(cached.select(position[hits]).select_columns(["input_ids"]))
    if len(misses):
        rest, generated = _tokenize_rest(ctx, dataset.select(misses), tokenizer, encode)
        parts.append(rest)
    combined = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    order = np.empty(len(dataset), dtype=np.int64)
    order[hits] = np.arange(len(hits))
    order[misses] = len(hits) + np.arange(len(misses))
    if not np.array_equal(order, np.arange(len(order))):
        combined = combined.select(order)
    return combined, {"cached_rows": int(len(hits)), "generated_rows": generated, "cache_hit": hit,
                      "cache": str(folder)}
