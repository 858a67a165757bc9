"""Real data sources and the lineage columns every row carries.

Lineage: ``id`` (stable string), ``origin`` ("real" | "synthetic"), ``generation`` (0 for real data,
k for samples of iteration k's model), ``parent`` (prompt / source document id, or "").
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from collapsebench.errors import UserError

if TYPE_CHECKING:
    import datasets

    from collapsebench.context import PhaseContext

LINEAGE = ("id", "origin", "generation", "parent")

_BUILDERS = {".txt": "text", ".text": "text", ".jsonl": "json", ".json": "json", ".csv": "csv",
             ".parquet": "parquet", ".arrow": "arrow"}


def lineage_features() -> "datasets.Features":
    import datasets

    return datasets.Features({"id": datasets.Value("string"), "origin": datasets.Value("string"),
                              "generation": datasets.Value("int64"), "parent": datasets.Value("string")})


def local_source(ctx: "PhaseContext", path: str | list[str], sample_by: str = "paragraph",
                 split: str = "train") -> "datasets.Dataset":
    """A local file (txt, jsonl/json, csv, parquet), a list of them, or a ``save_to_disk`` folder.

    ``sample_by`` (txt only): one document per ``line``, per blank-line separated ``paragraph``,
    or per whole ``document`` (file)."""
    import datasets

    paths = [ctx.config.resolve_path(p) for p in ([path] if isinstance(path, str) else path)]
    for p in paths:
        if not p.exists():
            raise UserError(f"data.source.path: file not found: {p}")
    if len(paths) == 1 and paths[0].is_dir():
        try:
            loaded = datasets.load_from_disk(str(paths[0]))
        except FileNotFoundError:
            raise UserError(f"data.source.path: {paths[0]} is not a dataset saved with save_to_disk") from None
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise UserError(f"data.source.split: '{split}' not in {paths[0]} (splits: {list(loaded)})")
            loaded = loaded[split]
        return loaded
    suffixes = {p.suffix.lower() for p in paths}
    if len(suffixes) != 1 or next(iter(suffixes)) not in _BUILDERS:
        raise UserError(f"data.source.path: cannot read {[str(p) for p in paths]}: "
                        f"expected one kind of file among {', '.join(sorted(_BUILDERS))}")
    if all(p.stat().st_size == 0 for p in paths):
        raise UserError(f"data.source.path: {', '.join(map(str, paths))}: the dataset is empty")
    builder = _BUILDERS[suffixes.pop()]
    kwargs: dict[str, Any] = {"sample_by": sample_by} if builder == "text" else {}
    try:
        return datasets.load_dataset(builder, data_files=[str(p) for p in paths], split="train",
                                     cache_dir=str(ctx.cache_dir), **kwargs)
    except (ValueError, TypeError, StopIteration, datasets.exceptions.DatasetGenerationError) as exc:
        cause = exc.__cause__ or exc
        raise UserError(f"data.source.path: cannot parse {', '.join(map(str, paths))}: {cause}") from None


def hub_source(ctx: "PhaseContext", path: str, config_name: str | None = None, split: str = "train",
               revision: str | None = None) -> "datasets.Dataset":
    """A dataset from the Hugging Face hub by name (needs network access)."""
    import datasets

    return datasets.load_dataset(path, config_name, split=split, revision=revision, cache_dir=str(ctx.cache_dir))


def check_text(ds: "datasets.Dataset", field: str, where: str) -> None:
    """Raise a UserError naming the first row whose text is missing or not a string."""
    if field not in ds.column_names:
        raise UserError(f"{where}: no column '{field}' (data.text_field); columns: {', '.join(ds.column_names)}")
    offset = 0
    for batch in ds.select_columns([field]).iter(batch_size=10_000):
        for i, value in enumerate(batch[field]):
            if not isinstance(value, str):
                raise UserError(f"{where}: row {offset + i}: '{field}' is {value!r}, not text")
        offset += len(batch[field])


def add_lineage(ds: "datasets.Dataset", *, origin: str, generation: int, prefix: str,
                parent: str | None = None) -> "datasets.Dataset":
    """Add the lineage columns (keeping existing ``parent`` values when present)."""
    keep_parent = parent is None and "parent" in ds.column_names
    drop = [c for c in LINEAGE if c in ds.column_names and not (c == "parent" and keep_parent)]
    ds = ds.remove_columns(drop)

    def fill(batch: dict[str, list], idx: list[int]) -> dict[str, list]:
        n = len(idx)
        out = {"id": [f"{prefix}{i:08d}" for i in idx], "origin": [origin] * n, "generation": [generation] * n}
        if not keep_parent:
            out["parent"] = [parent or ""] * n
        return out

    return ds.map(fill, with_indices=True, batched=True, batch_size=10_000, desc=None)


def drop_blank(ds: "datasets.Dataset", field: str) -> "datasets.Dataset":
    return ds.filter(lambda b: [bool(t.strip()) for t in b[field]], batched=True, batch_size=10_000)


def count_by(ds: "datasets.Dataset", column: str) -> dict[str, int]:
    """Counts of each value of an integer or string column, streamed in batches."""
    counts: dict[str, int] = {}
    for batch in ds.select_columns([column]).iter(batch_size=50_000):
        values, n = np.unique(np.asarray(batch[column]), return_counts=True)
        for v, c in zip(values.tolist(), n.tolist()):
            counts[str(v)] = counts.get(str(v), 0) + c
    return counts


def string_column(ds: "datasets.Dataset", column: str = "id") -> Any:
    """One string column as a pyarrow ChunkedArray, read in batches (no Python objects per row)."""
    import pyarrow as pa

    batches = [b.column(column) for b in ds.select_columns([column]).with_format("arrow").iter(batch_size=100_000)]
    return pa.chunked_array(batches, type=pa.string())


def positions_in(values: Any, value_set: Any) -> np.ndarray:
    """For each value, its position in ``value_set`` (pyarrow arrays), or -1 where it is absent."""
    import pyarrow.compute as pc

    position = pc.index_in(values, value_set=value_set).to_numpy(zero_copy_only=False)
    return np.where(np.isnan(position.astype(float)), -1, position).astype(np.int64)


def save(ds: "datasets.Dataset", path: Path) -> None:
    ds.save_to_disk(str(path))
