"""Shares and budgets in tokens: replace(alpha) makes alpha the synthetic share of the tokens the
model trains on, the dataset keeps the real data's token count, and generation makes as many
tokens as the regime will draw (not as many samples as there are real documents)."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from collapsebench.config import config_from_dict
from collapsebench.loop import run_experiment
from collapsebench.models.loading import load_tokenizer
from conftest import tiny_config


def framed_tokens(tok, rows: datasets.Dataset, samples: dict[str, list[int]]) -> np.ndarray:
    """Tokens of each row as the trainer frames it: generated ids for samples, the text's tokens else."""
    texts = list(rows["text"])
    counts = [len(x) + 2 for x in tok(texts, add_special_tokens=False)["input_ids"]]
    return np.array([len(samples[i]) + 2 if i in samples else c for i, c in zip(rows["id"], counts)])


@pytest.fixture(scope="module")
def replace_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shares")
    cfg = tiny_config(tmp)
    cfg["curate"] = {"regime": {"name": "replace", "alpha": 0.5}}
    cfg["generate"]["generator"]["max_new_tokens"] = 40  # samples run longer than the real documents
    return run_experiment(config_from_dict(cfg), quiet=True)


def test_replace_alpha_is_the_synthetic_share_of_tokens(replace_run):
    run = replace_run
    tok = load_tokenizer(run.phase_dir(1, "train") / "model")
    real = datasets.load_from_disk(str(run.phase_dir(0, "curate") / "real"))
    real_tokens = int(framed_tokens(tok, real, {}).sum())
    s1 = datasets.load_from_disk(str(run.phase_dir(1, "generate") / "samples"))
    generated = dict(zip(s1["id"], s1["input_ids"]))
    d2 = datasets.load_from_disk(str(run.phase_dir(2, "curate") / "dataset"))
    tokens = framed_tokens(tok, d2, generated)
    synthetic = np.array([o == "synthetic" for o in d2["origin"]])
    share = tokens[synthetic].sum() / tokens.sum()
    longest = max(tokens.max(), max(len(x) + 2 for x in generated.values()))
    assert abs(share - 0.5) <= longest / tokens.sum(), f"synthetic token share {share:.3f} for alpha 0.5"
    assert abs(tokens.sum() - real_tokens) <= longest, f"{tokens.sum()} tokens in D(2), {real_tokens} real"
    metrics = run.read_metrics()[1]
    assert metrics["curate/tokens"] == tokens.sum()
    assert metrics["curate/synthetic_fraction_tokens"] == pytest.approx(share)
    assert metrics["curate/synthetic_fraction"] == pytest.approx(synthetic.mean())  # the share in rows


def test_generation_makes_the_tokens_the_regime_draws(replace_run):
    run = replace_run
    tok = load_tokenizer(run.phase_dir(1, "train") / "model")
    real = datasets.load_from_disk(str(run.phase_dir(0, "curate") / "real"))
    need = 0.5 * framed_tokens(tok, real, {}).sum()
    s1 = datasets.load_from_disk(str(run.phase_dir(1, "generate") / "samples"))
    made = np.array([len(x) + 2 for x in s1["input_ids"]])
    assert made.sum() >= need and made[:-1].sum() < need  # the shortest run of samples that covers it
    assert run.committed_stats(1, "generate")["target_tokens"] == int(np.ceil(need))


def test_unit_rows_counts_rows(make_ctx):
    from collapsebench.regimes.mixing import replace

    ctx = make_ctx(iteration=2)
    real = datasets.Dataset.from_dict({"text": ["a b c"] * 10, "n_tokens": [5] * 10, "origin": ["real"] * 10})
    syn = datasets.Dataset.from_dict({"text": ["a"] * 10, "n_tokens": [3] * 10, "origin": ["synthetic"] * 10})
    rows = replace(ctx, real, [syn], alpha=0.5, unit="rows")
    assert list(rows["origin"]).count("synthetic") == 5 and len(rows) == 10
    tokens = replace(ctx, real, [syn], alpha=0.5)  # tokens: 50 real tokens, 25 from each side
    assert sum(tokens["n_tokens"]) >= 50 and sum(n for n, o in zip(tokens["n_tokens"], tokens["origin"])
                                                 if o == "synthetic") == 27  # 9 samples of 3 cover 25
    budget = replace(ctx, real, [syn], alpha=0.2, size_tokens=30)
    assert sum(budget["n_tokens"]) == pytest.approx(30, abs=5)
