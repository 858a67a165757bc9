"""The hub source streams a dataset and keeps a uniform sample of ``max_documents`` (reservoir
sampling), offline here: a local folder of Parquet files served through the same
``load_dataset(path, streaming=True)`` call."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import chisquare

from collapsebench.sources.files import hub_source, reservoir


def test_reservoir_draws_every_position_equally_often():
    n, k, draws = 40, 4, 3000
    counts = np.zeros(n)
    for seed in range(draws):
        picked = reservoir(iter(range(n)), k, np.random.default_rng(seed))
        assert len(set(picked)) == k and picked == sorted(picked)  # without replacement, in stream order
        counts[picked] += 1
    assert chisquare(counts).pvalue > 1e-3, counts  # uniform: each position k/n of the time
    assert reservoir(iter(range(3)), 5, np.random.default_rng(0)) == [0, 1, 2]


def test_reservoir_holds_the_sample_not_the_stream():
    def stream():
        for i in range(3000):
            yield "x" * 10_000 + str(i)  # 30 MB in all, made one row at a time

    tracemalloc.start()
    picked = reservoir(stream(), 10, np.random.default_rng(0))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(picked) == 10 and peak < 1_000_000, peak


def _folder(tmp_path, n=400, files=4):
    folder = tmp_path / "corpus"
    folder.mkdir()
    per = n // files
    for f in range(files):
        rows = [f"document {f * per + i} " + "word " * 40 for i in range(per)]
        pq.write_table(pa.table({"text": rows}), folder / f"part-{f}.parquet", row_group_size=25)
    return folder


def test_hub_source_streams_a_uniform_sample_without_saving_the_rest(tmp_path, make_ctx):
    folder = _folder(tmp_path)
    counts = np.zeros(400)
    for seed in range(40):
        ctx = make_ctx(phase="curate", iteration=0, seed=seed)
        ds = hub_source(ctx, str(folder), max_documents=20)
        positions = [int(t.split()[1]) for t in ds["text"]]
        assert len(ds) == 20 and positions == sorted(positions)
        counts[positions] += 1
    assert not list(ctx.cache_dir.rglob("*.arrow"))  # streamed: nothing of the dataset written
    # 800 picks over 400 positions: 2 expected each; pooled into 20 blocks of 20 positions (40 each)
    assert chisquare(counts.reshape(20, 20).sum(axis=1)).pvalue > 1e-3


def test_hub_source_caps_by_data_max_documents_and_holds_only_the_sample(tmp_path, make_ctx):
    from collapsebench.errors import UserError

    folder = tmp_path / "big"
    folder.mkdir()
    for f in range(4):  # 16 MB of text in 8,000 rows
        rows = [f"document {f * 2000 + i} " + "y" * 2000 for i in range(2000)]
        pq.write_table(pa.table({"text": rows}), folder / f"part-{f}.parquet", row_group_size=100)
    ctx = make_ctx(phase="curate", iteration=0, data={"source": {"name": "hub", "path": str(folder)},
                                                      "max_documents": 7})
    hub_source(ctx, str(_folder(tmp_path, n=8, files=1)), max_documents=2)  # imports done before measuring
    tracemalloc.start()
    ds = hub_source(ctx, str(folder))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(ds) == 7 and peak < 4_000_000, peak
    with pytest.raises(UserError, match="max_documents"):
        hub_source(ctx, str(folder), max_documents=0)
