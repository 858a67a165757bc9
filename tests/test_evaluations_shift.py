import math
from collections import Counter

import numpy as np
import pytest

from collapsebench.errors import UserError
from collapsebench.evaluations.perplexity import log_ppl_summary
from collapsebench.evaluations.shift import count_unigrams, unigram_kl, unigram_kl_evaluation
from evalhelpers import eval_ctx, save_real, save_samples

REAL = ["the cat sat on the mat.", "a dog ran in the park!", "birds sing at dawn, loudly."] * 5


def test_unigram_kl_identical_is_zero_and_matches_hand_value():
    c = count_unigrams([REAL[:3], REAL[3:]])
    assert unigram_kl(c, Counter(c), k=0.5) == pytest.approx(0.0, abs=1e-12)
    p, q = Counter({"a": 3}), Counter({"b": 1})
    # V = {a, b}, k = 1: p = (4/5, 1/5), q = (1/3, 2/3)
    want = 0.8 * math.log(0.8 / (1 / 3)) + 0.2 * math.log(0.2 / (2 / 3))
    assert unigram_kl(p, q, k=1.0) == pytest.approx(want)
    assert unigram_kl(p, q) != pytest.approx(unigram_kl(q, p))
    with pytest.raises(UserError):
        unigram_kl(p, q, k=0)


def test_unigram_kl_evaluation_counts_in_batches(tmp_path):
    ctx = eval_ctx(tmp_path, iteration=1)
    save_real(ctx, REAL)
    save_samples(ctx, 1, list(REAL))
    assert unigram_kl_evaluation(ctx, read_batch=4)["unigram_kl_synthetic_real"] == pytest.approx(0.0, abs=1e-12)
    save_samples(ctx, 2, ["the the the the cat"] * 10)
    m = unigram_kl_evaluation(eval_ctx(tmp_path, iteration=2), read_batch=3)
    assert m["unigram_kl_synthetic_real"] > 0.5
    assert m["unigram_vocab_synthetic"] == 2.0


def test_log_ppl_summary():
    lp = np.array([-4.0, -9.0, 0.0])
    n = np.array([2, 3, 0])  # an empty document is skipped
    m = log_ppl_summary(lp, n)
    assert m["ref_logppl_mean"] == pytest.approx(2.5)
    assert m["ref_logppl_median"] == pytest.approx(2.5)
    assert m["ref_ppl"] == pytest.approx(math.exp(13 / 5))
