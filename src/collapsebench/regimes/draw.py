"""Uniform draws of rows, in memory that does not grow with the dataset.

A regime draws ``amount`` rows uniformly without replacement, or, in tokens, the shortest uniformly
ordered set of rows whose token counts reach ``amount``. Both are one rule: give every row a random
key and keep the rows with the smallest keys until the amount is reached (the first rows of a
uniformly random order). NumPy's ``choice``/``permutation`` would hold a permutation of the whole
pool (320 MB for the 40 million rows of an accumulated pool of 10 million documents) and
`datasets`' ``select`` turns the picked positions into a Python list (another 400 MB); here the
keys are made window by window from the seed (the same keys however the rows are read), and the
rows are found in three passes over the windows:

1. a histogram of the keys, weighted by the rows' token counts (or 1 per row), locates the key
   interval in which the running amount is reached;
2. the rows of that interval alone are sorted to find the exact last key kept;
3. the positions of the rows with smaller keys are written, in order, to an Arrow file of row
   indices (``scratch``) that becomes the dataset's memory-mapped selection.

Token weights are the tokens a budget counts: a sample's ``n_tokens`` less the prompt tokens it
kept (``n_prompt_tokens``, real tokens; see :mod:`collapsebench.models.tokens`), so a synthetic
budget is met with generated tokens.

The rows keep their order. Memory: a window of keys and weights, the histogram and the rows of one
interval (about ``rows / BINS``), whatever the size of the pool.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from collapsebench.data import AnyDataset, ArrowRows, arrow_batches
from collapsebench.errors import UserError
from collapsebench.models.tokens import COLUMN, PROMPT_COLUMN

WINDOW = 2**20  # rows whose keys are made at once (one stream of the seed per window)
BINS = 2**16  # key intervals of the histogram


def _keys(seed: Sequence[int], window: int, n: int) -> np.ndarray:
    """The keys of the rows of window ``window`` (uniform in [0, 1)), from the seed alone."""
    return np.random.default_rng([*seed, window]).random(n)


def _windows(ds: AnyDataset, column: str | None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(window number, row positions, weights) of each window of ``WINDOW`` rows, in order: the
    weights are the ``column`` values (int64, read in batches; for token counts less the kept
    prompts' tokens where the rows say so) or ones."""
    n = len(ds)
    if column is None:
        for w, start in enumerate(range(0, n, WINDOW)):
            yield w, np.arange(start, min(start + WINDOW, n)), np.ones(min(WINDOW, n - start), dtype=np.int64)
        return
    pending: list[np.ndarray] = []
    held = 0
    start = w = 0
    less = PROMPT_COLUMN if column == COLUMN and PROMPT_COLUMN in ds.column_names else None
    for batch in arrow_batches(ds, [column] + ([less] if less else [])):
        values = batch.column(column)
        if values.null_count:
            raise UserError(f"drawing rows by '{column}': the column has {values.null_count} empty values")
        weights = values.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        if less:
            weights = weights - batch.column(less).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        pending.append(weights)
        held += len(pending[-1])
        while held >= WINDOW or (held and start + held == n):
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            take = min(WINDOW, held)
            yield w, np.arange(start, start + take), joined[:take]
            pending, held, start, w = [joined[take:]], held - take, start + take, w + 1


def _histogram(ds: AnyDataset, seed: Sequence[int], column: str | None) -> np.ndarray:
    """The amount (rows, or the ``column`` weights) of the rows in each of ``BINS`` key intervals."""
    hist = np.zeros(BINS, dtype=np.float64)
    for w, rows, weights in _windows(ds, column):
        bins = (_keys(seed, w, len(rows)) * BINS).astype(np.int64)
        hist += np.bincount(bins, weights=weights, minlength=BINS)
    return hist


def _threshold(ds: AnyDataset, amount: int, seed: Sequence[int], column: str | None,
               hist: np.ndarray) -> tuple[float, int]:
    """(key, row) of the last row kept: the running amount in key order reaches ``amount`` there
    (``hist``: :func:`_histogram`)."""
    running = np.cumsum(hist)
    b = int(np.searchsorted(running, amount))  # the first interval where the running amount reaches it
    before = float(running[b - 1]) if b else 0.0
    keys, positions, weights_in = [], [], []
    for w, rows, weights in _windows(ds, column):
        k = _keys(seed, w, len(rows))
        inside = (k * BINS).astype(np.int64) == b
        keys.append(k[inside])
        positions.append(rows[inside])
        weights_in.append(weights[inside])
    key, pos, weight = np.concatenate(keys), np.concatenate(positions), np.concatenate(weights_in)
    order = np.lexsort((pos, key))
    last = int(np.searchsorted(before + np.cumsum(weight[order]), amount))
    return float(key[order[last]]), int(pos[order[last]])


def draw(ds: AnyDataset, amount: int, seed: Sequence[int], *, weights: str | None, scratch: Path | None,
         what: str) -> AnyDataset:
    """``amount`` rows of ``ds`` drawn uniformly (``weights`` None), or the shortest uniformly
    ordered set of rows whose ``weights`` column (token counts) reaches ``amount``; the rows keep
    their order, the draw depends on ``seed`` (a sequence of integers) alone. All rows when the
    amount is all there is. The selection of a `datasets` table is written to an Arrow file in
    ``scratch`` (kept in memory when None) and memory-mapped."""
    unit = "rows" if weights is None else "tokens"
    hist = None if weights is None else _histogram(ds, seed, weights)  # its sum is the total (exact below 2**53)
    total = len(ds) if hist is None else int(hist.sum())
    if amount > total:
        raise UserError(f"curate.regime: needs {amount} {unit} of {what} but only {total} exist")
    if amount == total:
        return ds
    if amount <= 0:
        return ds.select([])
    key, row = _threshold(ds, amount, seed, weights, _histogram(ds, seed, None) if hist is None else hist)

    def chosen() -> Iterator[np.ndarray]:
        for w, rows, _ in _windows(ds, None):  # keys only: the weights are not needed any more
            k = _keys(seed, w, len(rows))
            yield rows[(k < key) | ((k == key) & (rows <= row))]

    return _selection(ds, chosen(), scratch)


def _selection(ds: AnyDataset, chosen: Iterator[np.ndarray], scratch: Path | None) -> AnyDataset:
    """``ds`` restricted to the rows at the positions ``chosen`` (ascending, window by window)."""
    if isinstance(ds, ArrowRows) or scratch is None:
        return ds.select(np.concatenate(list(chosen)))
    import datasets
    import pyarrow as pa
    from datasets.table import MemoryMappedTable

    from collapsebench.io import digest

    mapping = ds._indices.column(0) if ds._indices is not None else None  # a selection of a selection
    path = Path(scratch) / f"draw-{uuid.uuid4().hex}.arrow"
    schema = pa.schema([("indices", pa.uint64())])
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for positions in chosen:
            if len(positions):
                values = pa.array(positions, type=pa.uint64())
                values = mapping.take(values) if mapping is not None else values
                writer.write_batch(pa.record_batch([values], schema=schema))
    fingerprint = digest([ds._fingerprint, path.name])
    out = datasets.Dataset(ds.data, info=ds.info.copy(), split=ds.split,
                           indices_table=MemoryMappedTable.from_file(str(path)), fingerprint=fingerprint)
    fmt = ds.format
    out.set_format(fmt["type"], fmt["columns"], fmt["output_all_columns"], **fmt["format_kwargs"])
    return out
