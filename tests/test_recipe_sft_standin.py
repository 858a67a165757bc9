"""The SFT twins' stand-in base (recipes/sft-regimes/base.yaml) is pretrained on text disjoint from
the conversations the twins fine-tune and evaluate on, and every iteration of both twins fine-tunes
that base, so what a twin measures is what fine-tuning on (real or synthetic) conversations does to
a model that did not see them before."""

from __future__ import annotations

import pytest

from collapsebench.config import load_config
from conftest import REPO
from test_recipe_standins import texts

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


@pytest.mark.parametrize("twin", TWINS)
def test_the_stand_in_base_never_saw_a_word_trigram_of_the_conversations(twin, tmp_path):
    """Stricter than test_recipe_standins.py's shared-text check: not even three words in a row of the
    rendered conversations (train and validation) occur in the base's text (its whole source file,
    before the base's sampling of 600 lines)."""
    base = load_config(RECIPE / "base.yaml")
    assert base.model.init == "scratch" and not base.prepare
    if not base.resolve_path(base.data.source.path).exists():
        pytest.skip("WikiText-2 not beside the repository")
    pretraining = set().union(*(word_grams(text) for text in set().union(*texts(RECIPE / "base.yaml", tmp_path).values())))
    conversations = texts(RECIPE / twin, tmp_path)
    assert sorted(conversations) == ["data.evaluation", "data.source"]
    chat = set().union(*(word_grams(text) for text in set().union(*conversations.values())))
    assert len(chat) > 1000  # the conversations do have trigrams to share
    shared = chat & pretraining
    assert not shared, f"{len(shared)} word trigrams of the conversations are in the base's text, e.g. {sorted(shared)[:3]}"
