"""Toy settings: data sources, trainers, generators, toy_stats and truncate_likely on real run folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from collapsebench.api import PhaseContext
from collapsebench.config import config_from_dict
from collapsebench.errors import UserError
from collapsebench.io import phase_seed
from collapsebench.layout import iter_name
from collapsebench.registry import data_sources, evaluations, generators, preprocessors, trainers
from collapsebench.toy.common import as_matrix

datasets = pytest.importorskip("datasets")
datasets.disable_progress_bars()


# ----------------------------------------------------------------------------- run folders by hand


def make_config(**sections: Any):
    raw = {"name": "toy", "seed": 0, "iterations": 3,
           "data": {"source": {"name": "gaussian", "n": 220}, "holdout": 20},
           "model": {"init": "scratch"},
           "train": {"trainer": "gaussian_mle"},
           "generate": {"generator": "gaussian", "num_samples": 100},
           "evaluate": {"evaluations": ["toy_stats"]}}
    raw.update(sections)
    return config_from_dict(raw)


def context(run_dir: Path, config, iteration: int, phase: str) -> PhaseContext:
    out = run_dir / iter_name(iteration) / f"{phase}.tmp"
    out.mkdir(parents=True, exist_ok=True)
    return PhaseContext(config, run_dir, iteration, phase, phase_seed(config.seed, iteration, phase), out)


def commit(ctx: PhaseContext) -> None:
    ctx.out_dir.rename(ctx.phase_dir(ctx.iteration, ctx.phase))


def prepare_real(run_dir: Path, config, n_holdout: int = 20) -> None:
    """Iteration 0 as the curate phase leaves it: lineage columns, real/ and holdout/ on disk."""
    ctx = context(run_dir, config, 0, "curate")
    spec = config.data.source
    ds = data_sources.get(spec.name)(ctx, **spec.kwargs).to_hf()
    n = len(ds)
    ds = ds.add_column("id", [f"r-{i:07d}" for i in range(n)]).add_column("origin", ["real"] * n)
    ds = ds.add_column("generation", np.zeros(n, dtype=np.int64)).add_column("parent", [""] * n)
    ds.select(range(n_holdout, n)).save_to_disk(str(ctx.out_dir / "real"))
    ds.select(range(n_holdout)).save_to_disk(str(ctx.out_dir / "holdout"))
    commit(ctx)


def train_generate(run_dir: Path, config, k: int, dataset, evaluate: bool = False) -> dict[str, float]:
    """Train, generate (and evaluate) iteration ``k`` with the config's plug-ins; return all stats."""
    stats: dict[str, float] = {}
    ctx = context(run_dir, config, k, "train")
    spec = config.train.trainer
    stats.update(trainers.get(spec.name)(ctx, dataset, **spec.kwargs))
    commit(ctx)
    ctx = context(run_dir, config, k, "generate")
    spec = config.generate.generator
    stats.update(generators.get(spec.name)(ctx, **spec.kwargs))
    commit(ctx)
    if evaluate:
        ctx = context(run_dir, config, k, "evaluate")
        stats.update(evaluations.get("toy_stats")(ctx))
        commit(ctx)
    return stats


def matrix(ds) -> np.ndarray:
    return as_matrix(ds)


# ----------------------------------------------------------------------------- data sources


def test_gaussian_source_matches_requested_moments(tmp_path):
    config = make_config()
    ctx = context(tmp_path, config, 0, "curate")
    x = matrix(data_sources.get("gaussian")(ctx, n=20000, dim=2, mean=[1.0, -2.0], std=[0.5, 3.0]))
    assert x.shape == (20000, 2)
    np.testing.assert_allclose(x.mean(axis=0), [1.0, -2.0], atol=0.1)
    np.testing.assert_allclose(x.std(axis=0), [0.5, 3.0], rtol=0.05)
    cov = [[1.0, 0.8], [0.8, 1.0]]
    y = matrix(data_sources.get("gaussian")(ctx, n=20000, dim=2, cov=cov))
    np.testing.assert_allclose(np.cov(y, rowvar=False), cov, atol=0.05)
    again = matrix(data_sources.get("gaussian")(ctx, n=20000, dim=2, cov=cov))
    np.testing.assert_array_equal(y, again)  # seeded from ctx.seed


def test_gaussian_source_rejects_bad_shapes(tmp_path):
    ctx = context(tmp_path, make_config(), 0, "curate")
    with pytest.raises(UserError, match="data.source.mean"):
        data_sources.get("gaussian")(ctx, n=10, dim=3, mean=[0.0, 1.0])
    with pytest.raises(UserError, match="data.source.cov"):
        data_sources.get("gaussian")(ctx, n=10, dim=2, cov=[[1.0, 2.0], [2.0, 1.0]])


def test_mixture_and_digits_sources(tmp_path):
    ctx = context(tmp_path, make_config(), 0, "curate")
    x = matrix(data_sources.get("gaussian_mixture")(ctx, n=4000, means=[-5.0, 5.0], weights=[0.25, 0.75], stds=0.5))
    assert abs((x[:, 0] > 0).mean() - 0.75) < 0.03
    assert abs(x[x[:, 0] > 0, 0].mean() - 5.0) < 0.1
    with pytest.raises(UserError, match="data.source.weights"):
        data_sources.get("gaussian_mixture")(ctx, means=[0.0, 1.0], weights=[1.0])
    digits = matrix(data_sources.get("digits")(ctx))
    assert digits.shape == (1797, 64)
    assert digits.min() == 0.0 and digits.max() == 1.0


# ----------------------------------------------------------------------------- Gaussian


def test_gaussian_mle_is_biased_unless_ddof(tmp_path):
    config = make_config()
    prepare_real(tmp_path, config)
    ctx = context(tmp_path, config, 1, "train")
    real = ctx.real()
    x = matrix(real)[:, 0]
    stats = trainers.get("gaussian_mle")(ctx, real)
    assert stats["n"] == len(x) == 200
    assert stats["fitted_var"] == pytest.approx(((x - x.mean()) ** 2).sum() / len(x))
    saved = json.loads((ctx.out_dir / "model" / "toy.json").read_text())
    assert saved["kind"] == "gaussian" and saved["cov"][0][0] == pytest.approx(stats["fitted_var"])
    unbiased = trainers.get("gaussian_mle")(ctx, real, ddof=1)
    assert unbiased["fitted_var"] / stats["fitted_var"] == pytest.approx(len(x) / (len(x) - 1))
    with pytest.raises(UserError, match="at least 2"):
        trainers.get("gaussian_mle")(ctx, real.select([0]))


def test_gaussian_generator_lineage_count_and_seed(tmp_path):
    config = make_config(generate={"generator": "gaussian"})  # num_samples None: as many as real rows
    prepare_real(tmp_path, config)
    train_generate(tmp_path, config, 1, context(tmp_path, config, 1, "train").real())
    ctx = context(tmp_path, config, 2, "curate")
    samples = ctx.samples(1)
    assert len(samples) == len(ctx.real()) == 200
    assert samples["id"][:2] == ["g001-0000000", "g001-0000001"]
    assert set(samples["origin"]) == {"synthetic"} and set(samples["generation"]) == {1}
    assert set(samples["parent"]) == {""}
    assert samples.features["x"] == ctx.real().features["x"]  # regimes can concatenate real and synthetic rows
    fitted = json.loads((ctx.model_dir(1) / "toy.json").read_text())
    x = matrix(samples)[:, 0]
    assert abs(x.mean() - fitted["mean"][0]) < 4 * np.sqrt(fitted["cov"][0][0] / len(x))
    # same seed -> same samples
    from collapsebench.toy.common import sample

    np.testing.assert_array_equal(sample(ctx.model_dir(1), 5, 7), sample(ctx.model_dir(1), 5, 7))
    assert not np.array_equal(sample(ctx.model_dir(1), 5, 7), sample(ctx.model_dir(1), 5, 8))


def test_toy_stats_gaussian_loglik_matches_formula(tmp_path):
    config = make_config()
    prepare_real(tmp_path, config)
    stats = train_generate(tmp_path, config, 1, context(tmp_path, config, 1, "train").real(), evaluate=True)
    ctx = context(tmp_path, config, 2, "curate")
    h = matrix(ctx.holdout())[:, 0]
    mu, var = stats["fitted_mean"], stats["fitted_var"]
    expected = np.mean(-0.5 * np.log(2 * np.pi * var) - (h - mu) ** 2 / (2 * var))
    assert stats["holdout_loglik_mean"] == pytest.approx(expected)
    s = matrix(ctx.samples(1))[:, 0]
    assert stats["sample_var"] == pytest.approx(s.var())
    metrics = json.loads(json.dumps(stats))
    assert all(isinstance(v, float) for v in metrics.values())


def test_generator_must_match_trainer(tmp_path):
    config = make_config(generate={"generator": "kde", "num_samples": 10})
    prepare_real(tmp_path, config)
    with pytest.raises(UserError, match="generator 'kde' cannot sample the 'gaussian' model"):
        train_generate(tmp_path, config, 1, context(tmp_path, config, 1, "train").real())


# ----------------------------------------------------------------------------- GMM / KDE


def test_gmm_recovers_components_and_passes_kwargs(tmp_path):
    source = {"name": "gaussian_mixture", "n": 1020, "means": [[-4.0, 0.0], [4.0, 0.0]], "stds": 0.5}
    config = make_config(data={"source": source, "holdout": 20},
                         train={"trainer": {"name": "gmm", "n_components": 2, "covariance_type": "diag"}},
                         generate={"generator": "gmm", "num_samples": 300})
    prepare_real(tmp_path, config)
    stats = train_generate(tmp_path, config, 1, context(tmp_path, config, 1, "train").real(), evaluate=True)
    from collapsebench.toy.mixture import load

    kind, est = load(tmp_path / "iter_001/train/model")  # rebuilt from numbers: no pickle in the folder
    assert kind == "gmm" and est.covariance_type == "diag" and est.n_components == 2
    assert {p.name for p in (tmp_path / "iter_001/train/model").iterdir()} == {"toy.json", "arrays.npz"}
    np.testing.assert_allclose(sorted(est.means_[:, 0]), [-4.0, 4.0], atol=0.15)
    assert stats["gmm_weight_entropy"] == pytest.approx(np.log(2), abs=0.01)
    # mixture trace: within-component 2 * 0.25 plus between-component 16
    assert stats["fitted_cov_trace"] == pytest.approx(16.5, rel=0.1)
    x = matrix(context(tmp_path, config, 2, "curate").samples(1))
    assert 0.35 < (x[:, 0] > 0).mean() < 0.65  # samples come from both components, shuffled
    assert (x[:150, 0] > 0).mean() not in (0.0, 1.0)
    assert stats["holdout_loglik_mean"] > -3.0  # two tight components: far above a single broad Gaussian
    bad = make_config(train={"trainer": {"name": "gmm", "n_component": 2}})
    with pytest.raises(UserError, match="gmm"):
        trainers.get("gmm")(context(tmp_path, bad, 2, "train"), context(tmp_path, bad, 2, "train").real(),
                            n_component=2)


def test_kde_bandwidth_and_kernel_checks(tmp_path):
    config = make_config(train={"trainer": {"name": "kde", "bandwidth": 0.3}},
                         generate={"generator": "kde", "num_samples": 50})
    prepare_real(tmp_path, config)
    real = context(tmp_path, config, 1, "train").real()
    stats = train_generate(tmp_path, config, 1, real, evaluate=True)
    x = matrix(real)[:, 0]
    assert stats["kde_bandwidth"] == 0.3
    assert stats["fitted_var"] == pytest.approx(x.var() + 0.09)
    with pytest.raises(UserError, match="cannot be sampled"):
        trainers.get("kde")(context(tmp_path, config, 2, "train"), real, kernel="epanechnikov")


# ----------------------------------------------------------------------------- VAE


def test_vae_learns_digits_and_writes_grid(tmp_path):
    config = make_config(data={"source": {"name": "digits", "n": 520}, "holdout": 20},
                         train={"trainer": {"name": "vae", "epochs": 1, "hidden": 64, "latent_dim": 4}},
                         generate={"generator": "vae", "num_samples": 32})
    prepare_real(tmp_path, config)
    real = context(tmp_path, config, 1, "train").real()
    short = train_generate(tmp_path, config, 1, real, evaluate=True)
    longer = make_config(data=config.data.model_dump(), generate=config.generate.model_dump(),
                         train={"trainer": {"name": "vae", "epochs": 15, "hidden": 64, "latent_dim": 4}})
    trained = train_generate(tmp_path, longer, 2, real, evaluate=True)
    assert trained["holdout_loglik_mean"] > short["holdout_loglik_mean"] + 5  # ELBO in nats per image
    assert trained["holdout_recon_mse"] < short["holdout_recon_mse"]
    samples = matrix(context(tmp_path, config, 3, "curate").samples(2))
    assert samples.shape == (32, 64) and samples.min() >= 0 and samples.max() <= 1
    png = tmp_path / "iter_002/evaluate/samples.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[:2] == (320, 320)


def test_vae_init_previous_loads_last_weights(tmp_path):
    config = make_config(data={"source": {"name": "digits", "n": 220}, "holdout": 20},
                         model={"init": "previous"},
                         train={"trainer": {"name": "vae", "epochs": 1, "hidden": 16, "latent_dim": 2}},
                         generate={"generator": "vae", "num_samples": 200})
    prepare_real(tmp_path, config)
    train_generate(tmp_path, config, 1, context(tmp_path, config, 1, "train").real())
    ctx = context(tmp_path, config, 2, "train")
    trainers.get("vae")(ctx, ctx.samples(1), epochs=1, hidden=16, latent_dim=2)
    assert json.loads((ctx.out_dir / "model/toy.json").read_text())["init"].endswith("iter_001/train/model")
    with pytest.raises(UserError, match="different shape"):
        trainers.get("vae")(ctx, ctx.samples(1), epochs=1, hidden=32, latent_dim=2)


# ----------------------------------------------------------------------------- truncation


def _two_generations(tmp_path, config):
    prepare_real(tmp_path, config)
    train_generate(tmp_path, config, 1, context(tmp_path, config, 1, "train").real())
    train_generate(tmp_path, config, 2, context(tmp_path, config, 2, "train").samples(1))
    ctx = context(tmp_path, config, 3, "curate")
    return ctx, datasets.concatenate_datasets([ctx.real(), ctx.samples(1), ctx.samples(2)])


def test_truncate_likely_percentile_drops_most_likely_synthetic_rows(tmp_path):
    from collapsebench.toy.common import log_likelihood

    config = make_config()
    ctx, data = _two_generations(tmp_path, config)
    out = preprocessors.get("truncate_likely")(ctx, data, keep_below_percentile=80, batch_size=64)
    origin = np.asarray(out["origin"])
    assert (origin == "real").sum() == 200  # real rows untouched
    for g in (1, 2):
        kept_ids = set(np.asarray(out["id"])[np.asarray(out["generation"]) == g])
        rows = ctx.samples(g)
        assert len(kept_ids) == 80
        ll = log_likelihood(ctx.model_dir(g), matrix(rows))
        kept = np.isin(rows["id"], list(kept_ids))
        assert ll[kept].max() < ll[~kept].min()
    assert set(out.column_names) == set(data.column_names)


def test_truncate_likely_min_sigmas_keeps_tails_only(tmp_path):
    config = make_config()
    ctx, data = _two_generations(tmp_path, config)
    out = preprocessors.get("truncate_likely")(ctx, data, min_sigmas=1.0, batch_size=50)
    synthetic = out.filter(lambda r: r["origin"] == "synthetic")
    assert len(out) - len(synthetic) == 200
    assert 0.2 * 200 < len(synthetic) < 0.45 * 200  # P(|z| >= 1) = 0.317
    for g in (1, 2):
        fit = json.loads((ctx.model_dir(g) / "toy.json").read_text())
        x = matrix(synthetic.filter(lambda r, g=g: r["generation"] == g))[:, 0]
        assert (np.abs(x - fit["mean"][0]) >= np.sqrt(fit["cov"][0][0])).all()


def test_truncate_likely_checks_arguments(tmp_path):
    config = make_config()
    ctx, data = _two_generations(tmp_path, config)
    with pytest.raises(UserError, match="exactly one"):
        preprocessors.get("truncate_likely")(ctx, data)
    with pytest.raises(UserError, match="exactly one"):
        preprocessors.get("truncate_likely")(ctx, data, min_sigmas=1.0, keep_below_percentile=50)
    with pytest.raises(UserError, match="keep_below_percentile"):
        preprocessors.get("truncate_likely")(ctx, data, keep_below_percentile=0)


# ----------------------------------------------------------------------------- shipped configs

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "toy").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_toy_configs_validate(path):
    from collapsebench.config import load_config

    first = path.read_text().splitlines()[0]
    config = load_config(path)
    verb = "sweep" if config.sweep is not None else "run"  # a config with a grid is headed by its sweep
    assert first.startswith(f"# collapsebench {verb} configs/toy/{path.name}")
    assert config.evaluate.evaluations[0].name == "toy_stats"
    trainers.check_kwargs(config.train.trainer.name, config.train.trainer.kwargs, key="train.trainer")
    generators.check_kwargs(config.generate.generator.name, config.generate.generator.kwargs, key="generate.generator")
    data_sources.check_kwargs(config.data.source.name, config.data.source.kwargs, key="data.source")
    for spec in config.curate.preprocess:
        preprocessors.check_kwargs(spec.name, spec.kwargs, key="curate.preprocess")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_toy_configs_run_and_leave_no_pickle(path, tmp_path):
    """Each shipped toy config, shortened to 2 iterations, runs; its run directory holds models as
    numbers (JSON, .npz, safetensors), nothing that runs code when loaded."""
    from collapsebench.config import load_config
    from collapsebench.loop import run_experiment
    from conftest import pickles_in

    extra = ["train.trainer.epochs=2"] if path.stem.startswith("vae") else []
    run = run_experiment(load_config(path, [f"output_dir={tmp_path / 'run'}", "iterations=2", *extra]), quiet=True)
    assert [r["iteration"] for r in run.read_metrics()] == [1, 2]
    assert pickles_in(run.path) == []


def test_toy_config_count():
    assert {p.stem for p in CONFIGS} >= {"gaussian_replace", "gaussian_accumulate", "gaussian_accumulate_subsample",
                                         "gaussian_truncation", "gmm_replace", "kde_replace", "vae_digits_replace"}


# ----------------------------------------------------------------------------- collapse direction


def _final_variance(tmp_path: Path, seed: int, regime: str, iterations: int = 25, n: int = 10) -> float:
    """Run the Gaussian loop by hand (replace: D(k+1) = S(k); accumulate: real + S(1..k))."""
    config = make_config(seed=seed, data={"source": {"name": "gaussian", "n": n + 20}, "holdout": 20},
                         generate={"generator": "gaussian", "num_samples": n})
    run_dir = tmp_path / f"{regime}-{seed}"
    prepare_real(run_dir, config)
    real = context(run_dir, config, 1, "train").real()
    data, pool = real, [real]
    for k in range(1, iterations + 1):
        stats = train_generate(run_dir, config, k, data)
        samples = context(run_dir, config, k + 1, "curate").samples(k)
        pool.append(samples)
        data = samples if regime == "replace" else datasets.concatenate_datasets(pool)
    return stats["fitted_var"]


def test_gaussian_variance_collapses_under_replace_not_accumulate(tmp_path):
    seeds = range(5)
    replace = np.array([_final_variance(tmp_path, s, "replace") for s in seeds])
    accumulate = np.array([_final_variance(tmp_path, s, "accumulate") for s in seeds])
    # replace: E[log var] drifts down by about 2/n per iteration (n = 10, 25 iterations: about -5)
    assert np.median(replace) < 0.3
    # accumulate: the real rows stay in the training set, the variance stays of order 1
    assert 0.5 < np.median(accumulate) < 2.0
    assert (replace < accumulate).sum() >= 4


# ----------------------------------------------------------------------------- through the loop driver


def _run(tmp_path: Path, name: str, *overrides: str):
    from collapsebench.config import load_config
    from collapsebench.loop import run_experiment

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "toy" / f"{name}.yaml",
                         [f"output_dir={tmp_path / name}", *overrides])
    run = run_experiment(config, quiet=True)
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    return run.path, rows


def test_loop_gaussian_replace_and_truncation(tmp_path):
    path, rows = _run(tmp_path, "gaussian_replace", "iterations=3", "data.source.n=300", "data.holdout=200")
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    assert all(np.isfinite(r["fitted_var"]) and np.isfinite(r["holdout_loglik_mean"]) for r in rows)
    d3 = datasets.load_from_disk(str(path / "iter_003/curate/dataset"))
    assert set(d3["generation"]) == {2} and len(d3) == 100
    fit2 = json.loads((path / "iter_002/train/model/toy.json").read_text())
    assert rows[1]["fitted_var"] == pytest.approx(fit2["cov"][0][0])

    path, rows = _run(tmp_path, "gaussian_truncation", "iterations=3", "data.source.n=300", "data.holdout=200")
    d3 = datasets.load_from_disk(str(path / "iter_003/curate/dataset"))
    s2 = datasets.load_from_disk(str(path / "iter_002/generate/samples"))
    assert set(d3["generation"]) == {2} and 96 <= len(d3) <= 98  # the 2% most likely are gone
    from collapsebench.toy.common import log_likelihood

    ll = log_likelihood(path / "iter_002/train/model", matrix(s2))
    dropped = ~np.isin(s2["id"], d3["id"])
    assert ll[dropped].min() > ll[~dropped].max()


def test_loop_gmm_and_kde(tmp_path):
    _, rows = _run(tmp_path, "gmm_replace", "iterations=2")
    assert {"gmm_weight_entropy", "fitted_cov_trace", "holdout_loglik_mean"} <= set(rows[-1])
    assert rows[-1]["gmm_weight_entropy"] <= np.log(3) + 1e-9
    _, rows = _run(tmp_path, "kde_replace", "iterations=2")
    # a Gaussian-kernel KDE has the variance of its data plus bandwidth^2 (0.3^2): each round adds it
    assert rows[1]["fitted_var"] == pytest.approx(rows[0]["sample_var"] + 0.09)
    assert rows[0]["fitted_var"] > 0.09


@pytest.mark.slow
def test_loop_vae_writes_sample_grids(tmp_path):
    path, rows = _run(tmp_path, "vae_digits_replace", "iterations=2", "data.source.n=300", "data.holdout=50",
                      "train.trainer.epochs=2", "train.trainer.hidden=32")
    assert (path / "iter_001/evaluate/samples.png").stat().st_size > 1000
    assert (path / "iter_002/evaluate/samples.png").stat().st_size > 1000
    assert all(np.isfinite(r["holdout_recon_mse"]) and r["holdout_loglik_mean"] < 0 for r in rows)


@pytest.mark.slow
def test_loop_variance_direction_across_seeds(tmp_path):
    """The literature's direction through the real driver: collapse under replace, not under accumulate."""
    final = {}
    for regime in ("replace", "accumulate"):
        final[regime] = np.array([
            _run(tmp_path / str(seed), f"gaussian_{regime}", "iterations=50", f"seed={seed}",
                 "data.source.n=220", "data.holdout=200", "generate.num_samples=20")[1][-1]["fitted_var"]
            for seed in range(5)])
    assert np.median(final["replace"]) < 0.3  # n = 20, 50 iterations: E[log var] about -5
    assert 0.5 < np.median(final["accumulate"]) < 2.0


def test_vae_truncated_elbo_masks_confident_pixels_and_gamma_one_is_the_elbo(tmp_path):
    """The VAE's truncated loss (TCE's rule on the reconstruction term): pixels the decoder already
    gives a likelihood above gamma get no loss and no gradient; gamma 1 masks nothing and trains
    exactly as the plain ELBO. Its train stats report the share of pixels it masked."""
    import torch
    from safetensors.torch import load_file

    from collapsebench.toy.vae import WEIGHTS_FILE, build, vae_loss

    config = make_config(data={"source": {"name": "digits", "n": 220}, "holdout": 20},
                         train={"trainer": {"name": "vae", "epochs": 2, "hidden": 16, "latent_dim": 2}})
    prepare_real(tmp_path, config)
    ctx = context(tmp_path, config, 1, "train")
    plain = trainers.get("vae")(ctx, ctx.real(), epochs=2, hidden=16, latent_dim=2)
    plain_weights = load_file(ctx.out_dir / "model" / WEIGHTS_FILE)
    same = trainers.get("vae")(ctx, ctx.real(), epochs=2, hidden=16, latent_dim=2, objective="truncated_elbo",
                            gamma=1.0)
    assert all(torch.equal(plain_weights[k], v) for k, v in load_file(ctx.out_dir / "model" / WEIGHTS_FILE).items())
    assert same["masked_fraction"] == 0.0 and plain["masked_fraction"] == 0.0
    truncated = trainers.get("vae")(ctx, ctx.real(), epochs=2, hidden=16, latent_dim=2, objective="truncated_elbo",
                                    gamma=0.6)
    assert 0 < truncated["masked_fraction"] < 1 and truncated["objective"] == "truncated_elbo"

    torch.manual_seed(0)
    net = build(64, 2, 16)
    x = torch.rand(8, 64).round()
    loss, masked = vae_loss(net, x, torch.zeros(8, 2), beta=1.0, gamma=0.6)
    loss.backward()
    assert 0 < masked < 1
    with pytest.raises(UserError, match="objective"):
        trainers.call("vae", ctx, ctx.real(), key="train.trainer", kwargs={"objective": "clipped"})
