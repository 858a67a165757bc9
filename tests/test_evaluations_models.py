"""Evaluations that score with a model: a tiny GPT-2 trained from scratch, for a few seconds, on facts."""

import json

import numpy as np
import pandas as pd
import pytest

from collapsebench.evaluations.calibration import calibration
from collapsebench.evaluations.knowledge import knowledge
from collapsebench.evaluations.knowledge_items import build_cloze_items
from collapsebench.evaluations.perplexity import reference_perplexity
from collapsebench.evaluations.qualitative import qualitative
from evalhelpers import eval_ctx, save_samples, tiny_causal_lm

CAPITALS = {"france": "paris", "italy": "rome", "spain": "madrid", "japan": "tokyo", "egypt": "cairo",
            "peru": "lima", "kenya": "nairobi", "norway": "oslo", "chile": "santiago", "cuba": "havana"}
FACTS = [f"the capital of {c} is {k} ." for c, k in CAPITALS.items()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("facts")
    ctx = eval_ctx(root, iteration=1)
    tiny_causal_lm(ctx.phase_dir(1, "train") / "model", FACTS, train_steps=300)
    tiny_causal_lm(ctx.phase_dir(2, "train") / "model", FACTS, train_steps=0, seed=1)  # untrained
    items = root / "facts.jsonl"
    countries = list(CAPITALS)
    with items.open("w") as fh:
        for i, c in enumerate(countries):
            wrong = CAPITALS[countries[(i + 3) % len(countries)]]
            fh.write(json.dumps({"context": f"the capital of {c} is", "true": f" {CAPITALS[c]}",
                                 "false": f" {wrong}", "slice": "europe" if i in (0, 1, 2, 7) else "other"}) + "\n")
    return root, items


def test_knowledge_of_a_model_trained_on_the_facts_beats_chance(trained):
    root, items = trained
    m1 = knowledge(eval_ctx(root, iteration=1), "facts.jsonl")
    assert m1["knowledge_accuracy"] >= 0.9  # chance is 0.5
    assert m1["knowledge_accuracy/europe"] >= 0.75 and "knowledge_accuracy/other" in m1
    assert m1["knowledge_items"] == 10.0
    assert m1["knowledge_ece_alert_level"] == 0.0
    rows = [json.loads(line) for line in (root / "run" / "iter_001" / "evaluate.tmp" / "knowledge_items.jsonl").open()]
    assert len(rows) == 10 and np.mean([r["correct"] for r in rows]) == m1["knowledge_accuracy"]
    assert all(r["correct"] == (r["logprob_true"] > r["logprob_false"]) for r in rows)


def test_calibration_on_multiple_choice_file(trained):
    root, _ = trained
    with (root / "mc.jsonl").open("w") as fh:
        for i, (c, k) in enumerate(CAPITALS.items()):
            choices = [" " + v for v in list(CAPITALS.values())[:4]]
            if " " + k not in choices:
                choices[i % 4] = " " + k
            fh.write(json.dumps({"context": f"the capital of {c} is", "choices": choices,
                                 "answer": choices.index(" " + k)}) + "\n")
    trained_m = calibration(eval_ctx(root, iteration=1), "mc.jsonl")
    assert trained_m["calibration_accuracy"] >= 0.8  # chance is 0.25
    assert trained_m["calibration_overconfidence"] == pytest.approx(
        trained_m["calibration_confidence"] - trained_m["calibration_accuracy"])
    untrained = calibration(eval_ctx(root, iteration=2), "mc.jsonl")
    assert untrained["calibration_confidence"] < trained_m["calibration_confidence"]


def test_builder_with_model_scorer_picks_plausible_distractor(trained):
    root, _ = trained
    from collapsebench.evaluations.knowledge_items import model_scorer

    fillers = ["of", "the", "is", "capital"]
    # each document: a fact, then a sentence ending in a function word (an implausible distractor)
    docs = [f"{f} the {c} of capital is the {fillers[i % 4]} ." for i, (f, c) in enumerate(zip(FACTS, CAPITALS))]
    scorer = model_scorer(root / "run" / "iter_001" / "train" / "model")
    offered = []

    def recording(context, candidates):
        offered.append(candidates)
        return scorer(context, candidates)

    items = build_cloze_items(docs, n_items=6, seed=0, scorer=recording, n_candidates=8, min_words=6)
    fact_items = [it for it in items if it["context"].startswith("the capital of")]
    assert fact_items, items
    assert any(any(c.strip() in fillers for c in cands) for cands in offered)
    # after "the capital of X is" the trained model finds another city more plausible than a function word
    assert all(it["false"].strip() in CAPITALS.values() for it in fact_items)


def test_reference_perplexity_per_document(trained):
    root, _ = trained
    ctx = eval_ctx(root, iteration=2)
    in_dist = FACTS[:4]
    shuffled = [" ".join(reversed(f.split())) for f in FACTS[:4]]
    save_samples(ctx, 2, in_dist + shuffled)
    m = reference_perplexity(ctx, reference=1, batch_size=3, read_batch=3)
    table = pd.read_parquet(ctx.out_dir / "ref_perplexity.parquet")
    assert len(table) == 8 and list(table["id"]) == [f"s2-{i}" for i in range(8)]
    assert (table["generation"] == 2).all()
    assert table["log_ppl"].iloc[:4].max() < table["log_ppl"].iloc[4:].min()  # facts fit the reference model
    assert m["ref_logppl_mean"] == pytest.approx(table["log_ppl"].mean())
    assert m["ref_logppl_median"] == pytest.approx(table["log_ppl"].median())
    assert m["ref_ppl"] == pytest.approx(np.exp(-table["logprob"].sum() / table["tokens"].sum()))


def test_qualitative_greedy_answers_are_saved_and_repeatable(trained):
    root, _ = trained
    ctx = eval_ctx(root, iteration=1)
    prompts = ["the capital of france is", "the capital of japan is"]
    m = qualitative(ctx, prompts=prompts, max_new_tokens=3)
    rows = [json.loads(line) for line in (ctx.out_dir / "qualitative.jsonl").open()]
    assert m["qualitative_prompts"] == 2.0
    assert [r["prompt"] for r in rows] == prompts and all(r["iteration"] == 1 for r in rows)
    assert rows[0]["completion"].split()[0] == "paris" and rows[1]["completion"].split()[0] == "tokyo"
    qualitative(ctx, prompts=prompts, max_new_tokens=3)
    again = [json.loads(line) for line in (ctx.out_dir / "qualitative.jsonl").open()]
    assert again == rows
