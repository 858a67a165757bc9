"""The uniform draw of the regimes (:mod:`collapsebench.regimes.draw`): exact amounts, uniform
inclusion, order kept, the same rows however the dataset is read, and a selection kept on disk."""

from __future__ import annotations

import numpy as np
import pytest

from collapsebench.data import ArrowRows
from collapsebench.errors import UserError
from collapsebench.regimes import draw as draw_module
from collapsebench.regimes.draw import draw


def rows(n: int, seed: int = 0) -> ArrowRows:
    import pyarrow as pa

    counts = np.random.default_rng(seed).integers(1, 50, n)
    return ArrowRows(pa.table({"i": np.arange(n), "n_tokens": counts}))


def test_rows_drawn_exactly_and_in_order():
    ds = rows(5000)
    picked = draw(ds, 1234, (7, 1), weights=None, scratch=None, what="x").table.column("i").to_numpy()
    assert len(picked) == 1234 == len(set(picked.tolist()))
    assert np.all(np.diff(picked) > 0)
    again = draw(ds, 1234, (7, 1), weights=None, scratch=None, what="x").table.column("i").to_numpy()
    assert np.array_equal(picked, again)
    other = draw(ds, 1234, (7, 2), weights=None, scratch=None, what="x").table.column("i").to_numpy()
    assert not np.array_equal(picked, other)


def test_tokens_reached_by_the_shortest_prefix_of_the_key_order(monkeypatch):
    """The kept rows are the first rows of one random order whose tokens reach the amount: the
    amount is reached, and dropping the kept row of the largest key falls short of it. Small
    windows and few bins, so the interval search crosses windows."""
    monkeypatch.setattr(draw_module, "WINDOW", 300)
    monkeypatch.setattr(draw_module, "BINS", 16)
    ds = rows(2000, seed=1)
    counts = ds.table.column("n_tokens").to_numpy()
    for amount in (1, 37, 10_000, int(counts.sum()) - 1):
        kept = draw(ds, amount, (3,), weights="n_tokens", scratch=None, what="x").table.column("i").to_numpy()
        keys = np.concatenate([draw_module._keys((3,), w, min(300, 2000 - s)) for w, s in enumerate(range(0, 2000, 300))])
        assert counts[kept].sum() >= amount
        last = kept[np.argmax(keys[kept])]
        assert counts[kept].sum() - counts[last] < amount
        assert np.all(keys[kept].max() < np.delete(keys, kept))  # a prefix of the key order


def test_inclusion_is_uniform():
    """Each of 100 rows is drawn with probability 30/100 (2,000 draws: binomial sd 0.0102)."""
    ds = rows(100)
    hits = np.zeros(100)
    for seed in range(2000):
        hits[draw(ds, 30, (seed,), weights=None, scratch=None, what="x").table.column("i").to_numpy()] += 1
    assert np.abs(hits / 2000 - 0.3).max() < 0.05


def test_datasets_selection_is_memory_mapped_and_equal(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(draw_module, "WINDOW", 256)
    ds = rows(3000)
    hf = datasets.Dataset(ds.table).select(range(100, 3000))  # a selection of a selection
    mine = draw(ArrowRows(ds.table.slice(100)), 500, (5,), weights="n_tokens", scratch=None, what="x")
    theirs = draw(hf, 500, (5,), weights="n_tokens", scratch=tmp_path, what="x")
    assert theirs["i"] == mine.table.column("i").to_pylist()
    assert list(tmp_path.glob("draw-*.arrow")), "the selection is a file"


def test_amounts_at_the_edges():
    ds = rows(50)
    assert draw(ds, 50, (0,), weights=None, scratch=None, what="x") is ds
    assert len(draw(ds, 0, (0,), weights=None, scratch=None, what="x")) == 0
    with pytest.raises(UserError, match="needs 51 rows of the pool but only 50 exist"):
        draw(ds, 51, (0,), weights=None, scratch=None, what="the pool")
