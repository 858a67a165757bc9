"""The VAE toy setting: scikit-learn's 8x8 digits, a small fully connected VAE (torch, CPU).

The decoder is Bernoulli (pixels scaled to [0, 1], binary cross-entropy); the encoder outputs the
mean and log-variance of a diagonal Gaussian posterior. Training minimises the negative ELBO, or
its truncated variant (``objective: truncated_elbo``: the truncated cross-entropy rule on the
reconstruction term, :func:`vae_loss`), so the loss-function experiments run in the toy world too.
Generated digits are decoder means of ``z ~ N(0, I)``. The per-row log-likelihood used by
evaluations and truncation is the ELBO, with the posterior mean as the latent code (a
deterministic lower-bound estimate).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from collapsebench.api import Dataset, PhaseContext
from collapsebench.errors import UserError
from collapsebench.toy.common import as_matrix, generate_from_model, read_meta, vector_dataset, write_meta

WEIGHTS_FILE = "vae.safetensors"  # weights as numbers: loading a model folder runs no code


DIGITS = 1797  # the 8x8 digits scikit-learn ships


def digits_source(ctx: PhaseContext, *, n: Annotated[int, Field(ge=2, le=DIGITS)] | None = None) -> Dataset:
    """The 1797 8x8 digits shipped with scikit-learn, flattened to 64 floats in [0, 1], shuffled."""
    from sklearn.datasets import load_digits

    x = load_digits().data / 16.0
    x = x[np.random.default_rng(ctx.seed).permutation(len(x))]
    if n is not None:
        x = x[:n]
    return vector_dataset(x)


def plan_digits(config: Any, kwargs: dict[str, Any], chars_per_token: float) -> tuple[int, None, str]:
    """The source's declared ``plan`` hook: ``n`` rows (default: all the digits), no tokens."""
    return int(kwargs["n"] or DIGITS), None, "rows of vectors"


def build(dim: int, latent_dim: int, hidden: int) -> Any:
    import torch.nn as nn

    return nn.ModuleDict({
        "encoder": nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_dim)),
        "decoder": nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim)),
    })


def _pixel_terms(net: Any, x: Any, noise: Any | None) -> tuple[Any, Any, Any]:
    """Per-pixel reconstruction log-likelihood, per-row KL to the prior, and decoder logits."""
    import torch
    import torch.nn.functional as F

    mu, logvar = net["encoder"](x).chunk(2, dim=-1)
    z = mu if noise is None else mu + torch.exp(0.5 * logvar) * noise
    logits = net["decoder"](z)
    recon = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)
    return recon, kl, logits


def elbo_terms(net: Any, x: Any, noise: Any | None) -> tuple[Any, Any, Any]:
    """Per-row reconstruction log-likelihood, KL to the prior, and decoder means."""
    import torch

    recon, kl, logits = _pixel_terms(net, x, noise)
    return recon.sum(-1), kl, torch.sigmoid(logits)


def vae_loss(net: Any, x: Any, noise: Any, *, beta: float, gamma: float | None = None) -> tuple[Any, float]:
    """The training loss of a batch and the share of pixel terms it masked: the negative ELBO (mean
    over rows, KL weighted by ``beta``), or with ``gamma`` its truncated variant, truncated
    cross-entropy's rule on the reconstruction term: a pixel whose likelihood under the decoder,
    exp(-BCE), is already above ``gamma`` gets no loss and no gradient (the KL term is kept).
    ``gamma`` 1 masks nothing (a likelihood never exceeds 1): exactly the ELBO. With grey pixels in
    [0, 1], a pixel's likelihood stays below 1 even when it is reconstructed exactly (0.5 for a
    pixel at 0.5), so it is the near-binary pixels that get masked."""
    recon, kl, _ = _pixel_terms(net, x, noise)
    if gamma is None:
        return (-recon.sum(-1) + beta * kl).mean(), 0.0
    keep = (recon.detach().exp() <= gamma).float()
    return (-(recon * keep).sum(-1) + beta * kl).mean(), float(1.0 - keep.mean())


def _init_weights(ctx: PhaseContext, net: Any, meta: dict[str, Any]) -> str:
    from safetensors.torch import load_file

    init = ctx.config.model.init
    source = None
    if init == "previous" and ctx.iteration > 1:
        source = ctx.model_dir(ctx.iteration - 1)
    elif init == "base" and ctx.config.model.base:
        source = ctx.config.resolve_path(ctx.config.model.base)
    if source is None:
        return "scratch"
    old = read_meta(source)
    if any(old.get(k) != meta[k] for k in ("kind", "dim", "latent_dim", "hidden")):
        raise UserError(f"model.init '{init}': the VAE in {source} has a different shape; "
                        "use model.init: scratch or the same latent_dim/hidden")
    net.load_state_dict(load_file(Path(source) / WEIGHTS_FILE))
    return str(source)


OBJECTIVES = ("elbo", "truncated_elbo")


def vae(ctx: PhaseContext, dataset: Dataset, *, latent_dim: int = 8, hidden: int = 128, epochs: int = 30,
        lr: float = 1e-3, batch_size: int = 64, beta: float = 1.0, objective: str = "elbo",
        gamma: float = 0.9) -> dict[str, Any]:
    """Train a VAE on the rows' ``x`` vectors (values in [0, 1]); honours ``model.init``.

    ``objective``: ``elbo`` (the negative ELBO) or ``truncated_elbo`` (pixels reconstructed with a
    likelihood above ``gamma`` get no loss; see :func:`vae_loss`). The stats report the share of
    pixel terms the loss masked over the training (``masked_fraction``)."""
    import torch
    from safetensors.torch import save_file

    if objective not in OBJECTIVES:
        raise UserError(f"train.trainer.objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if not 0 < gamma <= 1:
        raise UserError(f"train.trainer.gamma must be in (0, 1], got {gamma}")

    x_np = as_matrix(dataset, what=f"training dataset of iteration {ctx.iteration}")
    if len(x_np) < 2:
        raise UserError(f"train.trainer vae: the training dataset of iteration {ctx.iteration} has {len(x_np)} rows")
    if x_np.min() < 0 or x_np.max() > 1:
        raise UserError("train.trainer vae: values of 'x' must lie in [0, 1] (Bernoulli decoder)")
    if min(latent_dim, hidden, epochs, batch_size) < 1 or lr <= 0:
        raise UserError("train.trainer vae: latent_dim, hidden, epochs, batch_size and lr must be positive")
    gen = torch.Generator().manual_seed(ctx.seed)
    meta = {"kind": "vae", "dim": x_np.shape[1], "latent_dim": latent_dim, "hidden": hidden, "n": len(x_np)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        net = build(x_np.shape[1], latent_dim, hidden)
    init = _init_weights(ctx, net, meta)
    x = torch.tensor(x_np, dtype=torch.float32)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    masked, pixels = 0.0, 0
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            noise = torch.randn(len(idx), latent_dim, generator=gen)
            value, share = vae_loss(net, x[idx], noise, beta=beta, gamma=gamma if objective == "truncated_elbo" else None)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            masked += share * idx.numel() * x.shape[1]
            pixels += idx.numel() * x.shape[1]
    meta["init"] = init
    model_dir = ctx.out_dir / "model"
    write_meta(model_dir, meta)
    save_file(net.state_dict(), model_dir / WEIGHTS_FILE)
    fraction = masked / max(pixels, 1)
    return {"n": float(len(x_np)), **scores(model_dir, x_np, prefix="train"), "objective": objective,
            "masked_fraction": fraction, "metrics": {"masked_fraction": fraction}}


def load(model_dir: Path) -> tuple[dict[str, Any], Any]:
    from safetensors.torch import load_file

    meta = read_meta(model_dir)
    if meta["kind"] != "vae":
        raise UserError(f"{model_dir}: expected a vae model, found '{meta['kind']}'")
    net = build(meta["dim"], meta["latent_dim"], meta["hidden"])
    net.load_state_dict(load_file(Path(model_dir) / WEIGHTS_FILE))
    return meta, net.eval()


def sample(model_dir: Path, n: int, seed: int) -> np.ndarray:
    import torch

    meta, net = load(model_dir)
    with torch.no_grad():
        z = torch.randn(n, meta["latent_dim"], generator=torch.Generator().manual_seed(seed))
        return torch.sigmoid(net["decoder"](z)).double().numpy()


def log_likelihood(model_dir: Path, x: np.ndarray) -> np.ndarray:
    import torch

    _, net = load(model_dir)
    with torch.no_grad():
        recon, kl, _ = elbo_terms(net, torch.tensor(x, dtype=torch.float32), None)
    return (recon - kl).double().numpy()


def scores(model_dir: Path, x: np.ndarray, *, prefix: str) -> dict[str, float]:
    """Mean ELBO (nats per image) and reconstruction MSE per pixel of ``x``."""
    import torch

    _, net = load(model_dir)
    with torch.no_grad():
        recon, kl, means = elbo_terms(net, torch.tensor(x, dtype=torch.float32), None)
    return {f"{prefix}_elbo_mean": float((recon - kl).mean()),
            f"{prefix}_recon_mse": float(((means.double().numpy() - x) ** 2).mean())}


def save_grid(x: np.ndarray, path: Path, *, title: str = "") -> None:
    """A PNG grid of up to 16 vectors shown as square grey images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = x[:16]
    side = int(math.isqrt(x.shape[1]))
    shape = (side, side) if side * side == x.shape[1] else (1, x.shape[1])
    fig, axes = plt.subplots(4, 4, figsize=(4, 4))
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < len(x):
            ax.imshow(x[i].reshape(shape), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def vae_generator(ctx: PhaseContext) -> dict[str, float]:
    """Decode ``generate.num_samples`` latent draws of this iteration's VAE."""
    return generate_from_model(ctx, "vae")
