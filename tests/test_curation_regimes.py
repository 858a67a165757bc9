"""The regimes added for the literature: size policy, grow, fresh_real, clean_fraction; preprocessors."""

import datasets
import pyarrow.parquet as pq
import pytest

from collapsebench.data import add_lineage, count_by, save
from collapsebench.errors import UserError
from collapsebench.preprocessors.text import dedup, length_filter
from collapsebench.regimes.mixing import clean_fraction, grow, replace
from collapsebench.regimes.parts import fresh_real
from test_regimes import real_data, simulate


def test_replace_real_plus_synthetic_keeps_every_real_row(make_ctx):
    sets = simulate(make_ctx, replace, alpha=0.3, size_policy="real_plus_synthetic")
    assert [len(d) for d in sets] == [100, 130, 130, 130]
    assert count_by(sets[2], "generation") == {"0": 100, "2": 30}
    with pytest.raises(UserError, match="size_policy"):
        simulate(make_ctx, replace, size_policy="bigger")


def test_grow_adds_fixed_amount_and_keeps_earlier_rows(make_ctx):
    sets = simulate(make_ctx, grow, rows=20)
    assert [len(d) for d in sets] == [100, 120, 140, 160]
    assert count_by(sets[3], "generation") == {"0": 100, "1": 20, "2": 20, "3": 20}
    assert set(sets[2]["id"]) <= set(sets[3]["id"])  # the rows added earlier stay


def test_clean_fraction_is_replace_without_its_synthetic_rows(make_ctx):
    with_syn = simulate(make_ctx, replace, alpha=0.4)
    clean = simulate(make_ctx, clean_fraction, alpha=0.4)
    assert [len(d) for d in clean] == [100, 60, 60, 60]
    for a, b in zip(with_syn, clean):
        assert set(b["id"]) == {i for i, o in zip(a["id"], a["origin"]) if o == "real"}
    # accepts the arguments of other regimes (a config switches with curate.regime.name only)
    assert len(simulate(make_ctx, clean_fraction, rows=20)[-1]) == 100


def test_fresh_real_trains_on_fresh_part_plus_regenerated_earlier_parts(make_ctx, tmp_path):
    ctx0 = make_ctx(iteration=0)
    real = real_data()
    holdout = add_lineage(datasets.Dataset.from_dict({"text": [f"h {i}" for i in range(9)]}), origin="real",
                          generation=0, prefix="hold-", parent="")
    save(real, ctx0.out_dir.parent / "curate" / "real")
    save(holdout, ctx0.out_dir.parent / "curate" / "holdout")
    gens = []
    for k in (1, 2, 3):
        ctx = make_ctx(iteration=k)
        d = fresh_real(ctx, real, gens, parts=4)
        counts = count_by(d, "origin")
        assert counts["real"] == 25 and counts.get("synthetic", 0) == 25 * (k - 1)
        fresh_ids = [i for i, o in zip(d["id"], d["origin"]) if o == "real"]
        assert fresh_ids == real["id"][25 * (k - 1): 25 * k]
        regen_parents = sorted(p for p, o in zip(d["parent"], d["origin"]) if o == "synthetic")
        assert regen_parents == sorted(real["id"][: 25 * (k - 1)])
        parts = pq.read_table(ctx.out_dir / "parts.parquet").to_pydict()
        assert set(parts["role"]) <= {"fresh", "regenerated"} and parts["role"].count("fresh") == 25
        assert {p for p, r in zip(parts["part"], parts["role"]) if r == "fresh"} == {k - 1}
        regenerated = [p for p, r in zip(parts["part"], parts["role"]) if r == "regenerated"]
        assert sorted(regenerated) == sorted(i // 25 for i in range(25 * (k - 1)))  # each stands for its parent's part
        # the previous model regenerates every document seen so far (twice here: the regime keeps one)
        seen = real["id"][: 25 * k]
        gens.append(datasets.Dataset.from_dict({
            "text": [f"regen {p}" for p in seen * 2], "parent": seen * 2,
            "id": [f"g{k:03d}-{i:08d}" for i in range(2 * len(seen))], "origin": ["synthetic"] * (2 * len(seen)),
            "generation": [k] * (2 * len(seen))}))
    with pytest.raises(UserError, match="regeneration"):
        fresh_real(make_ctx(iteration=3), real, [gens[0], gens[0].select(range(3))], parts=4)


def test_dedup_and_length_filter_count_what_they_drop(make_ctx):
    ctx = make_ctx(iteration=1)
    ds = datasets.Dataset.from_dict({"text": ["a b c", "a b c", "x", "a b c d e", "x", "y z"]})
    out = dedup(ctx, ds)
    assert out["text"] == ["a b c", "x", "a b c d e", "y z"]
    out = length_filter(ctx, out, min_words=2, max_words=4)
    assert out["text"] == ["a b c", "y z"]
    lines = (ctx.out_dir / "preprocess.jsonl").read_text().splitlines()
    assert [__import__("json").loads(line)["dropped"] for line in lines] == [2, 2]


def test_fresh_real_parts_by_a_column_mean_the_same_in_training_and_evaluation(make_ctx):
    """part_by: the parts are the values of a column of the data (a source, a slice), so the
    training parts and the held-out groups of perplexity's group_by (and the knowledge items'
    slices) are the same groups, not shuffled positions that correspond to nothing."""
    from collapsebench.prompts.builtin import parts_from_real

    slices = ["wiki", "news", "code"] * 10  # 30 rows, interleaved: parts by position would mix them
    real = add_lineage(datasets.Dataset.from_dict({"text": [f"{s} doc {i}" for i, s in enumerate(slices)],
                                                   "source": slices}), origin="real", generation=0, prefix="real-")
    ctx = make_ctx(iteration=1)
    save(real, ctx.phase_dir(0, "curate") / "real")
    first = fresh_real(ctx, real, [], part_by="source")
    assert set(first["source"]) == {"code"} and len(first) == 10  # parts in sorted order: code, news, wiki
    regen = datasets.Dataset.from_dict({"text": [f"regen {i}" for i in first["id"]], "parent": first["id"],
                                        "id": [f"g001-{i:08d}" for i in range(10)], "origin": ["synthetic"] * 10,
                                        "generation": [1] * 10})
    ctx2 = make_ctx(iteration=2)
    second = fresh_real(ctx2, real, [regen], part_by="source")
    source_of = dict(zip(real["id"], real["source"]))
    assert {source_of[i] for i, o in zip(second["id"], second["origin"]) if o == "real"} == {"news"}
    parts = pq.read_table(ctx2.out_dir / "parts.parquet").to_pydict()
    assert sorted(set(zip(parts["part"], parts["role"]))) == [(0, "regenerated"), (1, "fresh")]
    prompts = parts_from_real(make_ctx(iteration=2, phase="generate"), 20, _WordTokenizer(), part_by="source", tokens=2)
    assert set(prompts["parent"]) == set(real.filter(lambda r: r["source"] in ("code", "news"))["id"])


class _WordTokenizer:
    """Just enough of a tokenizer for prompt prefixes: words in, words out."""

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [t.split() for t in texts]}

    def batch_decode(self, ids):
        return [" ".join(x) for x in ids]
