"""The ground-truth language: exact probabilities, sampling, determinism, and the exact metrics."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from collapsebench.api import PhaseContext
from collapsebench.config import config_from_dict
from collapsebench.errors import UserError
from collapsebench.evaluations.language import (
    doc_length_pmf,
    expected_distinct,
    kl_from_samples,
    kl_metrics,
    rare_mask,
    spec_from_config,
    tail_stats,
    true_entropy,
    word_counts,
)
from collapsebench.sources.language import (
    LanguageSpec,
    build_language,
    escape_logprob,
    language_spec,
    log_prob,
    parse,
    render,
    sample,
    score,
)

TINY = LanguageSpec(vocab_size=5, n_topics=2, zipf_exponent=1.0, topic_zipf_exponent=1.0, shared_weight=0.3,
                    words_per_sentence_min=1, words_per_sentence_max=2, words_per_sentence_stop=0.4,
                    sentences_per_doc_min=1, sentences_per_doc_max=2, sentences_per_doc_stop=0.5,
                    escape_prob=0.01)
SMALL = LanguageSpec(vocab_size=200, n_topics=3, words_per_sentence_max=8, sentences_per_doc_max=5)


def all_documents(spec: LanguageSpec) -> list[str]:
    """Every document the language can write (small specs only)."""
    lang = build_language(spec)
    v = range(spec.vocab_size)
    sentences = [list(ws) for n in range(spec.words_per_sentence_min, spec.words_per_sentence_max + 1)
                 for ws in itertools.product(v, repeat=n)]
    return [render(lang, list(doc)) for n in range(spec.sentences_per_doc_min, spec.sentences_per_doc_max + 1)
            for doc in itertools.product(sentences, repeat=n)]


def test_probabilities_of_all_documents_sum_to_one():
    docs = all_documents(TINY)
    assert len(docs) == len(set(docs)) == 30 + 30 * 30
    sc = score(TINY, docs)
    assert sc.valid.all()
    assert math.fsum(np.exp(sc.log_prob_language)) == pytest.approx(1.0, abs=1e-12)
    # the mixture puts 1 - eps on the language plus the escape branch's mass on these strings
    eps = TINY.escape_prob
    escape_mass = math.fsum(math.exp(escape_logprob(d)) for d in docs)
    assert math.fsum(np.exp(sc.log_prob)) == pytest.approx(1 - eps + eps * escape_mass, abs=1e-12)
    posterior = sc.topic_posterior
    assert np.allclose(posterior.sum(axis=1), 1.0)


def test_sampling_frequencies_match_exact_probabilities():
    n = 20_000
    texts = sample(TINY, n, seed=11)
    counts = Counter(texts)
    docs = list(counts)
    expected = np.exp(score(TINY, docs).log_prob_language) * n
    big = expected >= 5
    observed = np.array([counts[d] for d in docs])
    f_obs = np.r_[observed[big], observed[~big].sum()]
    f_exp = np.r_[expected[big], n - expected[big].sum()]
    assert big.sum() > 50
    assert stats.chisquare(f_obs, f_exp).pvalue > 1e-3
    # and a wrong law is detected by the same test: the samples of a different topic mixture
    other = Counter(sample(TINY.model_copy(update={"shared_weight": 0.9}), n, seed=11))
    f_other = np.r_[np.array([other[d] for d in docs])[big], n - sum(other[d] for d in np.array(docs)[big])]
    assert stats.chisquare(f_other, f_exp).pvalue < 1e-6


def test_parse_inverts_render_and_rejects_near_misses():
    lang = build_language(SMALL)
    for text in sample(SMALL, 200, seed=3):
        sentences = parse(lang, text)
        assert sentences is not None and render(lang, sentences) == text
    text = sample(SMALL, 1, seed=4)[0]
    first = text.split(" ")[0]
    near_misses = [text + " ", " " + text, text.replace(" ", "  ", 1), text[:-1], text.lower(),
                   text.replace(first, first.lower(), 1), "\u212a" + text[1:] if text[0] == "K" else text + "x"]
    for bad in near_misses:
        assert parse(lang, bad) is None, bad


@pytest.mark.parametrize("text", ["", "hello world.", "Ne ne", "ne ne.", "日本語\n", "\ud800", "A. B.", "x" * 5000])
def test_strings_outside_the_support_have_finite_escape_logprob(text):
    lp = log_prob(SMALL, text)
    assert np.isfinite(lp)
    assert lp == pytest.approx(math.log(SMALL.escape_prob) + escape_logprob(text), rel=1e-12)
    # the escape branch is below log(eps * P(empty escape string)), however short the string
    assert lp <= math.log(SMALL.escape_prob) + escape_logprob("") + 1e-12


def test_escape_law_is_normalised_over_lengths_and_characters():
    # sum over lengths n of P(len = n) * (sum over characters of p(c))^n = 1: check the per-character mass
    from collapsebench.sources import language as L

    per_char = 96 * math.exp(L.LOG_ESCAPE_COMMON) + (L.N_CODE_POINTS - 96) * math.exp(L.LOG_ESCAPE_OTHER)
    assert per_char == pytest.approx(1.0, abs=1e-12)
    assert math.exp(escape_logprob("")) == pytest.approx(L.ESCAPE_STOP)


def test_same_spec_same_language_different_seed_different_language():
    a, b = build_language(LanguageSpec(language_seed=7)), build_language(LanguageSpec(language_seed=7))
    assert a.words == b.words and np.array_equal(a.log_word, b.log_word)
    c = build_language(LanguageSpec(language_seed=8))
    assert c.words != a.words and not np.array_equal(c.log_word, a.log_word)
    assert len(set(a.words)) == len(a.words)
    assert sample(SMALL, 20, seed=5) == sample(SMALL, 20, seed=5) != sample(SMALL, 20, seed=6)


def test_bad_knobs_are_user_errors():
    with pytest.raises(UserError, match="zipf_exponent"):
        language_spec({"zipf_exponnt": 1.0})
    with pytest.raises(UserError, match="words_per_sentence_max"):
        language_spec({"words_per_sentence_min": 5, "words_per_sentence_max": 2})
    with pytest.raises(UserError, match="vocab_size"):
        language_spec({"vocab_size": 0})


def test_entropy_exact_decomposition_matches_enumeration_and_monte_carlo():
    docs = all_documents(TINY)
    lp = score(TINY, docs).log_prob_language
    exact = -math.fsum(np.exp(lp) * lp)
    h = true_entropy(TINY, n_samples=4000, seed=2)
    assert h["entropy_per_doc"] == pytest.approx(exact, abs=4 * h["entropy_per_doc_se"] + 1e-9)
    big = true_entropy(SMALL, n_samples=2000, seed=2)
    assert abs(big["entropy_per_doc"] - big["mc_entropy_per_doc"]) < 4 * big["mc_entropy_per_doc_se"]
    assert big["entropy_per_word"] == pytest.approx(big["entropy_per_doc"] / big["words_per_doc"])


def test_doc_length_pmf_is_exact():
    lang = build_language(SMALL)
    pmf = doc_length_pmf(lang)
    assert pmf.sum() == pytest.approx(1.0)
    counts = np.bincount(score(SMALL, sample(SMALL, 5000, seed=9)).n_words, minlength=pmf.size)
    assert stats.chisquare(counts[pmf * 5000 >= 5], pmf[pmf * 5000 >= 5] * 5000 * counts[pmf * 5000 >= 5].sum()
                           / (pmf[pmf * 5000 >= 5] * 5000).sum()).pvalue > 1e-3


# ----------------------------------------------------------------------------------------------- KL


def test_kl_estimator_on_closed_form_categoricals():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(10))
    q = 0.7 * p + 0.3 * rng.dirichlet(np.ones(10))
    x = rng.choice(10, size=20_000, p=p)
    est = kl_from_samples(np.log(p[x]), np.log(q[x]), np.full(x.size, 2))
    exact = float(np.sum(p * np.log(p / q)))
    assert abs(est["per_doc"] - exact) < 4 * est["per_doc_se"]
    assert est["per_word"] == pytest.approx(est["per_doc"] / 2)
    assert est["per_word_se"] == pytest.approx(est["per_doc_se"] / 2, rel=1e-6)


def test_kl_is_zero_for_the_truth_and_grows_with_the_perturbation():
    one_topic = SMALL.model_copy(update={"n_topics": 1})
    truth = sample(one_topic, 3000, seed=1)
    p = score(one_topic, truth)
    same = kl_from_samples(p.log_prob, score(one_topic, truth).log_prob, p.n_words)
    assert same["per_doc"] == 0.0
    kls = []
    for zipf in (1.2, 1.5):
        model = one_topic.model_copy(update={"zipf_exponent": zipf})
        est = kl_from_samples(p.log_prob, score(model, truth).log_prob, p.n_words)
        # closed form with one topic and equal length laws: KL per word = KL of the word laws
        wp, wq = np.exp(build_language(one_topic).log_word[0]), np.exp(build_language(model).log_word[0])
        exact_per_word = float(np.sum(wp * np.log(wp / wq)))
        assert est["per_doc"] > 4 * est["per_doc_se"]
        assert abs(est["per_word"] - exact_per_word) < 4 * est["per_word_se"]
        kls.append(est["per_doc"])
        reverse_samples = sample(model, 3000, seed=2)
        q = score(model, reverse_samples)
        rev = kl_from_samples(q.log_prob, score(one_topic, reverse_samples).log_prob, q.n_words)
        assert abs(rev["per_word"] - float(np.sum(wq * np.log(wq / wp)))) < 4 * rev["per_word_se"]
    assert kls[1] > kls[0]


def test_kl_metrics_split_out_samples_outside_the_language():
    spec = SMALL.model_copy(update={"zipf_exponent": 1.3})
    truth = sample(SMALL, 500, seed=1)
    model_samples = sample(spec, 300, seed=2) + ["not a document", "Ne ne ne"]
    p, q = score(SMALL, truth), score(SMALL, model_samples)
    qq = score(spec, model_samples)
    out = kl_metrics(p.log_prob, score(spec, truth).log_prob, p.n_words, qq.log_prob, q.log_prob, q.n_words,
                     q.valid)
    d = qq.log_prob - q.log_prob
    assert out["lang_model_samples_valid_fraction"] == pytest.approx(300 / 302)
    assert out["lang_kl_model_truth_invalid_per_doc"] == pytest.approx(d[300:].sum() / 302)
    assert out["lang_kl_model_truth_per_doc"] == pytest.approx(d.mean())
    assert out["lang_model_xent_per_doc"] == pytest.approx(-score(spec, truth).log_prob.mean())
    assert out["lang_kl_truth_model_per_doc"] > 0


# ---------------------------------------------------------------------------------------------- tails


def test_tail_metric_detects_a_sample_without_its_tail():
    lang = build_language(SMALL)
    topic_p = np.exp(lang.log_topic)
    word_p = topic_p @ np.exp(lang.log_word)
    word_mask, topic_mask = rare_mask(word_p, 0.9), rare_mask(topic_p, 0.75)
    assert word_mask.sum() == 20 and topic_mask.sum() == 1
    texts = sample(SMALL, 3000, seed=4)
    sc = score(SMALL, texts)
    full = tail_stats(*word_counts(lang, texts), word_mask, sc.topic_posterior, topic_mask)
    tail_mass = float(word_p[word_mask].sum())
    assert full["tail_word_freq"] == pytest.approx(tail_mass, rel=0.15)
    assert full["tail_topic_mass"] == pytest.approx(float(topic_p[topic_mask].sum()), abs=0.03)
    assert full["tail_distinct_words"] == pytest.approx(expected_distinct(lang, 3000, word_mask), abs=2)
    assert full["unknown_word_freq"] == 0.0
    rare_words = {lang.words[i] for i in np.flatnonzero(word_mask)}
    keep = [t for t, topic in zip(texts, sc.topic_posterior.argmax(axis=1))
            if not topic_mask[topic] and not rare_words & {w.lower().rstrip(".") for w in t.split()}]
    assert len(keep) > 1000
    cut = tail_stats(*word_counts(lang, keep), word_mask, score(SMALL, keep).topic_posterior, topic_mask)
    assert cut["tail_word_freq"] == 0.0 and cut["tail_distinct_words"] == 0
    assert cut["tail_topic_mass"] < 0.2 * full["tail_topic_mass"]


def test_expected_distinct_matches_simulation():
    lang = build_language(SMALL)
    mask = np.ones(SMALL.vocab_size, dtype=bool)
    counts = [np.count_nonzero(word_counts(lang, sample(SMALL, 30, seed=s))[0]) for s in range(40)]
    assert np.mean(counts) == pytest.approx(expected_distinct(lang, 30, mask), abs=4 * np.std(counts) / math.sqrt(40))


# ------------------------------------------------------------------------------- data source and config


def make_ctx(tmp_path, source, iteration=0, phase="curate"):
    config = config_from_dict({"name": "t", "iterations": 1, "data": {"source": source}})
    out = tmp_path / f"iter_{iteration:03d}" / f"{phase}.tmp"
    out.mkdir(parents=True)
    return PhaseContext(config=config, run_dir=tmp_path, iteration=iteration, phase=phase, seed=123, out_dir=out)


def test_data_source_builds_a_dataset_of_the_language(tmp_path):
    from collapsebench.registry import data_sources

    source = {"name": "ground_truth_language", "n_documents": 2500, "vocab_size": 300}
    ctx = make_ctx(tmp_path, source)
    fn = data_sources.get("ground_truth_language")
    ds = fn(ctx, **ctx.config.data.source.kwargs)
    assert len(ds) == 2500 and set(ds.column_names) == {"text", "topic"}
    spec = spec_from_config(ctx.config)
    assert spec.vocab_size == 300
    assert ds["text"] == sample(spec, 2500, seed=123)
    assert score(spec, ds["text"]).valid.all()
    with pytest.raises(UserError, match="did you mean 'vocab_size'"):
        fn(ctx, n_documents=10, vocab_sise=10)


def test_language_tails_evaluation_on_a_run_directory(tmp_path):
    import datasets

    from collapsebench.evaluations.language import language_tails

    ctx = make_ctx(tmp_path, {"name": "ground_truth_language", "vocab_size": 200, "n_topics": 3},
                   iteration=1, phase="evaluate")
    spec = spec_from_config(ctx.config)
    lang = build_language(spec)
    rare = set(np.array(lang.words)[rare_mask(np.exp(lang.log_topic) @ np.exp(lang.log_word), 0.9)])
    texts = [t for t in sample(spec, 600, seed=8) if not rare & {w.lower().rstrip(".") for w in t.split()}]
    texts.append("garbage out of the language")
    datasets.Dataset.from_dict({"text": texts}).save_to_disk(str(tmp_path / "iter_001" / "generate" / "samples"))
    assert len(texts) > 100
    out = language_tails(ctx)
    assert out["lang_tail_word_freq_model"] == 0.0 and out["lang_tail_word_ratio"] == 0.0
    assert out["lang_tail_word_freq_true_sample"] == pytest.approx(out["lang_tail_word_freq_exact"], rel=0.2)
    assert out["lang_tail_words_total"] == 20 and out["lang_tail_distinct_words_model"] == 0
    assert out["lang_tail_distinct_words_true_sample"] == pytest.approx(out["lang_tail_distinct_words_exact"], abs=3)
    assert out["lang_samples_valid_fraction"] == pytest.approx(1 - 1 / len(texts))
    assert out["lang_unknown_word_freq_model"] > 0


def test_language_evaluations_refuse_another_data_source(tmp_path):
    ctx = make_ctx(tmp_path, {"name": "local", "path": "x.jsonl"})
    with pytest.raises(UserError, match="ground_truth_language"):
        spec_from_config(ctx.config)


def test_language_kl_evaluation_with_a_tiny_model(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("collapsebench.models.scoring")
    import datasets
    from transformers import GPT2Config, GPT2LMHeadModel

    from collapsebench.evaluations.language import language_kl
    from collapsebench.models.tokenizer import train_tokenizer

    ctx = make_ctx(tmp_path, {"name": "ground_truth_language", "vocab_size": 200, "n_topics": 3},
                   iteration=1, phase="evaluate")
    spec = spec_from_config(ctx.config)
    model_dir = tmp_path / "iter_001" / "train" / "model"
    train_tokenizer(datasets.Dataset.from_dict({"text": sample(spec, 300, seed=0)}), "text", 300, model_dir)
    GPT2LMHeadModel(GPT2Config(vocab_size=300, n_layer=1, n_head=2, n_embd=16, n_positions=256)).save_pretrained(
        str(model_dir))
    # the "model samples" are the very truth samples the evaluation draws: the two KL estimates then
    # average the same log-ratio with opposite signs
    truth = sample(spec, 40, seed=ctx.seed)
    datasets.Dataset.from_dict({"text": truth}).save_to_disk(str(tmp_path / "iter_001" / "generate" / "samples"))
    out = language_kl(ctx, n_true=40, entropy_samples=200)
    assert out["lang_kl_model_truth_per_doc"] == pytest.approx(-out["lang_kl_truth_model_per_doc"], rel=1e-9)
    # an untrained model is far from the truth: its cross-entropy is well above the entropy floor
    assert out["lang_kl_truth_model_per_doc"] > 4 * out["lang_kl_truth_model_per_doc_se"]
    assert out["lang_model_xent_per_word"] > out["lang_entropy_per_word"]
    assert out["lang_model_samples_valid_fraction"] == 1.0 and out["lang_n_model_samples"] == 40
    assert out["lang_kl_model_truth_invalid_per_doc"] == 0.0
    assert (ctx.out_dir / "language_kl.npz").exists()
