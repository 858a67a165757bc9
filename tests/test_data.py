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
