"""The Pythia twin's local task (recipes/pythia-mixing-calibration/build_task.py).

The twin tests what a fine-tuned model does on questions it was not trained on, starting from a
base pretrained on other text, so three things must hold of the committed data files: they are
what the builder writes (nothing edited by hand), the validation and test questions share no
question, person or creature with the training questions, and no task question shares a word
6-gram or a made-up word with the text the stand-in base model was pretrained on.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

from collapsebench.config import load_config
from conftest import REPO

RECIPE = REPO / "recipes" / "pythia-mixing-calibration"
QUESTION = re.compile(r"^(?:Question: )?(\w+) saw a (\w+)\. How many legs does a \2 have\?(?:\nAnswer:)?$")


def builder() -> Any:
    spec = importlib.util.spec_from_file_location("pythia_build_task", RECIPE / "build_task.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (RECIPE / name).read_text(encoding="utf-8").splitlines()]


def parts(question: str) -> tuple[str, str]:
    match = QUESTION.match(question)
    assert match, question
    return match.group(1), match.group(2)


def pretraining_text() -> Path:
    """The text the stand-in base model is pretrained on, as cpu.yaml's prepare step reads it."""
    step = load_config(RECIPE / "cpu.yaml").prepare[0]
    base = load_config((RECIPE / step.run).resolve())
    path = base.resolve_path(base.data.source.kwargs["path"]).resolve()
    if not path.exists():
        pytest.skip(f"{path} (WikiText-2) not beside the repository")
    return path


def test_the_data_files_are_what_the_builder_writes():
    module = builder()
    assert module.PRETRAINING_TEXT.resolve() == pretraining_text()
    for name, rows in module.build().items():
        assert read(name) == rows, name


def test_test_and_validation_questions_share_nothing_with_the_training_questions():
    legs = builder().LEGS
    train = read("task_train.jsonl")
    held_out = {"validation": [(r["question"], int(r["answer"])) for r in read("task_validation.jsonl")],
                "test": [(r["context"], int(r["choices"][r["answer"]])) for r in read("mc.jsonl")]}
    trained = {parts(r["question"]) for r in train}
    people, creatures = {p for p, _ in trained}, {c for _, c in trained}
    assert all(int(r["answer"]) == legs[parts(r["question"])[1][0]] for r in train)  # the rule holds
    questions = {r["question"] for r in train}
    for split, rows in held_out.items():
        asked = [parts(q) for q, _ in rows]
        assert all(answer == legs[creature[0]] for (_, creature), (_, answer) in zip(asked, rows)), split
        assert not {p for p, _ in asked} & people, split
        assert not {c for _, c in asked} & creatures, split
        assert not {q.removeprefix("Question: ").removesuffix("\nAnswer:") for q, _ in rows} & questions, split
        assert len(set(rows)) == len(rows) >= 200, split
    # every letter of the rule is tested, the rare ones of the training data included
    assert {c[0] for _, c in (parts(q) for q, _ in held_out["test"])} == set(legs)


def ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_no_task_text_is_in_the_base_models_pretraining_text():
    corpus = re.findall(r"\w+", pretraining_text().read_text(encoding="utf-8").lower())
    questions = [r["question"] for r in read("task_train.jsonl") + read("task_validation.jsonl")]
    questions += [r["context"] for r in read("mc.jsonl")]
    made_up = {word.lower() for q in questions for word in parts(q)}
    assert not made_up & set(corpus)
    task = set().union(*(ngrams(re.findall(r"\w+", q.lower()), 6) for q in questions))
    assert not task & ngrams(corpus, 6)
