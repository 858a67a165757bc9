"""Datasets as every phase handles them: lineage columns, checks, batched column access, mixing.

Lineage: ``id`` (stable string), ``origin`` ("real" | "synthetic"), ``generation`` (0 for real data,
k for samples of iteration k's model), ``parent`` (prompt / source document id, or "").

Two kinds of dataset pass through these helpers: `datasets` tables (text, and whatever a run loads
from disk) and :class:`ArrowRows`, the in-memory rows of the vector worlds, which never import
`datasets` (see :class:`ArrowRows` for why). Both read as Arrow (``ds.with_format("arrow")``), and
both save to the same ``save_to_disk`` folder layout.

(Over 300 lines: the two kinds of dataset share the lineage columns, the saved-folder layout and
the batched readers, which must agree bit for bit.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from collapsebench import arrow_numpy
from collapsebench.errors import UserError

if TYPE_CHECKING:
    import datasets
    import pyarrow as pa

LINEAGE = ("id", "origin", "generation", "parent")
BATCH_BYTES = 16 * 2**20  # rows read and written at a time, about (and at most BATCH_ROWS)
BATCH_ROWS = 2**20
SHARD_BYTES = 500 * 2**20  # an Arrow file of a saved dataset holds about this much at most (as `datasets` cuts them)


class ArrowRows:
    """Rows held as one in-memory pyarrow Table, with the part of the `datasets.Dataset` interface
    that the phases, the built-in regimes and the vector worlds use: ``len``, ``column_names``,
    ``features``, ``select``, ``select_columns``, ``cast``, ``shuffle`` and Arrow reads
    (``with_format("arrow")``, then ``[:]`` or ``iter(batch_size)``).

    Why a second kind: a vector world's data are a few thousand short rows, and `datasets` costs
    about a second to import and milliseconds per open or save, which made a 100-iteration Gaussian
    run take 10-30 s for milliseconds of numbers. The vector sources and generators make their rows
    as ``ArrowRows``, the batched driver (:mod:`collapsebench.batch`) keeps them in memory, and
    :func:`save` writes them as ``save_to_disk`` folders that `datasets` loads like its own."""

    def __init__(self, table: pa.Table):
        self.table = table
        self._columns = list(table.column_names)
        self._aligned: dict[tuple[tuple[str, ...], str], ArrowRows] = {}

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def __repr__(self) -> str:
        return f"ArrowRows(num_rows={len(self)}, columns={self.column_names})"

    @property
    def column_names(self) -> list[str]:
        return list(self._columns)

    @property
    def features(self) -> pa.Schema:
        """The column types (what :func:`align` compares and casts to)."""
        return self.table.schema.remove_metadata()

    def select(self, indices: Sequence[int] | np.ndarray) -> ArrowRows:
        """Rows by position, in the order given (a contiguous range is a zero-copy slice)."""
        if isinstance(indices, range) and indices.step == 1:
            return ArrowRows(self.table.slice(indices.start, len(indices)))
        return ArrowRows(self.table.take(arrow_numpy.array(np.asarray(indices, dtype=np.int64))))

    def select_columns(self, columns: Iterable[str]) -> ArrowRows:
        return ArrowRows(self.table.select(list(columns)))

    def cast(self, features: pa.Schema) -> ArrowRows:
        return ArrowRows(self.table.cast(features))

    def aligned(self, key: tuple[tuple[str, ...], str], schema: pa.Schema) -> ArrowRows:
        """The columns ``key[0]`` of these rows, cast to ``schema`` (whose text is ``key[1]``) where
        their types differ; made once per key (see :func:`_aligned_rows`)."""
        if key not in self._aligned:
            table = self.table.select(list(key[0]))
            self._aligned[key] = ArrowRows(table if table.schema.equals(schema) else table.cast(schema))
        return self._aligned[key]

    def shuffle(self, seed: int) -> ArrowRows:
        """The rows in the order ``datasets.Dataset.shuffle(seed=seed)`` gives (NumPy's default
        generator's permutation), so a vector run's split is the one `datasets` would make."""
        return self.select(np.random.default_rng(seed).permutation(len(self)))

    def with_format(self, type: str | None) -> ArrowRows:  # noqa: A002 - the name `datasets` uses
        if type != "arrow":
            raise ValueError(f"ArrowRows are read as Arrow only (with_format('arrow')), not {type!r}")
        return self

    def __getitem__(self, key: slice) -> pa.Table:
        if not isinstance(key, slice):
            raise TypeError("ArrowRows are read as Arrow tables: rows[a:b], or iter(batch_size)")
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise ValueError("ArrowRows take contiguous slices only")
        return self.table.slice(start, max(stop - start, 0))

    def iter(self, batch_size: int) -> Iterator[pa.Table]:
        for start in range(0, len(self), batch_size):
            yield self.table.slice(start, batch_size)

    def to_hf(self) -> datasets.Dataset:
        """The same rows as a `datasets` table (imports `datasets`)."""
        import datasets

        return datasets.Dataset(self.table.replace_schema_metadata(None))


AnyDataset: TypeAlias = "datasets.Dataset | ArrowRows"


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


def add_lineage(ds: AnyDataset, *, origin: str, generation: int, prefix: str,
                parent: str | None = None) -> AnyDataset:
    """Add the lineage columns (keeping existing ``parent`` values when present); ``id`` is the
    prefix and the row's position."""
    keep_parent = parent is None and "parent" in ds.column_names
    drop = [c for c in LINEAGE if c in ds.column_names and not (c == "parent" and keep_parent)]
    if isinstance(ds, ArrowRows):
        n = len(ds)
        table = ds.table.drop_columns(drop)
        ids = np.char.add(prefix, np.char.zfill(np.arange(n).astype(str), 8)) if n else np.zeros(0, dtype=str)
        table = table.append_column("id", arrow_numpy.strings(ids.tolist()))
        table = table.append_column("origin", arrow_numpy.repeated(origin, n))
        table = table.append_column("generation", arrow_numpy.array(np.full(n, generation, dtype=np.int64)))
        if not keep_parent:
            table = table.append_column("parent", arrow_numpy.repeated(parent or "", n))
        return ArrowRows(table)
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


def count_by(ds: AnyDataset, column: str) -> dict[str, int]:
    """Counts of each value of an integer or string column, streamed in batches."""
    counts: dict[str, int] = {}
    for batch in arrow_batches(ds, [column]):
        values, n = np.unique(arrow_numpy.to_numpy(batch.column(column)), return_counts=True)
        for v, c in zip(values.tolist(), n.tolist()):
            counts[str(v)] = counts.get(str(v), 0) + c
    return counts


def arrow_table(ds: AnyDataset, columns: list[str] | None = None) -> pa.Table:
    """``columns`` (default: all) of every row as one pyarrow Table (a selection of rows is honoured)."""
    if columns is not None:
        ds = ds.select_columns(columns)
    table: pa.Table = ds.with_format("arrow")[:]
    return table


def string_column(ds: AnyDataset, column: str = "id") -> Any:
    """One string column as a pyarrow ChunkedArray, read in batches (no Python objects per row)."""
    import pyarrow as pa

    return pa.chunked_array([b.column(column) for b in arrow_batches(ds, [column])], type=pa.string())


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


def save(ds: AnyDataset, path: Path) -> None:
    """The dataset as a ``save_to_disk`` folder (Arrow stream shards of at most about
    ``SHARD_BYTES``, ``state.json``, ``dataset_info.json``) that `datasets` loads as its own, also
    when it is empty (``save_to_disk`` would leave no shard to load).

    Written by pyarrow from :func:`arrow_batches`: ``save_to_disk`` writes 1000 rows at a time and
    gathers a selection of rows one row at a time, which made curating 10 million documents take
    minutes. Features that embed files (images, audio) still go through ``save_to_disk``."""
    path = Path(path)
    if isinstance(ds, ArrowRows):
        from collapsebench.io import digest

        table = ds.table.replace_schema_metadata(None)  # features left to `datasets`: it reads them from the schema
        state: dict[str, Any] = {"_fingerprint": digest([str(path), len(ds), str(table.schema)]), "_format_columns": None,
                 "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False, "_split": None}
        info: dict[str, Any] = {"citation": "", "description": "", "homepage": "", "license": ""}
        _write_saved(path, table.schema, arrow_batches(ds), state, info)
        return
    from datasets.features.features import require_storage_embed
    from datasets.utils.py_utils import asdict  # what save_to_disk writes as dataset_info.json

    if require_storage_embed(ds.features):
        ds.save_to_disk(str(path))
        return
    fmt = ds.format
    state = {"_fingerprint": ds._fingerprint, "_format_columns": fmt["columns"], "_format_kwargs": fmt["format_kwargs"],
             "_format_type": fmt["type"], "_output_all_columns": fmt["output_all_columns"],
             "_split": str(ds.split) if ds.split is not None else None}
    info = asdict(ds.info)
    _write_saved(path, ds.features.arrow_schema, arrow_batches(ds), state, {k: info[k] for k in sorted(info)})


def _write_saved(path: Path, schema: pa.Schema, batches: Iterable[pa.Table], state: dict[str, Any],
                 info: dict[str, Any]) -> None:
    """Write ``batches`` into numbered shards, then the two JSON files of the layout."""
    import pyarrow as pa

    path.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    sink: Any = None
    writer: Any = None
    try:
        for batch in batches:
            if writer is None or sink.tell() >= SHARD_BYTES:
                if writer is not None:
                    writer.close()
                    sink.close()
                written.append(path / f".shard-{len(written):05d}.arrow")
                sink = pa.OSFile(str(written[-1]), "wb")
                writer = pa.ipc.new_stream(sink, schema)
            writer.write_table(batch)
        if writer is None:  # no rows: one shard with the schema, so that the folder loads
            written.append(path / ".shard-00000.arrow")
            sink = pa.OSFile(str(written[-1]), "wb")
            writer = pa.ipc.new_stream(sink, schema)
    finally:
        if writer is not None:
            writer.close()
            sink.close()
    files = []
    for i, shard in enumerate(written):
        files.append({"filename": f"data-{i:05d}-of-{len(written):05d}.arrow"})
        shard.rename(path / files[-1]["filename"])
    (path / "state.json").write_text(json.dumps({**state, "_data_files": files}, indent=2, sort_keys=True))
    (path / "dataset_info.json").write_text(json.dumps(info, indent=2))


def read_saved(path: Path) -> ArrowRows:
    """A ``save_to_disk`` folder (written by :func:`save` or by `datasets`) read with pyarrow alone,
    memory-mapped."""
    import pyarrow as pa

    path = Path(path)
    state = json.loads((path / "state.json").read_text())
    tables = []
    for item in state["_data_files"]:
        with pa.memory_map(str(path / item["filename"])) as source, pa.ipc.open_stream(source) as reader:
            tables.append(reader.read_all())  # the table keeps the mapping; the file is closed
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return ArrowRows(table.replace_schema_metadata(None))


# ------------------------------------------------------------------------------------ reading in batches

def arrow_batches(ds: AnyDataset, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """Every row of ``ds`` (``columns`` of it), in order, as pyarrow Tables of about
    ``BATCH_BYTES`` (``BATCH_ROWS`` at most), memory-mapped rows read where they lie.

    A selection of rows (a `datasets` indices mapping: what ``select`` and ``shuffle`` make) is
    gathered chunk by chunk with Arrow's ``take``: `datasets` gathers it one row at a time, and
    ``take`` on a whole multi-file table first concatenates its chunks into memory."""
    if columns is not None:
        ds = ds.select_columns(columns)
    if isinstance(ds, ArrowRows):
        table, indices = ds.table.combine_chunks(), None  # a concatenation of k small parts: one batch, not k
    else:
        table = ds.data.table
        mapping = getattr(ds, "_indices", None)  # `datasets` keeps a selection of rows there
        indices = mapping.column(0) if mapping is not None else None
    rows = min(BATCH_ROWS, max(1, BATCH_BYTES * max(table.num_rows, 1) // max(table.nbytes, 1)))
    if indices is None:
        for start in range(0, table.num_rows, rows):
            yield table.slice(start, rows)
        return
    chunks = table.to_batches()
    ends = np.cumsum([c.num_rows for c in chunks])
    for start in range(0, len(indices), rows):
        yield _take(table.schema, chunks, ends, indices.slice(start, rows).to_numpy().astype(np.int64))


def _take(schema: pa.Schema, chunks: list[pa.RecordBatch], ends: np.ndarray, positions: np.ndarray) -> pa.Table:
    """The rows at ``positions`` (of the concatenated ``chunks``, which end at ``ends``), in the
    order given, each chunk's rows taken from that chunk alone."""
    import pyarrow as pa

    order = None if bool(np.all(positions[1:] >= positions[:-1])) else np.argsort(positions, kind="stable")
    wanted = positions if order is None else positions[order]
    first, last = np.searchsorted(ends, [wanted[0], wanted[-1]], side="right")
    cuts = np.searchsorted(wanted, ends[first:last + 1])
    parts, lo = [], 0
    for j, cut in zip(range(first, last + 1), cuts):
        if cut > lo:
            offset = int(ends[j - 1]) if j else 0
            parts.append(chunks[j].take(pa.array(wanted[lo:cut] - offset)))
        lo = int(cut)
    table = pa.Table.from_batches(parts, schema=schema)
    return table if order is None else table.take(pa.array(np.argsort(order)))


def align(parts: list[AnyDataset]) -> list[AnyDataset]:
    """Keep the columns all parts share (in the first part's order) and cast to its features."""
    if all(isinstance(p, ArrowRows) for p in parts):
        return list(_aligned_rows(parts))
    common = [c for c in parts[0].column_names if all(c in p.column_names for p in parts[1:])]
    first = parts[0].select_columns(common)
    out = [first]
    for p in parts[1:]:
        p = p.select_columns(common)
        if p.features != first.features:
            p = p.cast(first.features)
        out.append(p)
    return out


def _aligned_rows(parts: list[ArrowRows]) -> list[ArrowRows]:
    """:func:`align` of in-memory rows, each part's aligned table kept with the part: accumulate
    aligns S(1) .. S(k-1) again at every iteration k, and pyarrow's calls, about 9 us a part, made
    the curate step of a 100-iteration run's last iterations a millisecond longer than its first."""
    common = [c for c in parts[0].column_names if all(c in p._columns for p in parts[1:])]
    schema = parts[0].table.select(common).schema.remove_metadata()
    key = (tuple(common), schema.to_string())
    return [p.aligned(key, schema) for p in parts]


def concat(parts: list[AnyDataset]) -> AnyDataset:
    parts = align(parts)
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], ArrowRows):
        import pyarrow as pa

        return ArrowRows(pa.concat_tables([p.table for p in parts]))
    import datasets

    return datasets.concatenate_datasets(parts)
