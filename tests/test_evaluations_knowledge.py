import json
import math

import numpy as np
import pytest

from collapsebench.cli import main as cli
from collapsebench.errors import UserError
from collapsebench.evaluations.common import read_jsonl
from collapsebench.evaluations.knowledge import build_knowledge_items, knowledge_metrics

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
    items = build_knowledge_items(DOCS, n_items=10, seed=3)
    assert len(items) == 4  # "Short one." has no sentence of five words
    for it in items:
        assert it["true"].startswith(" ") and it["false"].startswith(" ")
        sentence = it["context"] + it["true"]
        home = [d for d in DOCS if sentence in d]
        assert len(home) == 1, sentence
        assert it["false"].strip().lower() != it["true"].strip().lower()
        assert any(it["false"].strip() in d for d in DOCS if d != home[0])
    assert build_knowledge_items(DOCS, n_items=10, seed=3) == items
    assert build_knowledge_items(DOCS, n_items=10, seed=4) != items


def test_builder_scorer_picks_most_confusable_and_slices():
    seen = []

    def scorer(context, candidates):
        seen.append(candidates)
        return [len(c) for c in candidates]  # "most plausible" = longest word

    items = build_knowledge_items(DOCS, n_items=3, seed=0, scorer=scorer, n_candidates=6,
                                  slices=["geo", "sci", "lit", "x", "math"], n_words=2)
    assert len(items) == 3 and len(seen) == 3
    for it, cands in zip(items, seen):
        assert it["false"] == max(cands, key=len)
        assert len(it["true"].split()) == 2
        assert it["slice"] in {"geo", "sci", "lit", "math"}


def test_builder_needs_two_documents():
    with pytest.raises(UserError):
        build_knowledge_items(["one document only here."], n_items=1)


def test_cli_writes_items(tmp_path, capsys):
    src = tmp_path / "docs.txt"
    src.write_text("\n".join(DOCS))
    out = tmp_path / "items.jsonl"
    assert cli(["knowledge-items", str(src), str(out), "--n", "2", "--seed", "1"]) == 0
    rows = read_jsonl(out, {"context": str, "true": str, "false": str})
    assert len(rows) == 2
    assert cli(["knowledge-items", str(tmp_path / "docs.xml"), str(out)]) == 2


def test_item_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"context": "a", "true": " b", "false": " c"}) + "\n" + json.dumps({"context": "a"}))
    with pytest.raises(UserError, match=r"bad.jsonl, line 2: missing key 'true'"):
        read_jsonl(bad, {"context": str, "true": str, "false": str})
