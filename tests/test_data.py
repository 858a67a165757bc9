"""Real data sources: every supported file kind, and one clear error per kind of bad input."""

import json

import datasets
import pytest

from collapsebench.data import check_text
from collapsebench.errors import UserError
from collapsebench.phases.curate import prepare
from collapsebench.sources.files import local_source


@pytest.mark.parametrize("kind", ["txt", "jsonl", "csv", "parquet", "saved"])
def test_local_formats(tmp_path, make_ctx, kind):
    texts = [f"document number {i}" for i in range(20)]
    ds = datasets.Dataset.from_dict({"text": texts})
    path = tmp_path / f"data.{kind}"
    if kind == "txt":
        path.write_text("\n".join(texts) + "\n")
    elif kind == "jsonl":
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    elif kind == "csv":
        ds.to_csv(str(path), index=False)
    elif kind == "parquet":
        ds.to_parquet(str(path))
    else:
        ds.save_to_disk(str(path))
    ctx = make_ctx(iteration=0)
    out = local_source(ctx, str(path), sample_by="line")
    assert sorted(out["text"]) == sorted(texts)


def test_paragraphs_of_a_text_file(tmp_path, make_ctx):
    path = tmp_path / "a.txt"
    path.write_text("first line\nstill first\n\nsecond\n")
    out = local_source(make_ctx(iteration=0), str(path))
    assert len(out) == 2 and out[1]["text"].strip() == "second"


def test_missing_file_is_named(tmp_path, make_ctx):
    with pytest.raises(UserError, match="data.source.path: file not found: .*nope.txt"):
        local_source(make_ctx(iteration=0), str(tmp_path / "nope.txt"))


def test_unsupported_and_malformed_files(tmp_path, make_ctx):
    weird = tmp_path / "x.docx"
    weird.write_text("x")
    with pytest.raises(UserError, match="cannot read"):
        local_source(make_ctx(iteration=0), str(weird))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(UserError, match="cannot parse .*bad.jsonl"):
        local_source(make_ctx(iteration=0), str(bad))


def test_row_without_text_is_named():
    ds = datasets.Dataset.from_dict({"text": ["a", "b", None, "d"]})
    with pytest.raises(UserError, match="row 2"):
        check_text(ds, "text", "data.source (local)")
    with pytest.raises(UserError, match="no column 'body'"):
        check_text(ds, "body", "data.source (local)")


def test_empty_dataset_is_refused(tmp_path, make_ctx):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    ctx = make_ctx(iteration=0, data={"source": {"name": "local", "path": str(empty)}, "holdout": 0.1})
    with pytest.raises(UserError, match="empty"):
        prepare(ctx)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n   \n")
    ctx = make_ctx(iteration=0, data={"source": {"name": "local", "path": str(blank), "sample_by": "line"},
                                      "holdout": 0.1})
    with pytest.raises(UserError, match="blank"):
        prepare(ctx)


def test_prepare_splits_and_adds_lineage(make_ctx):
    ctx = make_ctx(iteration=0)
    stats = prepare(ctx)
    real = datasets.load_from_disk(str(ctx.out_dir / "real"))
    holdout = datasets.load_from_disk(str(ctx.out_dir / "holdout"))
    assert len(holdout) == 40 and len(real) == stats["metrics"]["real_size"] == 240 - 40
    assert set(real["id"]).isdisjoint(holdout["id"])
    assert set(real["origin"]) == {"real"} and set(real["generation"]) == {0}
    assert (ctx.out_dir / "tokenizer" / "tokenizer.json").exists()
    assert stats["tokenizer"]["vocab_size"] <= 300


def test_evaluation_source_is_evaluated_instead_of_a_holdout_fraction(tmp_path, make_ctx):
    """data.evaluation: a separate evaluation source (a corpus's own test split): the whole training
    source is trained on, and every evaluation reads the evaluation source."""
    from conftest import write_corpus

    test_split = write_corpus(tmp_path / "test.txt", n=30, seed=9)
    ctx = make_ctx(iteration=0, data={"source": {"name": "local", "path": str(tmp_path / "corpus.txt"),
                                                 "sample_by": "line"},
                                      "evaluation": {"name": "local", "path": str(test_split), "sample_by": "line"}})
    write_corpus(tmp_path / "corpus.txt")
    stats = prepare(ctx)
    real = datasets.load_from_disk(str(ctx.out_dir / "real"))
    held_out = datasets.load_from_disk(str(ctx.out_dir / "holdout"))
    assert len(real) == 240 and stats["metrics"]["holdout_size"] == len(held_out) == 30  # nothing held out of the source
    assert list(held_out["text"]) == test_split.read_text().splitlines()
    assert set(held_out["id"]).isdisjoint(real["id"]) and all(i.startswith("eval-") for i in held_out["id"])
    with pytest.raises(UserError, match="data.holdout"):
        make_ctx(iteration=0, data={"source": {"name": "local", "path": str(tmp_path / "corpus.txt")},
                                    "evaluation": {"name": "local", "path": str(test_split)}, "holdout": 0.2})


def test_an_empty_dataset_is_saved_so_that_it_loads_again(tmp_path):
    """`datasets` saves an empty selection without an Arrow shard and cannot load it back; a
    committed dataset (no rejected samples, say) must open."""
    import datasets

    from collapsebench.data import save

    empty = datasets.Dataset.from_dict({"text": ["a", "b"], "n": [1, 2]}).select([])
    save(empty, tmp_path / "empty")
    again = datasets.load_from_disk(str(tmp_path / "empty"))
    assert len(again) == 0 and again.features == empty.features


@pytest.mark.parametrize("selection", ["all", "range", "sorted", "shuffled", "columns"])
def test_save_writes_what_save_to_disk_writes(tmp_path, monkeypatch, selection):
    """data.save streams batches with pyarrow (selected rows gathered chunk by chunk, shards cut by
    size): the folder holds the same rows, features and metadata as datasets' own save_to_disk."""
    import numpy as np
    import pyarrow as pa

    from collapsebench import data

    monkeypatch.setattr(data, "BATCH_BYTES", 3000)  # many batches and shards from a small dataset
    monkeypatch.setattr(data, "SHARD_BYTES", 20000)
    parts = []
    for k in range(3):  # a pool of three saved datasets, as a regime sees S(1..3)
        datasets.Dataset.from_dict({"text": [f"doc {k}-{i} " * (i % 5) for i in range(2000)],
                                    "generation": [k] * 2000}).save_to_disk(str(tmp_path / f"s{k}"))
        parts.append(datasets.load_from_disk(str(tmp_path / f"s{k}")))
    pool = data.concat(parts)
    ds = {"all": pool, "range": pool.select(range(1500, 4500)), "columns": pool.select_columns(["generation"]),
          "sorted": pool.select(np.sort(np.random.default_rng(0).choice(len(pool), 2500, replace=False))),
          "shuffled": pool.shuffle(seed=3)}[selection]
    data.save(ds, tmp_path / "mine")
    ds.save_to_disk(str(tmp_path / "theirs"))
    mine, theirs = (datasets.load_from_disk(str(tmp_path / n)) for n in ("mine", "theirs"))
    assert mine.to_list() == theirs.to_list() and mine.features == theirs.features
    assert len(json.loads((tmp_path / "mine" / "state.json").read_text())["_data_files"]) > 1
    assert (tmp_path / "mine" / "dataset_info.json").read_text() == (tmp_path / "theirs" / "dataset_info.json").read_text()
    with pa.memory_map(str(next((tmp_path / "mine").glob("data-00000-*.arrow")))) as f:
        assert pa.ipc.open_stream(f).schema.metadata == ds.features.arrow_schema.metadata
    assert data.count_by(ds, "generation") == data.count_by(theirs, "generation")
