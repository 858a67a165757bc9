"""Real data from files and the hub: the ``local`` and ``hub`` data sources."""

from __future__ import annotations

import csv
import itertools
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from collapsebench.api import Dataset, PhaseContext
from collapsebench.config import Config, short
from collapsebench.errors import UserError

T = TypeVar("T")
BUILDERS = {".txt": "text", ".text": "text", ".jsonl": "json", ".json": "json", ".csv": "csv",
            ".parquet": "parquet", ".arrow": "arrow"}


SCAN_BYTES = 64 * 2**20  # plan reads a local file this far to count documents, then extrapolates


def count_documents(path: Path, sample_by: str) -> tuple[int, float]:
    """(documents, characters per document) of a text file, from up to :data:`SCAN_BYTES`."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(SCAN_BYTES).decode("utf-8", errors="replace")
    if sample_by == "document":
        return 1, float(size)
    parts = [p for p in (head.split("\n\n") if sample_by == "paragraph" else head.splitlines()) if p.strip()]
    scale = size / max(len(head.encode()), 1)
    n = max(1, round(len(parts) * scale))
    return n, sum(len(p) for p in parts) / max(len(parts), 1)


def plan_local(config: Config, kwargs: dict[str, Any], chars_per_token: float) -> tuple[int, float, str] | None:
    """The source's declared ``plan`` hook: the documents of a text file, counted, at
    ``chars_per_token`` characters a token, or of a JSON-lines file (a record a line, its characters
    keys included: an upper bound); None (unknown) for other formats."""
    path_arg = kwargs["path"]
    suffix = Path(path_arg).suffix if isinstance(path_arg, str) else None
    if suffix in (".txt", "", ".jsonl"):
        path = config.resolve_path(str(path_arg))
        if path.is_file():
            n, chars = count_documents(path, "line" if suffix == ".jsonl" else kwargs["sample_by"])
            return n, chars / chars_per_token, f"counted in {path.name}, {chars_per_token:g} characters a token"
    return None


def local_source(ctx: PhaseContext, path: str | list[str], sample_by: Literal["line", "paragraph", "document"] = "paragraph",
                 split: str = "train") -> Dataset:
    """A local file (txt, jsonl/json, csv, parquet), a list of them, or a ``save_to_disk`` folder.

    ``sample_by`` (txt only): one document per ``line``, per blank-line separated ``paragraph``,
    or per whole ``document`` (file). A text source that yields a few huge rows is reported: the
    usual cause is ``paragraph`` on a file whose blank lines hold spaces."""
    import datasets

    paths = checked_paths(ctx.config, path)
    if len(paths) == 1 and paths[0].is_dir():
        loaded = datasets.load_from_disk(str(paths[0]))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise UserError(f"data.source.split: '{split}' not in {paths[0]} (splits: {list(loaded)})")
            loaded = loaded[split]
        return loaded
    if all(p.stat().st_size == 0 for p in paths):
        raise UserError(f"data.source.path: {', '.join(map(str, paths))}: the dataset is empty")
    builder = BUILDERS[paths[0].suffix.lower()]
    kwargs: dict[str, Any] = {"sample_by": sample_by} if builder == "text" else {}
    try:
        ds = datasets.load_dataset(builder, data_files=[str(p) for p in paths], split="train",
                                   cache_dir=str(ctx.cache_dir), **kwargs)
    except (ValueError, TypeError, StopIteration, datasets.exceptions.DatasetGenerationError) as exc:
        cause = exc.__cause__ or exc
        raise UserError(f"data.source.path: cannot parse {', '.join(map(str, paths))}: {short(str(cause), 300)}") from None
    if builder == "text":
        warn_if_lumpy(ctx, ds, sample_by, sum(p.stat().st_size for p in paths))
    return ds


LUMPY_ROW_CHARS = 100_000


def warn_if_lumpy(ctx: PhaseContext, ds: Dataset, sample_by: str, size: int) -> None:
    """Say so when a text file became a few huge documents."""
    longest = max((len(t) for b in ds.select_columns(["text"]).iter(batch_size=10_000) for t in b["text"]), default=0)
    if longest > LUMPY_ROW_CHARS:
        message = (f"data.source: {len(ds)} documents from {size} bytes with sample_by: {sample_by}; the longest has "
                   f"{longest} characters. If documents should be lines, set data.source.sample_by: line "
                   "(blank lines that hold spaces do not separate paragraphs)")
        ctx.log.warning(message)


def hub_source(ctx: PhaseContext, path: str, config_name: str | None = None, split: str = "train",
               revision: str | None = None, max_documents: int | None = None) -> Dataset:
    """A dataset from the Hugging Face hub by name (needs network access), or a local dataset folder.

    With ``max_documents`` (default: ``data.max_documents``) the dataset is streamed
    (``streaming=True``: read row by row, nothing written to disk) and a uniform sample of that many
    documents is kept by reservoir sampling (:func:`reservoir`): every row is read once, only the
    sample is held, in the stream's order. A corpus of billions of documents is sampled without
    being downloaded to disk (the self-training study samples its prompts from OLMo-Mix-1124).
    Without a cap the whole split is downloaded, as ``load_dataset`` does."""
    import datasets

    cap = max_documents if max_documents is not None else ctx.config.data.max_documents
    if cap is not None and cap < 1:
        raise UserError(f"data.source.max_documents must be at least 1, got {cap}")
    if cap is None:
        return datasets.load_dataset(path, config_name, split=split, revision=revision, cache_dir=str(ctx.cache_dir))
    stream = datasets.load_dataset(path, config_name, split=split, revision=revision, cache_dir=str(ctx.cache_dir),
                                   streaming=True)
    rows = reservoir(iter(stream), cap, np.random.default_rng([ctx.seed, 0x5EED]))
    if not rows:
        raise UserError(f"data.source ({path}): the stream of split '{split}' is empty")
    return datasets.Dataset.from_list(rows, features=stream.features)


def reservoir(stream: Iterator[T], k: int, rng: np.random.Generator) -> list[T]:
    """A uniform sample without replacement of ``k`` items of a stream of unknown length (all of them
    when there are fewer), in stream order: reservoir sampling, Algorithm L (Li, "Reservoir-sampling
    algorithms of time complexity O(n(1 + log(N/n)))", ACM TOMS 1994). Memory: ``k`` items; time:
    one pass, with O(k log(N/k)) random draws (the items between two replacements are skipped)."""
    held: list[tuple[int, T]] = list(itertools.islice(enumerate(stream), k))
    if len(held) < k:
        return [item for _, item in held]
    w = math.exp(math.log(1.0 - rng.random()) / k)  # 1 - U: in (0, 1], so the log is finite
    position = k - 1
    while True:
        skip = math.floor(math.log(1.0 - rng.random()) / math.log1p(-w)) if w < 1 else 0
        nxt = next(itertools.islice(stream, skip, None), _END)
        if nxt is _END:
            break
        position += skip + 1
        held[int(rng.integers(k))] = (position, nxt)  # type: ignore[assignment]
        w *= math.exp(math.log(1.0 - rng.random()) / k)
    return [item for _, item in sorted(held, key=lambda pair: pair[0])]


_END = object()


# ------------------------------------------------------------------------------------ preflight (validate, run)

def hub_cached(name: str, repo_type: str = "model") -> bool:
    """Whether a hub repository is in the local cache (nothing is downloaded)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        snapshot_download(name, repo_type=repo_type, local_files_only=True)
    except LocalEntryNotFoundError:
        return False
    except HFValidationError:
        raise UserError(f"'{name}' is neither a local path nor a hub name") from None
    return True


# a hub repository id: "name" or "owner/name" (letters, digits, - _ .); anything else is a local path
HUB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?")


def local_or_hub(config: Config, name: str, key: str, repo_type: str = "model") -> list[str]:
    """[] when ``name`` is a local path or a cached hub repository; [name] when it needs a download.

    A name is local when it exists, when a ``prepare`` step makes it, or when it is not shaped like
    a hub id (``name`` or ``owner/name``: ``./x``, ``a/b/c``, ``x.jsonl``) or its parent folder
    exists beside the config: such a missing path is an error naming it, never a guessed download."""
    local = config.resolve_path(name)
    if local.exists() or config.prepared(name):
        return []
    looks_local = "/" in name and local.parent.is_dir()
    if not HUB_NAME.fullmatch(name) or looks_local or local.suffix.lower() in BUILDERS:
        raise UserError(f"{key}: not found: {local}")
    return [] if hub_cached(name, repo_type) else [name]


def columns_of(path: Path) -> list[str] | None:
    """The columns a local file will have, read from its head (None: not knowable cheaply)."""
    import json

    suffix = path.suffix.lower()
    if BUILDERS.get(suffix) == "text":
        return ["text"]
    try:
        if suffix in (".jsonl", ".json"):
            with open(path, encoding="utf-8") as fh:
                first = next((line for line in fh if line.strip()), "")
            row = json.loads(first) if first else {}
            return list(row) if isinstance(row, dict) else None
        if suffix == ".csv":
            with open(path, encoding="utf-8") as fh:
                return next(csv.reader(fh), [])
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
    except (UnicodeDecodeError, json.JSONDecodeError, OSError, ValueError) as exc:
        raise UserError(f"data.source.path: cannot read {path}: {exc}") from None
    return None


def checked_paths(config: Config, raw: str | list[str]) -> list[Path]:
    """The source's files: they exist, are readable, and are one kind the loaders know (or one
    ``save_to_disk`` folder)."""
    paths = [config.resolve_path(p) for p in ([raw] if isinstance(raw, str) else raw)]
    if not paths:
        raise UserError("data.source.path: no file given")
    for p in paths:
        if not p.exists():
            raise UserError(f"data.source.path: file not found: {p}")
        if not os.access(p, os.R_OK):
            raise UserError(f"data.source.path: cannot read {p} (permission denied)")
    if len(paths) == 1 and paths[0].is_dir():
        if not (paths[0] / "dataset_info.json").exists() and not (paths[0] / "dataset_dict.json").exists():
            raise UserError(f"data.source.path: {paths[0]} is not a dataset saved with save_to_disk")
        return paths
    suffixes = {p.suffix.lower() for p in paths}
    if len(suffixes) != 1 or next(iter(suffixes)) not in BUILDERS or any(p.is_dir() for p in paths):
        raise UserError(f"data.source.path: cannot read {[str(p) for p in paths]}: "
                        f"expected one kind of file among {', '.join(sorted(BUILDERS))}")
    return paths


def preflight_local(config: Config, kwargs: dict[str, Any]) -> list[str]:
    """The files exist, are of one readable kind, and hold the configured text column; files a
    ``prepare`` step makes are checked once it has made them (it runs after validation)."""
    raw = kwargs["path"]
    if all(config.prepared(p) and not config.resolve_path(p).exists() for p in ([raw] if isinstance(raw, str) else raw)):
        return []
    paths = checked_paths(config, raw)
    if paths[0].is_dir():
        return []
    field = config.data.text_field
    for p in paths:
        columns = columns_of(p)
        if columns is not None and field not in columns and config.data.preprocess == []:
            raise UserError(f"data.source.path: {p} has no column '{field}' (data.text_field); "
                            f"columns: {', '.join(columns) or 'none'}")
    return []


def preflight_hub(config: Config, kwargs: dict[str, Any]) -> list[str]:
    return local_or_hub(config, kwargs["path"], "data.source.path", "dataset")
