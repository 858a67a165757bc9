"""Mixture toy settings: a known Gaussian mixture as data; GMM and KDE (scikit-learn) as models.

Trainer keyword arguments go straight to ``sklearn.mixture.GaussianMixture`` and
``sklearn.neighbors.KernelDensity``; the fitted estimator is saved as numbers (JSON and ``.npz``),
never pickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from collapsebench.api import Dataset, NonNegativeFloat, PhaseContext
from collapsebench.config import Config
from collapsebench.errors import UserError
from collapsebench.toy.common import as_matrix, cov_summary, generate_from_model, read_meta, vector_dataset, write_meta
from collapsebench.toy.gaussian import Matrix, Rows, Spread, Vector, gaussian_params

ARRAYS_FILE = "arrays.npz"


def gaussian_mixture_source(ctx: PhaseContext, *, means: Annotated[list[Vector], Field(min_length=1, max_length=1000)],
                            n: Rows = 1000, weights: list[NonNegativeFloat] | None = None, stds: Spread = 1.0,
                            covs: list[Matrix] | None = None) -> Dataset:
    """``n`` rows from a known mixture: ``means`` (one number or vector per component, all of one
    length), ``weights`` (default uniform), ``stds`` (one for all, or one per component) or full ``covs``."""
    k = len(means)
    dim = len(np.atleast_1d(means[0]))
    ragged = [j for j, m in enumerate(means) if len(np.atleast_1d(m)) != dim]
    if ragged:
        raise UserError(f"data.source.means: mean {ragged[0]} has {len(np.atleast_1d(means[ragged[0]]))} values, "
                        f"mean 0 has {dim}; every component needs a mean of the same length")
    w = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(w) != k or (w < 0).any() or w.sum() <= 0:
        raise UserError(f"data.source.weights must be {k} non-negative numbers (one per mean), got {weights!r}")
    if covs is not None and len(covs) != k:
        raise UserError(f"data.source.covs must hold {k} matrices (one per mean), got {len(covs)}")
    per_std = stds if isinstance(stds, (list, tuple)) and len(stds) == k and k > 1 else [stds] * k
    params = [gaussian_params(dim, means[j], per_std[j], None if covs is None else covs[j],
                              key=f"data.source (component {j})") for j in range(k)]
    rng = np.random.default_rng(ctx.seed)
    component = rng.choice(k, size=n, p=w / w.sum())
    x = np.empty((n, dim))
    for j, (mu, sigma) in enumerate(params):
        rows = np.flatnonzero(component == j)
        x[rows] = rng.multivariate_normal(mu, sigma, size=len(rows), method="svd")
    return vector_dataset(x)


def _fit(ctx: PhaseContext, dataset: Dataset, make: Any, name: str, kwargs: dict[str, Any]) -> Any:
    from sklearn.utils._param_validation import InvalidParameterError

    x = as_matrix(dataset, what=f"training dataset of iteration {ctx.iteration}")
    try:
        estimator = make(**kwargs)
        return x, estimator.fit(x)
    except (InvalidParameterError, TypeError) as exc:
        raise UserError(f"train.trainer {name}: {exc}") from None
    except ValueError:
        if len(x) < 2:
            raise UserError(f"train.trainer {name}: the training dataset of iteration {ctx.iteration} "
                            f"has {len(x)} rows") from None
        raise


# What a fitted estimator needs to sample and score, saved as numbers (no pickle: a run directory
# may be shared and loaded by others, and loading it must never run code).
GMM_FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")


def _save(ctx: PhaseContext, estimator: Any, kind: str, x: np.ndarray) -> Path:
    """The estimator's parameters in toy.json, its arrays in arrays.npz: for a GMM the fitted
    mixture, for a KDE the training points (refitting on them rebuilds the same estimator)."""
    model_dir = ctx.out_dir / "model"
    params = {k: v for k, v in estimator.get_params().items() if isinstance(v, (int, float, str, bool, type(None)))}
    meta = {"kind": kind, "n": len(x), "params": params, "n_features": int(estimator.n_features_in_)}
    if kind == "gmm":
        arrays = {name: np.asarray(getattr(estimator, name)) for name in GMM_FITTED}
        meta.update(converged=bool(estimator.converged_), n_iter=int(estimator.n_iter_))
    else:
        arrays = {"data": np.asarray(x, dtype=np.float64)}
    write_meta(model_dir, meta)
    np.savez(str(model_dir / ARRAYS_FILE), allow_pickle=False, **arrays)
    return model_dir


def gmm(ctx: PhaseContext, dataset: Dataset, **kwargs: Any) -> dict[str, float]:
    """Fit ``sklearn.mixture.GaussianMixture(**kwargs)`` (seeded from the context unless given)."""
    from sklearn.mixture import GaussianMixture

    kwargs.setdefault("random_state", ctx.seed % 2**32)
    x, estimator = _fit(ctx, dataset, GaussianMixture, "gmm", kwargs)
    model_dir = _save(ctx, estimator, "gmm", x)
    return {"n": float(len(x)), "gmm_converged": float(estimator.converged_), **summary(model_dir)}


def kde(ctx: PhaseContext, dataset: Dataset, **kwargs: Any) -> dict[str, float]:
    """Fit ``sklearn.neighbors.KernelDensity(**kwargs)`` (a Gaussian kernel unless given)."""
    from sklearn.neighbors import KernelDensity

    kwargs.setdefault("kernel", "gaussian")
    if kwargs["kernel"] not in ("gaussian", "tophat"):
        raise UserError(f"train.trainer kde: kernel '{kwargs['kernel']}' cannot be sampled; "
                        "scikit-learn samples only the 'gaussian' and 'tophat' kernels")
    x, estimator = _fit(ctx, dataset, KernelDensity, "kde", kwargs)
    model_dir = _save(ctx, estimator, "kde", x)
    return {"n": float(len(x)), **summary(model_dir)}


def load(model_dir: Path) -> tuple[str, Any]:
    """The estimator saved by :func:`_save`, rebuilt from numbers (arrays loaded without pickle)."""
    meta = read_meta(model_dir)
    with np.load(Path(model_dir) / ARRAYS_FILE, allow_pickle=False) as arrays:
        if meta["kind"] == "gmm":
            from sklearn.mixture import GaussianMixture

            estimator = GaussianMixture(**meta["params"])
            for name in GMM_FITTED:
                setattr(estimator, name, arrays[name])
            estimator.converged_, estimator.n_iter_ = meta["converged"], meta["n_iter"]
            estimator.n_features_in_ = meta["n_features"]
        else:
            from sklearn.neighbors import KernelDensity

            estimator = KernelDensity(**meta["params"]).fit(arrays["data"])
    return meta["kind"], estimator


def sample(model_dir: Path, n: int, seed: int) -> np.ndarray:
    kind, estimator = load(model_dir)
    if n == 0:
        return np.zeros((0, estimator.n_features_in_))
    if kind == "kde":
        return estimator.sample(n, random_state=seed % 2**32)
    estimator.random_state = seed % 2**32
    x, _ = estimator.sample(n)
    return np.random.default_rng(seed).permutation(x)  # GaussianMixture.sample returns rows sorted by component


def log_likelihood(model_dir: Path, x: np.ndarray) -> np.ndarray:
    _, estimator = load(model_dir)
    return estimator.score_samples(x.reshape(len(x), -1))


def _full_covariances(estimator: Any) -> np.ndarray:
    k, d = estimator.means_.shape
    cov, kind = estimator.covariances_, estimator.covariance_type
    if kind == "full":
        return cov
    if kind == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if kind == "diag":
        return np.stack([np.diag(c) for c in cov])
    return cov[:, None, None] * np.eye(d)[None]


def summary(model_dir: Path) -> dict[str, float]:
    """Mean and covariance of the fitted density (exact for GMMs and Gaussian-kernel KDEs)."""
    kind, estimator = load(model_dir)
    if kind == "gmm":
        w, mu = estimator.weights_, estimator.means_
        mean = w @ mu
        cov = np.einsum("k,kij->ij", w, _full_covariances(estimator) + np.einsum("ki,kj->kij", mu, mu))
        cov -= np.outer(mean, mean)
        weights_entropy = float(-(w * np.log(np.clip(w, 1e-300, None))).sum())
        return {**cov_summary(mean, cov, prefix="fitted"), "gmm_weight_entropy": weights_entropy}
    data = np.asarray(estimator.tree_.data)
    h = float(estimator.bandwidth_)
    out = {"kde_bandwidth": h}
    if estimator.kernel == "gaussian":
        cov = np.atleast_2d(np.cov(data, rowvar=False, ddof=0)) + h**2 * np.eye(data.shape[1])
        out.update(cov_summary(data.mean(axis=0), cov, prefix="fitted"))
    return out


def gmm_generator(ctx: PhaseContext) -> dict[str, float]:
    """Draw ``generate.num_samples`` rows from this iteration's Gaussian mixture."""
    return generate_from_model(ctx, "gmm")


def kde_generator(ctx: PhaseContext) -> dict[str, float]:
    """Draw ``generate.num_samples`` rows from this iteration's kernel density estimate."""
    return generate_from_model(ctx, "kde")


def preflight_source(config: Config, kwargs: dict[str, Any]) -> list[str]:
    """``validate``: every component's parameters fit the means' dimension (no data drawn)."""
    means = kwargs["means"]
    dim = len(np.atleast_1d(means[0]))
    stds = kwargs.get("stds", 1.0)
    per_std = stds if isinstance(stds, list) and len(stds) == len(means) and len(means) > 1 else [stds] * len(means)
    covs = kwargs.get("covs")
    for j, mean in enumerate(means):
        if len(np.atleast_1d(mean)) != dim:
            raise UserError(f"data.source.means: mean {j} has {len(np.atleast_1d(mean))} values, mean 0 has {dim}; "
                            "every component needs a mean of the same length")
        gaussian_params(dim, mean, per_std[j], None if covs is None else covs[j], key=f"data.source (component {j})")
    return []
