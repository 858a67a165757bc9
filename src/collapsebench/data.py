"""Datasets as every phase handles them: lineage columns, checks, batched column access, mixing.

Lineage: ``id`` (stable string), ``origin`` ("real" | "synthetic"), ``generation`` (0 for real data,
k for samples of iteration k's model), ``parent`` (prompt / source document id, or "").
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from collapsebench.errors import UserError

if TYPE_CHECKING:
    import datasets

LINEAGE = ("id", "origin", "generation", "parent")

def lineage_features() -> datasets.Features:
    import datasets

    return datasets.Features({"id": datasets.Value("string"), "origin": datasets.Value("string"),
                              "generation": datasets.Value("int64"), "parent": datasets.Value("string")})


def check_text(ds: datasets.Dataset, field: str, where: str) -> None:
    """Raise a UserError naming the first row whose text is missing or not a string."""
    if field not in ds.column_names:
        raise UserError(f"{where}: no column '{field}' (data.text_field); columns: {', '.join(ds.column_names)}")
    offset = 0
    for batch in ds.select_columns([field]).iter(batch_size=10_000):
        for i, value in enumerate(batch[field]):
            if not isinstance(value, str):
                raise UserError(f"{where}: row {offset + i}: '{field}' is {value!r}, not text")
        offset += len(batch[field])


def add_lineage(ds: datasets.Dataset, *, origin: str, generation: int, prefix: str,
                parent: str | None = None) -> datasets.Dataset:
    """Add the lineage columns (keeping existing ``parent`` values when present)."""
    keep_parent = parent is None and "parent" in ds.column_names
    drop = [c for c in LINEAGE if c in ds.column_names and not (c == "parent" and keep_parent)]
    ds = ds.remove_columns(drop)

    def fill(batch: dict[str, list], idx: list[int]) -> dict[str, list]:
        n = len(idx)
        out: dict[str, list[Any]] = {"id": [f"{prefix}{i:08d}" for i in idx], "origin": [origin] * n,
                                     "generation": [generation] * n}
        if not keep_parent:
            out["parent"] = [parent or ""] * n
        return out

    return ds.map(fill, with_indices=True, batched=True, batch_size=10_000, desc=None)


def drop_blank(ds: datasets.Dataset, field: str) -> datasets.Dataset:
    return ds.filter(lambda b: [bool(t.strip()) for t in b[field]], batched=True, batch_size=10_000)


def count_by(ds: datasets.Dataset, column: str) -> dict[str, int]:
    """Counts of each value of an integer or string column, streamed in batches."""
    counts: dict[str, int] = {}
    for batch in ds.select_columns([column]).iter(batch_size=50_000):
        values, n = np.unique(np.asarray(batch[column]), return_counts=True)
        for v, c in zip(values.tolist(), n.tolist()):
            counts[str(v)] = counts.get(str(v), 0) + c
    return counts


def string_column(ds: datasets.Dataset, column: str = "id") -> Any:
    """One string column as a pyarrow ChunkedArray, read in batches (no Python objects per row)."""
    import pyarrow as pa

    batches = [b.column(column) for b in ds.select_columns([column]).with_format("arrow").iter(batch_size=100_000)]
    return pa.chunked_array(batches, type=pa.string())


def numeric_column(ds: datasets.Dataset, column: str) -> np.ndarray:
    """One numeric column as a numpy array, read in batches through Arrow (a selection of rows is
    honoured; nulls read as 0)."""
    import pyarrow as pa

    parts = []
    for batch in ds.select_columns([column]).with_format("arrow").iter(batch_size=100_000):
        values = batch.column(column)
        if values.null_count:
            values = values.fill_null(pa.scalar(0).cast(values.type))
        parts.append(values.to_numpy(zero_copy_only=False))
    return np.concatenate(parts) if parts else np.zeros(0)


def text_hashes(ds: datasets.Dataset, column: str) -> np.ndarray:
    """A fingerprint of each row's text (8 bytes of blake2b), streamed in batches: texts compared
    without holding them in memory."""
    out = np.empty(len(ds), dtype=np.uint64)
    offset = 0
    for batch in ds.select_columns([column]).iter(batch_size=10_000):
        for i, text in enumerate(batch[column]):
            out[offset + i] = int.from_bytes(hashlib.blake2b(str(text).encode(), digest_size=8).digest(), "little")
        offset += len(batch[column])
    return out


def positions_in(values: Any, value_set: Any) -> np.ndarray:
    """For each value, its position in ``value_set`` (pyarrow arrays), or -1 where it is absent."""
    import pyarrow.compute as pc

    position = pc.index_in(values, value_set=value_set).to_numpy(zero_copy_only=False)
    return np.where(np.isnan(position.astype(float)), -1, position).astype(np.int64)


def save(ds: datasets.Dataset, path: Path) -> None:
    """``save_to_disk``, also for an empty dataset (which `datasets` would save as a folder it
    cannot load again: no Arrow shard), so every committed dataset can be opened."""
    if len(ds) == 0:
        import datasets

        ds = datasets.Dataset.from_dict({c: [] for c in ds.column_names}, features=ds.features)
        ds.save_to_disk(str(path), num_shards=1)
        return
    ds.save_to_disk(str(path))


def align(parts: list[datasets.Dataset]) -> list[datasets.Dataset]:
    """Keep the columns all parts share (in the first part's order) and cast to its features."""
    common = [c for c in parts[0].column_names if all(c in p.column_names for p in parts[1:])]
    first = parts[0].select_columns(common)
    out = [first]
    for p in parts[1:]:
        p = p.select_columns(common)
        if p.features != first.features:
            p = p.cast(first.features)
        out.append(p)
    return out


def concat(parts: list[datasets.Dataset]) -> datasets.Dataset:
    import datasets

    parts = align(parts)
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def sample_rows(ds: datasets.Dataset, n: int, rng: np.random.Generator, *, what: str) -> datasets.Dataset:
    """``n`` rows drawn uniformly without replacement (order kept)."""
    if n > len(ds):
        raise UserError(f"curate.regime: needs {n} rows of {what} but only {len(ds)} exist")
    if n == len(ds):
        return ds
    return ds.select(np.sort(rng.choice(len(ds), size=n, replace=False)))
