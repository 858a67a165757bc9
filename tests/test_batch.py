"""The batched driver of vector worlds: the same numbers, folders and journal as the general driver,
resume after a failure or a kill, no `datasets` or scipy.stats import; ArrowRows against `datasets`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from collapsebench import batch
from collapsebench.config import config_from_dict, load_config
from collapsebench.data import ArrowRows, add_lineage, concat, count_by, read_saved, save
from collapsebench.errors import UserError
from collapsebench.loop import run_experiment
from collapsebench.regimes.draw import draw
from collapsebench.toy.gaussian import logpdf
from conftest import REPO

TOY = REPO / "configs" / "toy"


def toy(name: str, out: Path, *overrides: str):
    return load_config(TOY / f"{name}.yaml", [f"output_dir={out}", *overrides])


def committed(run_dir: Path) -> dict[str, object]:
    """Every committed file of a run: JSON files as data, saved datasets as their rows, others by
    size (a dataset's own metadata files, written differently by `datasets` and by pyarrow, and
    the journal's times left out)."""
    out: dict[str, object] = {}
    datasets = {p.parent for p in run_dir.glob("iter_*/**/state.json")}
    for folder in datasets:
        out[str(folder.relative_to(run_dir))] = read_saved(folder).table.to_pylist()
    for path in sorted(run_dir.glob("iter_*/**/*")):
        if path.is_dir() or path.parent in datasets:
            continue
        rel = str(path.relative_to(run_dir))
        out[rel] = json.loads(path.read_text()) if path.suffix == ".json" else path.stat().st_size
    return out


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- same results as the general driver

SETTINGS = {
    "accumulate_subsample_3d": ("gaussian_accumulate_subsample", [
        "iterations=3", "data.source={name: gaussian, n: 400, dim: 3, mean: [1.0, 0.0, -1.0], "
        "cov: [[1.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 0.5]]}", "data.holdout=200"]),
    "kde": ("kde_replace", ["iterations=2"]),
    "gmm": ("gmm_replace", ["iterations=2"]),
    "truncation_sigmas": ("gaussian_truncation", ["iterations=3", "curate.preprocess=[{name: truncate_likely, "
                                                  "min_sigmas: 0.3}]"]),
}


@pytest.mark.parametrize("setting", [pytest.param(s, marks=[pytest.mark.slow] if s != "accumulate_subsample_3d" else [])
                                     for s in SETTINGS])
def test_batched_run_is_the_general_drivers_run(setting, tmp_path, monkeypatch):
    name, overrides = SETTINGS[setting]
    config = toy(name, tmp_path / "batched", *overrides)
    assert batch.applies(config)
    run_experiment(config, quiet=True)
    monkeypatch.setenv(batch.SWITCH, "0")
    assert not batch.applies(config)
    run_experiment(toy(name, tmp_path / "general", *overrides), quiet=True)

    assert rows(tmp_path / "batched") == rows(tmp_path / "general")  # bit for bit
    assert committed(tmp_path / "batched") == committed(tmp_path / "general")
    state = json.loads((tmp_path / "batched" / "state.json").read_text())["steps"]
    general = json.loads((tmp_path / "general" / "state.json").read_text())["steps"]
    assert list(state) == list(general)
    for key, entry in state.items():
        assert entry["status"] == "done" and entry["batched"] is True
        assert {k: entry[k] for k in ("seed", "fingerprint", "stats")} == {k: general[key][k] for k in
                                                                          ("seed", "fingerprint", "stats")}
    assert not list((tmp_path / "batched").glob("iter_*/*.tmp"))


def test_applies_only_to_built_in_vector_plug_ins_inline(tmp_path):
    base = toy("gaussian_accumulate", tmp_path / "r").dump()
    assert batch.applies(config_from_dict(base))
    assert batch.applies(config_from_dict({**base, "curate": {
        "regime": "replace", "preprocess": [{"name": "truncate_likely", "min_sigmas": 0.1}]}}))
    for change in ({"executor": "subprocess"}, {"tracking": ["wandb"]},
                   {"data": {**base["data"], "preprocess": [{"name": "truncate_likely", "min_sigmas": 0.1}]}},
                   {"evaluate": {"evaluations": ["toy_stats", "collapsebench.toy.evaluate:toy_stats"]}},
                   {"train": {"trainer": "vae"}, "generate": {"generator": "vae"}}):
        assert not batch.applies(config_from_dict({**base, **change})), change


def test_batching_follows_the_plug_ins_declaration(tmp_path, monkeypatch):
    """A plug-in that declares batched=True (it works on ArrowRows) is batched, built-in or not."""
    from collapsebench.registry import evaluations
    from collapsebench.toy.evaluate import toy_stats

    monkeypatch.setattr(evaluations, "_entries", dict(evaluations._entries))
    evaluations.register("my_stats", batched=True)(toy_stats)
    evaluations.register("my_undeclared_stats")(toy_stats)
    base = toy("gaussian_accumulate", tmp_path / "r", "iterations=2").dump()
    assert not batch.applies(config_from_dict({**base, "evaluate": {"evaluations": ["my_undeclared_stats"]}}))
    config = config_from_dict({**base, "evaluate": {"evaluations": ["my_stats"]}})
    assert batch.applies(config)
    run_experiment(config, quiet=True)
    steps = json.loads((tmp_path / "r" / "state.json").read_text())["steps"]
    assert all(entry["batched"] is True for entry in steps.values()) and len(rows(tmp_path / "r")) == 2


# ----------------------------------------------------------------------------- resume


def test_a_failed_batch_commits_its_finished_steps_and_resumes(tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    run_experiment(toy("gaussian_accumulate", reference, "iterations=4"), quiet=True)

    work = batch.work

    def failing(ctx, fingerprint, **kwargs):
        if (ctx.iteration, ctx.phase) == (3, "generate"):
            raise UserError("injected failure")
        return work(ctx, fingerprint, **kwargs)

    monkeypatch.setattr(batch, "work", failing)
    out = tmp_path / "run"
    with pytest.raises(UserError, match="injected"):
        run_experiment(toy("gaussian_accumulate", out, "iterations=4"), quiet=True)
    steps = json.loads((out / "state.json").read_text())["steps"]
    assert steps["3.train"]["status"] == "done" and (out / "iter_003" / "train" / "stats.json").exists()
    assert steps["3.generate"]["status"] == "failed" and "injected" in steps["3.generate"]["error"]
    assert [r["iteration"] for r in rows(out)] == [1, 2]

    monkeypatch.setattr(batch, "work", work)
    run_experiment(toy("gaussian_accumulate", out, "iterations=4"), quiet=True)
    assert rows(out) == rows(reference)
    assert json.loads((out / "state.json").read_text())["steps"]["3.generate"]["attempts"] == 2


def test_a_batch_killed_before_its_commit_is_redone_by_either_driver(tmp_path, monkeypatch):
    """A kill between sealing and committing leaves sealed work folders: both drivers redo them."""
    reference = tmp_path / "reference"
    run_experiment(toy("gaussian_replace", reference, "iterations=3"), quiet=True)

    def killed(*args):
        raise KeyboardInterrupt  # no commit, no journal: what a SIGKILL leaves

    commit, work = batch._commit, batch.work
    monkeypatch.setattr(batch, "BATCH_S", 1e9)  # one batch: nothing committed before the kill

    def stop_after(ctx, fingerprint, **kwargs):
        stats = work(ctx, fingerprint, **kwargs)
        if (ctx.iteration, ctx.phase) == (2, "train"):
            raise KeyboardInterrupt
        return stats

    for driver in ("batched", "general"):
        out = tmp_path / driver
        monkeypatch.setattr(batch, "_commit", killed)
        monkeypatch.setattr(batch, "work", stop_after)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(toy("gaussian_replace", out, "iterations=3"), quiet=True)
        assert (out / "iter_002" / "train.tmp" / "stats.json").exists()  # sealed, not committed
        assert not (out / "iter_001" / "curate").exists()
        monkeypatch.setattr(batch, "_commit", commit)
        monkeypatch.setattr(batch, "work", work)
        if driver == "general":
            monkeypatch.setenv(batch.SWITCH, "0")
        run_experiment(toy("gaussian_replace", out, "iterations=3"), quiet=True)
        assert rows(out) == rows(reference)
        monkeypatch.delenv(batch.SWITCH, raising=False)


# ----------------------------------------------------------------------------- what a vector run imports


def test_a_vector_run_imports_neither_datasets_nor_pandas_nor_scipy_stats(tmp_path):
    script = (f"from collapsebench.cli import main\nimport sys\n"
              f"main(['run', {str(TOY / 'gaussian_accumulate.yaml')!r}, 'output_dir={tmp_path / 'run'}', 'iterations=3'])\n"
              "print(sorted(m for m in ('datasets', 'pandas', 'scipy.stats', 'torch', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO / "src")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert len(rows(tmp_path / "run")) == 3


# ----------------------------------------------------------------------------- ArrowRows and `datasets`


def _rows(n: int = 50) -> ArrowRows:
    import pyarrow as pa

    from collapsebench.toy.common import vector_table

    x = np.random.default_rng(0).normal(size=(n, 2))
    return add_lineage(ArrowRows(pa.table({"x": vector_table(x)})), origin="real", generation=0, prefix="real-",
                       parent="")


def test_arrow_rows_do_what_datasets_do(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows_ = _rows()
    hf = add_lineage(datasets.Dataset(rows_.select_columns(["x"]).table), origin="real", generation=0,
                     prefix="real-", parent="")
    assert rows_.column_names == hf.column_names
    assert rows_.shuffle(seed=7).table.to_pylist() == hf.shuffle(seed=7).to_list()
    picked = draw(hf, 20, (3,), weights=None, scratch=tmp_path, what="x")
    assert draw(rows_, 20, (3,), weights=None, scratch=None, what="x").table.to_pylist() == picked.to_list()
    both = concat([rows_, rows_.select(range(5, 9))])
    assert both.table.to_pylist() == concat([hf, hf.select(range(5, 9))]).to_list()
    assert count_by(both, "generation") == count_by(concat([hf, hf.select(range(5, 9))]), "generation") == {"0": 54}

    save(rows_, tmp_path / "saved")
    loaded = datasets.load_from_disk(str(tmp_path / "saved"))
    assert loaded.features == hf.features and loaded.to_list() == hf.to_list()
    hf.save_to_disk(str(tmp_path / "by_datasets"))
    assert read_saved(tmp_path / "by_datasets").table.to_pylist() == rows_.table.to_pylist()
    save(rows_.select([]), tmp_path / "empty")
    assert len(datasets.load_from_disk(str(tmp_path / "empty"))) == 0 == len(read_saved(tmp_path / "empty"))


def test_arrays_through_buffers_are_pyarrows():
    import pyarrow as pa

    from collapsebench import arrow_numpy

    for values in (np.arange(5, dtype=np.int64), np.linspace(0, 1, 4), np.arange(3, dtype=np.int32)[::-1],
                   np.zeros(0), np.arange(6.0).reshape(2, 3)[:, 1]):
        made = arrow_numpy.array(values)
        assert made.equals(pa.array(values)) and made.type == pa.array(values).type
        assert (arrow_numpy.to_numpy(made) == values).all() and arrow_numpy.to_numpy(made).dtype == values.dtype
    texts = ["", "a", "déjà vu", "g001-0000003"]
    assert arrow_numpy.strings(texts).equals(pa.array(texts, type=pa.string()))
    assert arrow_numpy.strings([]).equals(pa.array([], type=pa.string()))
    for value, n in (("synthetic", 3), ("", 4), ("x", 0)):
        assert arrow_numpy.repeated(value, n).equals(pa.array([value] * n, type=pa.string()))
    sliced = pa.chunked_array([pa.array([1, 2, 3]), pa.array([4, 5])]).slice(1, 3)
    assert arrow_numpy.to_numpy(sliced).tolist() == [2, 3, 4]
    with_null = pa.array([1.0, None])
    assert np.isnan(arrow_numpy.to_numpy(with_null)[1])


def test_logpdf_is_scipys():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for dim in (1, 3):
        a = rng.normal(size=(dim, dim))
        mean, x = rng.normal(size=dim), rng.normal(size=(100, dim))
        cov = a @ a.T + 0.1 * np.eye(dim)
        want = np.atleast_1d(stats.multivariate_normal(mean, cov, allow_singular=True).logpdf(x))
        if dim == 1:
            assert (logpdf(x, mean, cov) == want).all()
        np.testing.assert_allclose(logpdf(x, mean, cov), want, rtol=1e-12)
    singular = np.outer(a[0], a[0])  # rank 1 in 3-D: finite on the line through the mean, -inf off it
    x = np.vstack([mean + np.outer(rng.normal(size=5), a[0]), mean + rng.normal(size=(5, 3))])
    want = stats.multivariate_normal(mean, singular, allow_singular=True).logpdf(x)
    got = logpdf(x, mean, singular)
    assert (np.isfinite(got) == np.isfinite(want)).all() and np.isfinite(got[:5]).all() and np.isinf(got[5:]).all()
    np.testing.assert_allclose(got[:5], want[:5], rtol=1e-12)
