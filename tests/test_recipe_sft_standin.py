"""The SFT twins' stand-in base (recipes/sft-regimes/base.yaml) is pretrained on text disjoint from
the conversations the twins fine-tune and evaluate on, and every iteration of both twins fine-tunes
that base, so what a twin measures is what fine-tuning on (real or synthetic) conversations does to
a model that did not see them before."""

from __future__ import annotations

import json

import pytest

from collapsebench.config import load_config
from conftest import REPO

RECIPE = REPO / "recipes" / "sft-regimes"
TWINS = ("cpu.yaml", "cpu_stage_placement.yaml")


def word_grams(text: str, n: int = 3) -> set[tuple[str, ...]]:
    words = text.lower().split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


@pytest.mark.parametrize("twin", TWINS)
def test_every_iteration_fine_tunes_the_prepared_stand_in_base(twin):
    config = load_config(RECIPE / twin)
    assert config.model.init == "base"
    (step,) = config.prepare
    assert step.run == "base.yaml"
    assert config.resolve_path(str(config.model.base)) == config.resolve_path(step.output)


def test_the_stand_in_base_never_saw_a_word_trigram_of_the_conversations():
    base = load_config(RECIPE / "base.yaml")
    assert base.model.init == "scratch" and not base.prepare
    corpus = base.resolve_path(base.data.source.path)
    if not corpus.exists():
        pytest.skip(f"{corpus} (WikiText-2) not beside the repository")
    pretraining = word_grams(corpus.read_text())  # the whole file: a superset of the documents the base trains on
    twin = load_config(RECIPE / "cpu.yaml")
    rows = [json.loads(line) for source in (twin.data.source, twin.data.evaluation)
            for line in twin.resolve_path(source.path).read_text().splitlines()]
    assert len(rows) == 600
    chat = set().union(*(word_grams(f"{row['prompt']} {row['response']}") for row in rows))
    assert len(chat) > 1000  # the conversations do have trigrams to share
    shared = chat & pretraining
    assert not shared, f"{len(shared)} word trigrams of the conversations are in the base's text, e.g. {sorted(shared)[:3]}"
