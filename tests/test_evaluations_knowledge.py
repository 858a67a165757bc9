import json
import math

import numpy as np
import pytest

from collapsebench.cli import main as cli
from collapsebench.errors import UserError
from collapsebench.evaluations.common import read_jsonl
from collapsebench.evaluations.knowledge import knowledge_metrics
from collapsebench.evaluations.knowledge_items import build_cloze_items

DOCS = [
    "The capital of France is Paris. Water boils at one hundred degrees.",
    "The largest planet in our system is Jupiter. Bees make honey from nectar.",
    "Shakespeare wrote the play called Hamlet. The sun rises in the east.",
    "Short one.",
    "A triangle always has exactly three sides. Ice floats on liquid water.",
]


def test_metrics_accuracy_slices_and_calibration():
    lp_true = np.array([-1.0, -1.0, -5.0, -2.0])
    lp_false = np.array([-3.0, -1.5, -1.0, -2.0])  # right, right, wrong, tie (= wrong)
    m = knowledge_metrics(lp_true, lp_false, ["a", "a", "b", "b"])
    assert m["knowledge_accuracy"] == 0.5
    assert m["knowledge_accuracy/a"] == 1.0 and m["knowledge_accuracy/b"] == 0.0
    conf = [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(-4)), 0.5]
    assert m["knowledge_confidence"] == pytest.approx(np.mean(conf))
    assert m["knowledge_overconfidence"] == pytest.approx(np.mean(conf) - 0.5)
    assert 0 < m["knowledge_ece"] <= 1


def test_builder_items_come_from_the_documents():
    items = build_cloze_items(DOCS, n_items=10, seed=3)
    assert len(items) == 4  # "Short one." has no sentence of five words
    for it in items:
        assert it["true"].startswith(" ") and it["false"].startswith(" ")
        sentence = it["context"] + it["true"]
        home = [d for d in DOCS if sentence in d]
        assert len(home) == 1, sentence
        assert it["false"].strip().lower() != it["true"].strip().lower()
        assert any(it["false"].strip() in d for d in DOCS if d != home[0])
    assert build_cloze_items(DOCS, n_items=10, seed=3) == items
    assert build_cloze_items(DOCS, n_items=10, seed=4) != items


def test_builder_scorer_picks_most_confusable_and_slices():
    seen = []

    def scorer(context, candidates):
        seen.append(candidates)
        return [len(c) for c in candidates]  # "most plausible" = longest word

    items = build_cloze_items(DOCS, n_items=3, seed=0, scorer=scorer, n_candidates=6,
                                  slices=["geo", "sci", "lit", "x", "math"], n_words=2)
    assert len(items) == 3 and len(seen) == 3
    for it, cands in zip(items, seen):
        assert it["false"] == max(cands, key=len)
        assert len(it["true"].split()) == 2
        assert it["slice"] in {"geo", "sci", "lit", "math"}


def test_builder_needs_two_documents():
    with pytest.raises(UserError):
        build_cloze_items(["one document only here."], n_items=1)


def test_cli_writes_items(tmp_path, capsys):
    src = tmp_path / "docs.txt"
    src.write_text("\n".join(DOCS))
    out = tmp_path / "items.jsonl"
    assert cli(["knowledge-items", str(src), str(out), "--n", "2", "--seed", "1"]) == 0
    rows = read_jsonl(out, {"context": str, "true": str, "false": str})
    assert len(rows) == 2
    assert cli(["knowledge-items", str(tmp_path / "docs.xml"), str(out)]) == 2
    src.write_text("\n".join(PARAGRAPHS))
    assert cli(["knowledge-items", str(src), str(out), "--kind", "kr_test", "--n", "4", "--min-words", "3"]) == 0
    rows = read_jsonl(out, {"context": str, "true": str, "false": str, "edit": list})
    assert len(rows) == 4 and all(r["true"] != r["false"] for r in rows)


def test_item_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"context": "a", "true": " b", "false": " c"}) + "\n" + json.dumps({"context": "a"}))
    with pytest.raises(UserError, match=r"bad.jsonl, line 2: missing key 'true'"):
        read_jsonl(bad, {"context": str, "true": str, "false": str})


PARAGRAPHS = [
    "The old bridge over the Tamsen river was opened by Mayor Alice Grant in 1887. It carried 4200 carts a "
    "day until March 3, 1921, when the engineer Robert Hale closed it for repairs.",
    "In 1903 the Orla Company built its first mill near Kettering. By 1910 the mill employed 350 workers "
    "under the manager Edith Vance, who left for Brightwater in June 1912.",
    "The comet was seen from Lisbon on 14 August 1834 by the astronomer Tomas Ferreira. He measured its "
    "tail at 27 degrees and wrote to Carl Weber about it.",
    "Nothing here to ask about: just words in a row that say little and name nobody at all.",
]


def test_fact_items_ask_several_questions_per_paragraph_with_same_type_distractors():
    """The published knowledge test asks several questions about each paragraph's content; without an
    NER model, a documented rule finds names, numbers, years and dates, and the false answer is a
    mention of the same type from another paragraph."""
    from collapsebench.evaluations.knowledge_items import mentions, next_mention_items

    found = {(m.kind, m.text) for m in mentions(PARAGRAPHS[0])}
    assert {("name", "Mayor Alice Grant"), ("year", "1887"), ("number", "4200"), ("date", "March 3, 1921"),
            ("name", "Robert Hale")} <= found
    assert ("name", "The") not in found and ("name", "It") not in found  # sentence-initial words are not names
    items = next_mention_items(PARAGRAPHS, ["a", "a", "b", "b"], per_paragraph=5, min_context_words=3, seed=0)
    by_paragraph = [[it for it in items if it["paragraph"] == i] for i in range(4)]
    assert [len(x) for x in by_paragraph[:3]] == [5, 5, 5] and by_paragraph[3] == []
    kinds = {m.text: m.kind for p in PARAGRAPHS for m in mentions(p)}
    for it in items:
        home = PARAGRAPHS[it["paragraph"]]
        assert home.startswith(it["context"]) and home[len(it["context"]):].startswith(it["true"])
        assert it["false"].strip() != it["true"].strip() and it["false"].strip() not in home
        assert kinds[it["false"].strip()] == it["type"] == kinds[it["true"].strip()]
        assert it["slice"] == ["a", "a", "b", "b"][it["paragraph"]]
    assert next_mention_items(PARAGRAPHS, ["a", "a", "b", "b"], per_paragraph=5, min_context_words=3, seed=0) == items


def test_knowledge_builds_items_from_the_training_data_per_slice(tmp_path):
    """A registered item builder (item_builders) makes the items from the run's real training data,
    per slice; the evaluation reports accuracy per slice, on the first slice, and in total."""
    import datasets

    from collapsebench.data import add_lineage, save
    from collapsebench.evaluations.knowledge import knowledge
    from evalhelpers import eval_ctx, tiny_causal_lm

    ctx = eval_ctx(tmp_path, iteration=1)
    real = add_lineage(datasets.Dataset.from_dict({"text": PARAGRAPHS, "source": ["a", "a", "b", "b"]}),
                       origin="real", generation=0, prefix="real-")
    save(real, ctx.phase_dir(0, "curate") / "real")
    model = tiny_causal_lm(tmp_path / "lm", PARAGRAPHS)
    m = knowledge(ctx, items={"name": "next_mention", "slices": "source", "min_context_words": 3}, model=str(model))
    assert m["knowledge_items"] == 15 and m["knowledge_accuracy_first_slice"] == m["knowledge_accuracy/a"]
    written = [json.loads(line) for line in (ctx.out_dir / "knowledge_items.jsonl").read_text().splitlines()]
    assert {w["slice"] for w in written} == {"a", "b"} and all("type" in w for w in written)
    with pytest.raises(UserError, match="path or items"):
        knowledge(ctx, model=str(model))


def test_kr_items_pair_a_true_sentence_with_the_same_sentence_one_fact_changed():
    """003 App. B: a context, then a TRUE sentence and a FALSE one "with major flaws in the factual
    parts" (Table B1: "second collaboration" -> "first collaboration"). The false sentence is the true
    one with one fact edited in place; the context is the paragraph's text before it (verbatim: the
    paper's paraphrase needs a model)."""
    from collapsebench.evaluations.knowledge_items import SENTENCE_END
    from collapsebench.evaluations.kr_test import kr_items

    album = ("South of Heaven is the fourth studio album by American thrash metal band Slayer. The album "
             "was the band's second collaboration with record producer Rick Rubin.")
    paragraphs = [*PARAGRAPHS, album]
    items = kr_items(paragraphs, ["a", "a", "b", "b", "c"], per_paragraph=5, min_context_words=3, seed=0)
    assert {it["paragraph"] for it in items} == {0, 1, 2, 4}  # paragraph 3 has no fact to ask about
    for it in items:
        home = paragraphs[it["paragraph"]]
        assert it["true"][1:] in SENTENCE_END.split(home)[1:]  # a whole sentence of the paragraph, not the first
        assert home.startswith(it["context"]) and home[len(it["context"]):].lstrip().startswith(it["true"][1:])
        old, new = it["edit"]
        true = it["true"]
        assert old != new and any(true.startswith(old, i) and true[:i] + new + true[i + len(old):] == it["false"]
                                  for i in range(len(true)))  # the one fact replaced in place, nothing else
        if it["type"] == "year":
            assert 1 <= abs(int(new) - int(old)) <= 10
        if it["type"] == "number":
            assert len(new) == len(old) and sum(a != b for a, b in zip(old, new)) == 1
        if it["type"] == "name":
            assert new.lower() not in home.lower() and any(new in p for p in paragraphs if p != home)
    ordinal = [it for it in items if it["paragraph"] == 4 and it["type"] == "ordinal"]
    assert ordinal and ordinal[0]["edit"][0] == "second" and ordinal[0]["false"] != ordinal[0]["true"]
    assert ordinal[0]["context"] == "South of Heaven is the fourth studio album by American thrash metal band Slayer."
    assert kr_items(paragraphs, ["a"] * 5, min_context_words=3, seed=0) == [{**it, "slice": "a"} for it in items]


def test_knowledge_scores_kr_items_by_summed_or_per_token_log_probability(tmp_path):
    """The published scoring sums the continuation's log-probabilities (``score: sum``, the default);
    ``score: mean`` compares per-token means, so a false continuation does not win by being shorter."""
    import datasets

    from collapsebench.data import add_lineage, save
    from collapsebench.evaluations.knowledge import knowledge
    from evalhelpers import eval_ctx, tiny_causal_lm

    ctx = eval_ctx(tmp_path, iteration=1)
    real = add_lineage(datasets.Dataset.from_dict({"text": PARAGRAPHS, "source": ["a", "a", "b", "b"]}),
                       origin="real", generation=0, prefix="real-")
    save(real, ctx.phase_dir(0, "curate") / "real")
    model = str(tiny_causal_lm(tmp_path / "lm", PARAGRAPHS))
    m = knowledge(ctx, items={"name": "kr_test", "slices": "source", "min_context_words": 3}, model=model)
    written = [json.loads(line) for line in (ctx.out_dir / "knowledge_items.jsonl").read_text().splitlines()]
    assert m["knowledge_items"] == len(written) >= 10 and {w["slice"] for w in written} == {"a", "b"}
    assert all({"type", "edit", "parent", "tokens_true", "tokens_false"} <= set(w) for w in written)
    assert [w["correct"] for w in written] == [w["logprob_true"] > w["logprob_false"] for w in written]

    items = tmp_path / "lengths.jsonl"  # a long true sentence against a one-word false one
    items.write_text(json.dumps({"context": "The comet was seen from Lisbon",
                                 "true": " on 14 August 1834 by the astronomer Tomas Ferreira .", "false": " Lisbon"}))
    by_sum = knowledge(ctx, str(items), model=model, prefix="sum")
    (row,) = [json.loads(line) for line in (ctx.out_dir / "sum_items.jsonl").read_text().splitlines()]
    assert row["tokens_true"] > 5 * row["tokens_false"] and by_sum["sum_accuracy"] == 0.0  # the short one wins
    by_mean = knowledge(ctx, str(items), model=model, prefix="mean", score="mean")
    (row,) = [json.loads(line) for line in (ctx.out_dir / "mean_items.jsonl").read_text().splitlines()]
    per_token = row["logprob_true"] / row["tokens_true"] > row["logprob_false"] / row["tokens_false"]
    assert row["correct"] == per_token and by_mean["mean_accuracy"] == float(per_token)
