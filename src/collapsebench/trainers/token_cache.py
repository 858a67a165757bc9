"""A shared, content-addressed cache of the tokenized real data.

The real training split is tokenized once per (dataset content, tokenizer, tokenization code) and
reused by every iteration and every run that shares all three. The key hashes the real split's
fingerprint (the `datasets` content fingerprint recorded when it was prepared), the tokenizer's
files (its full serialisation and special tokens) and the source code of the function that
encodes the documents and of the framing it applies (:func:`collapsebench.models.loading.frame_ids`),
so an edit of either cannot serve stale tokens. Entries are
``save_to_disk`` folders with ``id`` and ``input_ids`` under ``$COLLAPSEBENCH_CACHE`` (default
``~/.cache/collapsebench/tokens``; ``collapsebench status`` shows its size), written to a temporary
folder and renamed into place, so concurrent runs never see half an entry.

Block size is not part of the key: documents are cached, and blocks are packed per iteration
after the real rows are mixed with the synthetic ones (packing is cheap; tokenizing is not).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from collapsebench.api import Dataset, PhaseContext, Tokenizer
from collapsebench.errors import UserError
from collapsebench.models.loading import frame_ids

Encoder = Callable[[Any, list[str]], list[list[int]]]


def cache_root() -> Path:
    return Path(os.environ.get("COLLAPSEBENCH_CACHE") or Path.home() / ".cache" / "collapsebench" / "tokens").expanduser()


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


def cache_key(real: Dataset, tokenizer: Tokenizer, encode: Encoder, field: str) -> str:
    code = inspect.getsource(encode) + inspect.getsource(frame_ids)
    return hashlib.sha256(f"{real._fingerprint}|{tokenizer_hash(tokenizer)}|{field}|{code}".encode()).hexdigest()[:24]


def _mapper(tokenizer: Tokenizer, encode: Encoder, field: str) -> Callable[[dict[str, list[Any]]], dict[str, list[Any]]]:
    return lambda batch: {"input_ids": encode(tokenizer, batch[field])}


def real_tokens(real: Dataset, tokenizer: Tokenizer, encode: Encoder, *, field: str) -> tuple[Dataset, Path, bool]:
    """The cached ``(id, input_ids)`` table of the real split; (dataset, folder, was it a hit)."""
    import datasets

    folder = cache_root() / cache_key(real, tokenizer, encode, field)
    if (folder / "dataset_info.json").exists():
        return datasets.load_from_disk(str(folder)), folder, True
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp_cache = Path(str(tmp) + "-map")
    tmp_cache.mkdir(parents=True)
    try:
        tokens = real.select_columns(["id", field]).map(
            _mapper(tokenizer, encode, field), batched=True, batch_size=1000, remove_columns=[field],
            cache_file_name=str(tmp_cache / "map.arrow"), desc="tokenize real (cached)")
        tokens.save_to_disk(str(tmp))
        try:
            os.replace(tmp, folder)
        except OSError:  # another run committed the same entry first
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        shutil.rmtree(tmp_cache, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(folder)), folder, False


def tokenize_with_cache(ctx: PhaseContext, dataset: Dataset, tokenizer: Tokenizer,
                        encode: Encoder) -> tuple[Dataset, dict[str, Any]]:
    """``input_ids`` for every row of ``dataset`` (in its order): real rows from the cache, the
    others encoded now. Without lineage (a plug-in used on its own) everything is encoded now."""
    import datasets

    from collapsebench.data import positions_in, string_column

    field = ctx.text_field
    fresh_file = str(ctx.cache_dir / "tokens.arrow")
    real = None
    if "id" in dataset.column_names and "origin" in dataset.column_names:
        try:
            real = ctx.real()
        except UserError:  # no prepared real split: no cache
            real = None
    if real is None or field not in real.column_names:
        out = dataset.map(_mapper(tokenizer, encode, field), batched=True, batch_size=1000,
                          remove_columns=dataset.column_names, cache_file_name=fresh_file, desc="tokenize")
        return out, {"cached_rows": 0}
    cached, folder, hit = real_tokens(real, tokenizer, encode, field=field)
    position = positions_in(string_column(dataset), cached.data.column("id"))
    found = position >= 0
    hits, misses = np.flatnonzero(found), np.flatnonzero(~found)
    parts = []
    if len(hits):
        parts.append(cached.select(position[hits]).select_columns(["input_ids"]))
    if len(misses):
        rest = dataset.select(misses)
        parts.append(rest.map(_mapper(tokenizer, encode, field), batched=True, batch_size=1000,
                              remove_columns=rest.column_names, cache_file_name=fresh_file, desc="tokenize"))
    combined = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    order = np.empty(len(dataset), dtype=np.int64)
    order[hits] = np.arange(len(hits))
    order[misses] = len(hits) + np.arange(len(misses))
    if not np.array_equal(order, np.arange(len(order))):
        combined = combined.select(order)
    return combined, {"cached_rows": int(len(hits)), "cache_hit": hit, "cache": str(folder)}
