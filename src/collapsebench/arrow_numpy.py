"""Arrow arrays made from NumPy arrays and Python strings, and read back, through their buffers.

Why not ``pa.array`` and ``Array.to_numpy``: pyarrow imports pandas (0.17 s, as long as a toy run's
ten iterations) the first time it converts a Python or NumPy object either way (``pa.array``,
``pa.scalar``, ``to_numpy``, ``np.asarray(array)``, ``Table.take`` of a NumPy array), whether
pandas is used or not. A vector world's rows are numbers and a few string columns, which these
functions pass as the same buffers Arrow would build (no validity buffer, 32-bit string offsets),
so the arrays, and the files written from them, are the same. Anything else (nulls, booleans,
strings of over 2 GiB) goes through pyarrow's own conversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

_OFFSET_MAX = 2**31 - 1  # the largest offset of a ``pa.string()`` array


def array(values: np.ndarray) -> pa.Array:
    """A 1-D NumPy array of integers or floats as an Arrow array of the same type (``pa.array``'s)."""
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    if values.ndim != 1 or values.dtype.kind not in "iuf":
        return pa.array(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def strings(values: Sequence[str]) -> pa.Array:
    """Python strings as a ``pa.string()`` array (``pa.array(values, type=pa.string())``'s)."""
    import pyarrow as pa

    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    if offsets[-1] > _OFFSET_MAX:
        return pa.array(values, type=pa.string())
    return pa.Array.from_buffers(pa.string(), len(encoded),
                                 [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(encoded))])


def repeated(value: str, n: int) -> pa.Array:
    """``n`` copies of one string as a ``pa.string()`` array."""
    import pyarrow as pa

    data = value.encode()
    if len(data) * n > _OFFSET_MAX:
        return pa.array([value] * n, type=pa.string())
    offsets = np.arange(0, len(data) * (n + 1), len(data), dtype=np.int32) if data else np.zeros(n + 1, np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data * n)])


def to_numpy(values: Any) -> np.ndarray:
    """An Arrow array (or chunked array) of integers or floats without nulls as a read-only NumPy
    array over its buffer (``to_numpy()``'s); other arrays through ``to_numpy(zero_copy_only=False)``."""
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    kind = "i" if pa.types.is_signed_integer(values.type) else "u" if pa.types.is_unsigned_integer(values.type) \
        else "f" if pa.types.is_floating(values.type) else ""
    if not kind or values.null_count:
        out: np.ndarray = values.to_numpy(zero_copy_only=False)
        return out
    dtype = np.dtype(f"{kind}{values.type.bit_width // 8}")
    if len(values) == 0:
        return np.zeros(0, dtype=dtype)
    return np.frombuffer(values.buffers()[1], dtype=dtype, count=len(values), offset=values.offset * dtype.itemsize)
