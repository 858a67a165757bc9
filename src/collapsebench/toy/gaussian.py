"""The Gaussian toy setting: N(mean, cov) data, maximum-likelihood fit, sampling from the fit.

With ``ddof=0`` (the default) the fitted variance is the biased MLE ``1/n * sum (x - mean)^2``;
under recursive refitting on its own samples its expectation shrinks by ``(n-1)/n`` per round,
which is what drives the collapse of the Gaussian to a point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from collapsebench.api import Dataset, NonNegativeFloat, PhaseContext
from collapsebench.config import Config
from collapsebench.errors import UserError
from collapsebench.toy.common import as_matrix, cov_summary, generate_from_model, read_meta, vector_dataset, write_meta

# the data sources' domains: dimensions and sizes a CPU can hold, finite numbers
Dim = Annotated[int, Field(ge=1, le=10_000)]
Rows = Annotated[int, Field(ge=2, le=10**8)]
Vector = float | list[float]
Spread = NonNegativeFloat | list[NonNegativeFloat]
Matrix = list[list[float]]


def gaussian_params(dim: int, mean: Vector, std: Spread, cov: Matrix | None, *,
                    key: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean vector and covariance matrix from scalar-or-list ``mean``/``std`` or a full ``cov``."""
    if dim < 1:
        raise UserError(f"{key}.dim must be >= 1, got {dim}")
    m = np.atleast_1d(np.asarray(mean, dtype=np.float64))
    if m.ndim != 1 or len(m) not in (1, dim):
        raise UserError(f"{key}.mean must be one number or {dim} of them (dim is {dim}), got {mean!r}")
    mu = np.broadcast_to(m, (dim,)).copy()
    if cov is not None:
        sigma = np.atleast_2d(np.asarray(cov, dtype=np.float64))
        if sigma.shape != (dim, dim):
            raise UserError(f"{key}.cov must be a {dim}x{dim} matrix, got shape {sigma.shape}")
        if not np.allclose(sigma, sigma.T) or np.linalg.eigvalsh(sigma).min() < 0:
            raise UserError(f"{key}.cov must be symmetric positive semi-definite")
        return mu, sigma
    s = np.atleast_1d(np.asarray(std, dtype=np.float64))
    if len(s) not in (1, dim) or (s < 0).any():
        raise UserError(f"{key}.std must be one non-negative number or {dim} of them, got {std!r}")
    return mu, np.diag(np.broadcast_to(s, (dim,)) ** 2)


def gaussian_source(ctx: PhaseContext, *, n: Rows = 1000, dim: Dim = 1, mean: Vector = 0.0, std: Spread = 1.0,
                    cov: Matrix | None = None) -> Dataset:
    """``n`` real rows (train + holdout) drawn from N(mean, cov); ``std`` sets a diagonal covariance."""
    mu, sigma = gaussian_params(dim, mean, std, cov, key="data.source")
    rng = np.random.default_rng(ctx.seed)
    # Cholesky for a diagonal covariance with positive variances (what default configs recorded with);
    # SVD for a full or degenerate one (a zero standard deviation is a point mass on that axis)
    cholesky = cov is None and bool((np.diag(sigma) > 0).all())
    return vector_dataset(rng.multivariate_normal(mu, sigma, size=n, method="cholesky" if cholesky else "svd"))


def gaussian_mle(ctx: PhaseContext, dataset: Dataset, *, ddof: Literal[0, 1] = 0) -> dict[str, float]:
    """Fit mean and covariance by maximum likelihood (``ddof=0``) or unbiased (``ddof=1``); save json."""
    x = as_matrix(dataset, what=f"training dataset of iteration {ctx.iteration}")
    if len(x) <= ddof or len(x) < 2:
        raise UserError(f"train.trainer gaussian_mle: the training dataset of iteration {ctx.iteration} "
                        f"has {len(x)} rows; at least 2 are needed")
    mean = x.mean(axis=0)
    cov = np.atleast_2d(np.cov(x, rowvar=False, ddof=ddof))
    write_meta(ctx.out_dir / "model", {"kind": "gaussian", "mean": mean.tolist(), "cov": cov.tolist(),
                                       "n": len(x), "ddof": ddof})
    return {"n": float(len(x)), **cov_summary(mean, cov, prefix="fitted")}


def load(model_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    meta = read_meta(model_dir)
    if meta["kind"] != "gaussian":
        raise UserError(f"{model_dir}: expected a gaussian model, found '{meta['kind']}'")
    return np.asarray(meta["mean"], dtype=np.float64), np.atleast_2d(np.asarray(meta["cov"], dtype=np.float64))


def sample(model_dir: Path, n: int, seed: int) -> np.ndarray:
    mean, cov = load(model_dir)
    return np.random.default_rng(seed).multivariate_normal(mean, cov, size=n, method="svd")


def log_likelihood(model_dir: Path, x: np.ndarray) -> np.ndarray:
    mean, cov = load(model_dir)
    return logpdf(x.reshape(len(x), -1), mean, cov)


def logpdf(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Log-density of N(mean, cov) at each row of ``x``, for a singular ``cov`` too.

    The computation of ``scipy.stats.multivariate_normal(mean, cov, allow_singular=True).logpdf``,
    step for step, in NumPy: eigenvalues up to 1e6 machine epsilons of the largest count as zero;
    the density is taken on the support (pseudo-determinant and pseudo-inverse) and is -inf off it.
    Importing scipy.stats costs about a second, which was a third of a 100-iteration Gaussian run.
    The numbers are scipy's in 1-D; in more dimensions NumPy's and SciPy's eigensolvers (LAPACK
    syevd and syevr) may differ in the last bits (tests/test_batch.py checks agreement to 1e-12)."""
    s, u = np.linalg.eigh(cov)
    eps = 1e6 * np.finfo(np.float64).eps * np.max(np.abs(s))
    support = s > eps
    inverse = np.zeros_like(s)
    inverse[support] = 1.0 / s[support]
    dev = x - mean
    maha = np.sum(np.square(dev @ np.multiply(u, np.sqrt(inverse))), axis=-1)
    out = -0.5 * (support.sum() * np.log(2 * np.pi) + np.sum(np.log(s[support])) + maha)
    if not support.all():
        out[np.linalg.norm(dev @ u[:, ~support], axis=-1) >= 1e3 * eps] = -np.inf
    return np.atleast_1d(out)


def mahalanobis(model_dir: Path, x: np.ndarray) -> np.ndarray:
    """Distance of each row from the mean in standard deviations (|x - mu| / sigma in 1-D)."""
    mean, cov = load(model_dir)
    d = x.reshape(len(x), -1) - mean
    return np.sqrt(np.einsum("ij,ij->i", d @ np.linalg.pinv(cov, hermitian=True), d))


def gaussian_generator(ctx: PhaseContext) -> dict[str, float]:
    """Draw ``generate.num_samples`` rows from this iteration's fitted Gaussian."""
    return generate_from_model(ctx, "gaussian")


def summary(model_dir: Path) -> dict[str, float]:
    mean, cov = load(model_dir)
    return cov_summary(mean, cov, prefix="fitted")


def preflight_source(config: Config, kwargs: dict[str, Any]) -> list[str]:
    """``validate``: the mean, spread and covariance fit the dimension (cheap: no data drawn)."""
    gaussian_params(kwargs.get("dim", 1), kwargs.get("mean", 0.0), kwargs.get("std", 1.0), kwargs.get("cov"),
                    key="data.source")
    return []
