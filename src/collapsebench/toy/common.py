"""Shared pieces of the toy settings: vectors in a column ``x``, model folders, sample writing.

Every toy model folder holds ``toy.json`` with at least ``{"kind": ...}``; :func:`sample` and
:func:`log_likelihood` dispatch on that kind to the module that knows the model.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from collapsebench import arrow_numpy
from collapsebench.api import PhaseContext
from collapsebench.data import AnyDataset, ArrowRows, arrow_table, save
from collapsebench.errors import UserError

VECTOR_FIELD = "x"
META_FILE = "toy.json"

# kind -> module that defines ``sample(model_dir, n, seed)`` and ``log_likelihood(model_dir, x)``
KINDS = {
    "gaussian": "collapsebench.toy.gaussian",
    "gmm": "collapsebench.toy.mixture",
    "kde": "collapsebench.toy.mixture",
    "vae": "collapsebench.toy.vae",
}


# ------------------------------------------------------------------------------------ vectors


def as_matrix(dataset: AnyDataset, *, what: str = "dataset") -> np.ndarray:
    """The ``x`` column as a float64 matrix (rows x dim), read through Arrow without Python loops."""
    if VECTOR_FIELD not in dataset.column_names:
        raise UserError(f"{what}: toy settings need a column '{VECTOR_FIELD}' (list of floats); "
                        f"columns are {dataset.column_names}")
    return list_array_to_matrix(arrow_table(dataset, [VECTOR_FIELD]).column(VECTOR_FIELD), what=what)


def list_array_to_matrix(column: Any, *, what: str = "dataset") -> np.ndarray:
    """A pyarrow list array (or chunked array) of equal-length float lists as a matrix."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    if n == 0:
        return np.zeros((0, 0))
    lengths = pc.list_value_length(column)
    lengths = arrow_numpy.to_numpy(lengths.fill_null(-1) if lengths.null_count else lengths)
    if lengths.min() != lengths.max() or lengths.min() <= 0:
        bad = int(np.flatnonzero(lengths != lengths[0])[0]) if lengths.min() != lengths.max() else 0
        raise UserError(f"{what}: row {bad} of column '{VECTOR_FIELD}' has {lengths[bad]} values, "
                        f"row 0 has {lengths[0]}; all vectors must have the same positive length")
    values = arrow_numpy.to_numpy(column.flatten()).astype(np.float64, copy=False)
    return values.reshape(n, int(lengths[0]))


def vector_table(x: np.ndarray) -> Any:
    """A pyarrow list<double> array from a matrix (one list per row)."""
    import pyarrow as pa

    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    if x.ndim == 1:
        x = x[:, None]
    offsets = np.arange(0, x.size + 1, x.shape[1], dtype=np.int32)
    return pa.ListArray.from_arrays(arrow_numpy.array(offsets), arrow_numpy.array(x.ravel()))


def vector_dataset(x: np.ndarray) -> ArrowRows:
    """Rows with only the column ``x`` (what the toy data sources return)."""
    import pyarrow as pa

    return ArrowRows(pa.table({VECTOR_FIELD: vector_table(x)}))


def samples_dataset(x: np.ndarray, iteration: int) -> ArrowRows:
    """Synthetic rows of ``iteration`` with lineage columns: id ``g{k:03d}-{i:07d}``, origin, generation, parent."""
    import pyarrow as pa

    n = len(x)
    ids = np.char.add(f"g{iteration:03d}-", np.char.zfill(np.arange(n).astype(str), 7))
    table = pa.table({
        "id": arrow_numpy.strings(ids.tolist() if n else []),
        "origin": arrow_numpy.repeated("synthetic", n),
        "generation": arrow_numpy.array(np.full(n, iteration, dtype=np.int64)),
        "parent": arrow_numpy.repeated("", n),
        VECTOR_FIELD: vector_table(x.reshape(n, -1) if n else np.zeros((0, 1))),
    })
    return ArrowRows(table)


# ------------------------------------------------------------------------------------ phases


def save_samples(ctx: PhaseContext, x: np.ndarray) -> dict[str, float]:
    """Write ``x`` as the accepted samples of this iteration; return sample statistics."""
    save(samples_dataset(x, ctx.iteration), ctx.out_dir / "samples")
    return {"num_samples": float(len(x)), **moment_summary(x, prefix="sample")}


def generate_from_model(ctx: PhaseContext, kind: str) -> dict[str, float]:
    """The toy generators: draw ``num_samples`` rows from this iteration's ``kind`` model and save them."""
    model_dir = ctx.model_dir()
    found = read_meta(model_dir)["kind"]
    if found != kind:
        raise UserError(f"generate.generator '{kind}' cannot sample the '{found}' model in {model_dir}; "
                        f"use the generator that matches the trainer")
    return save_samples(ctx, sample(model_dir, ctx.num_samples(), ctx.seed))


def moment_summary(x: np.ndarray, *, prefix: str) -> dict[str, float]:
    """Mean and spread of a sample: 1-D mean/var, else mean norm, covariance trace and log-det."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return {}
    x = x.reshape(len(x), -1)
    mean = x.mean(axis=0)
    cov = np.atleast_2d(np.cov(x, rowvar=False, ddof=0))
    return cov_summary(mean, cov, prefix=prefix)


def cov_summary(mean: np.ndarray, cov: np.ndarray, *, prefix: str) -> dict[str, float]:
    """``{prefix}_mean``/``_var`` in 1-D; ``_mean_norm``, ``_cov_trace``, ``_cov_logdet`` (if PD) otherwise."""
    mean = np.atleast_1d(mean)
    cov = np.atleast_2d(cov)
    if len(mean) == 1:
        return {f"{prefix}_mean": float(mean[0]), f"{prefix}_var": float(cov[0, 0])}
    out = {f"{prefix}_mean_norm": float(np.linalg.norm(mean)), f"{prefix}_cov_trace": float(np.trace(cov))}
    sign, logdet = np.linalg.slogdet(cov)
    if sign > 0:
        out[f"{prefix}_cov_logdet"] = float(logdet)
    return out


# ------------------------------------------------------------------------------------ models


def write_meta(model_dir: Path, meta: dict[str, Any]) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / META_FILE).write_text(json.dumps(meta, indent=1))


def read_meta(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        raise UserError(f"{model_dir} holds no toy model ({META_FILE} missing): "
                        "train it with a toy trainer (gaussian_mle, gmm, kde, vae)")
    meta = json.loads(path.read_text())
    if meta.get("kind") not in KINDS:
        raise UserError(f"{path}: unknown toy model kind {meta.get('kind')!r}; known: {', '.join(KINDS)}")
    return meta


def _module(model_dir: Path) -> Any:
    return importlib.import_module(KINDS[read_meta(model_dir)["kind"]])


def sample(model_dir: Path, n: int, seed: int) -> np.ndarray:
    """Draw ``n`` vectors from the toy model in ``model_dir``."""
    return _module(model_dir).sample(Path(model_dir), n, seed)


def log_likelihood(model_dir: Path, x: np.ndarray) -> np.ndarray:
    """Per-row log-likelihood (nats) of ``x`` under the toy model (a lower bound, the ELBO, for the VAE)."""
    return _module(model_dir).log_likelihood(Path(model_dir), np.asarray(x, dtype=np.float64))


def plan_rows(config: Any, kwargs: dict[str, Any], chars_per_token: float) -> tuple[int, None, str]:
    """A vector source's declared ``plan`` hook: its ``n`` rows, no tokens."""
    return int(kwargs["n"]), None, "rows of vectors"
