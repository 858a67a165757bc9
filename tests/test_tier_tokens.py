"""perplexity_tier keeps N of 3N generated tokens (the OLMo self-training study's rule), not a third
of the candidates; ``by: count`` keeps the count rule."""

from __future__ import annotations

import numpy as np
import pytest

from collapsebench.api import Verdict
from collapsebench.config import Spec
from collapsebench.errors import UserError
from collapsebench.registry import validators
from collapsebench.validators.builtin import select_tier
from collapsebench.validators.chain import apply_chain


def kept(verdicts) -> np.ndarray:
    return np.flatnonzero([v.keep for v in verdicts])


def test_low_tier_by_tokens_keeps_a_third_of_the_tokens_not_of_the_samples():
    """Low-perplexity candidates are short here: a third of the candidates holds a ninth of the
    tokens, so the token rule keeps more of them, until a third of the tokens is reached."""
    rng = np.random.default_rng(0)
    ppl = rng.permutation(np.arange(1.0, 61.0))
    tokens = (ppl * 2).astype(int)  # length grows with perplexity
    total = tokens.sum()
    by_tokens = kept(select_tier(None, ppl.tolist(), "low", tokens=tokens.tolist()))
    by_count = kept(select_tier(None, ppl.tolist(), "low", by="count", tokens=tokens.tolist()))
    assert len(by_count) == 20
    order = np.argsort(ppl)
    ranks = np.argsort(order)
    assert sorted(ranks[by_tokens]) == list(range(len(by_tokens)))  # the lowest perplexities
    got = tokens[by_tokens].sum()
    assert got >= total / 3 and got - tokens[by_tokens].max() < total / 3  # the shortest run that reaches N
    assert len(by_tokens) > len(by_count)


@pytest.mark.parametrize("tier", ["low", "middle", "high"])
def test_every_tier_holds_a_third_of_the_tokens(tier):
    rng = np.random.default_rng(1)
    ppl = rng.random(90)
    tokens = rng.integers(5, 200, size=90)
    chosen = kept(select_tier(None, ppl.tolist(), tier, tokens=tokens.tolist()))
    ranks = np.argsort(np.argsort(ppl))[chosen]
    assert list(np.sort(ranks)) == list(range(ranks.min(), ranks.max() + 1))  # a contiguous run by perplexity
    share = tokens[chosen].sum() / tokens.sum()
    assert 1 / 3 <= share < 1 / 3 + tokens.max() / tokens.sum()
    if tier == "low":
        assert ranks.min() == 0
    if tier == "high":
        assert ranks.max() == 89


@validators.register("test_tier_by_position", pool="collapsebench.validators.builtin:select_tier", override=True)
def tier_by_position(ctx, batch, tier: str = "low", fraction: float = 1 / 3, by: str = "tokens"):
    """A pooled validator whose score (the "perplexity") is the row's position."""
    return [Verdict(True, "", float(i)) for i in range(len(batch["text"]))]


def test_the_chain_hands_each_candidates_generated_tokens_to_the_selector():
    """What the quota loop passes (each row's ``new_tokens``) reaches the selector; without it the
    token rule says what is missing."""
    batch = {"text": ["a", "b", "c", "d"]}
    out = apply_chain(None, batch, [Spec(name="test_tier_by_position")], tokens=[2, 2, 2, 6])
    assert out["accepted"] == [True, True, False, False]  # 4 of the 12 tokens
    out = apply_chain(None, batch, [Spec(name="test_tier_by_position", by="count")], tokens=[2, 2, 2, 6])
    assert out["accepted"] == [True, False, False, False]  # 1 of the 4 candidates
    with pytest.raises(UserError, match="use by: count"):
        apply_chain(None, batch, [Spec(name="test_tier_by_position")])
