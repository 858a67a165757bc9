"""``toy_stats``: per-iteration statistics of a toy model, its samples, and held-out real data under it."""

from __future__ import annotations

import numpy as np

from collapsebench.api import PhaseContext
from collapsebench.toy.common import as_matrix, log_likelihood, moment_summary, read_meta


def toy_stats(ctx: PhaseContext, *, grid: bool = True) -> dict[str, float]:
    """Fitted parameters, sample statistics and held-out real log-likelihood, for any toy model.

    Keys: ``fitted_*`` (moments of the fitted density: ``_mean``/``_var`` in 1-D, else ``_mean_norm``,
    ``_cov_trace``, ``_cov_logdet``), ``sample_*`` (the same for this iteration's samples),
    ``holdout_loglik_mean`` (nats per held-out real row; the ELBO for the VAE), and for the VAE
    ``holdout_recon_mse`` plus a PNG grid ``samples.png`` of 16 generated digits in ``ctx.out_dir``.
    """
    model_dir = ctx.model_dir()
    kind = read_meta(model_dir)["kind"]
    holdout = as_matrix(ctx.holdout(), what="held-out real data")
    samples = as_matrix(ctx.samples(), what=f"samples of iteration {ctx.iteration}")
    out: dict[str, float] = {}
    if kind == "gaussian":
        from collapsebench.toy.gaussian import summary

        out.update(summary(model_dir))
    elif kind in ("gmm", "kde"):
        from collapsebench.toy.mixture import summary

        out.update(summary(model_dir))
    out.update(moment_summary(samples, prefix="sample"))
    out["holdout_loglik_mean"] = float(np.mean(log_likelihood(model_dir, holdout)))
    if kind == "vae":
        from collapsebench.toy.vae import save_grid, scores

        vae_scores = scores(model_dir, holdout, prefix="holdout")
        out["holdout_recon_mse"] = vae_scores["holdout_recon_mse"]
        out["sample_pixel_var_mean"] = float(samples.var(axis=0).mean()) if len(samples) else float("nan")
        out.pop("sample_cov_logdet", None)
        if grid:
            ctx.out_dir.mkdir(parents=True, exist_ok=True)
            save_grid(samples, ctx.out_dir / "samples.png", title=f"iteration {ctx.iteration}")
    return out
