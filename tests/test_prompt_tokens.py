"""Honest synthetic shares: the prompt a sample keeps (keep_prompt) is real text, so only the
generated tokens count as synthetic, in synthetic_fraction_tokens and in the regimes' budgets;
curate reports the prompts' share apart (prompt_fraction_tokens)."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from collapsebench.config import config_from_dict
from collapsebench.loop import run_experiment
from conftest import tiny_config
from generation_fixtures import gen_ctx


def test_samples_count_the_tokens_of_the_prompt_they_keep(gen_base, tmp_path):
    from collapsebench.generators.quota import read_prompts, run_quota, write_raw_shard
    from collapsebench.models.loading import load_tokenizer

    tok = load_tokenizer(gen_base / "iter_001" / "train" / "model")

    def write_raw(r, prompts, jobs):
        for job in jobs:
            rows = read_prompts(prompts, job.lo, job.hi)
            texts = [" the cat sat"] * (job.hi - job.lo)
            write_raw_shard(job.path, rows["prompt"], rows["parent"], texts,
                            tok(texts, add_special_tokens=False)["input_ids"], 1)

    for keep in (True, False):
        ctx = gen_ctx(gen_base, tmp_path / str(keep), num_samples=6, prompts={"name": "real_prefix", "tokens": 5})
        run_quota(ctx, write_raw, tokenizer=tok, keep_prompt=keep)
        s = datasets.load_from_disk(str(ctx.out_dir / "samples"))
        prompt_ids = tok(list(s["prompt"]), add_special_tokens=False)["input_ids"]
        generated = len(tok(" the cat sat", add_special_tokens=False)["input_ids"]) + 2  # + BOS, EOS
        assert list(s["n_prompt_tokens"]) == ([len(p) for p in prompt_ids] if keep else [0] * 6)
        assert all(n - p == generated for n, p in zip(s["n_tokens"], s["n_prompt_tokens"]))
        assert all(len(ids) + 2 == n for ids, n in zip(s["input_ids"], s["n_tokens"]))


def _data(n_real: int, n_syn: int, prompt: int, generated: int):
    real = datasets.Dataset.from_dict({"text": ["r"] * n_real, "n_tokens": [20] * n_real, "n_prompt_tokens": [0] * n_real,
                                       "generation": [0] * n_real, "origin": ["real"] * n_real})
    syn = datasets.Dataset.from_dict({"text": ["s"] * n_syn, "n_tokens": [prompt + generated] * n_syn,
                                      "n_prompt_tokens": [prompt] * n_syn, "generation": [1] * n_syn,
                                      "origin": ["synthetic"] * n_syn})
    return real, syn


def test_budgets_and_shares_count_generated_tokens_only(make_ctx):
    """A K-prefix sample of 5 prompt and 15 generated tokens: replace(alpha=1) draws the budget in
    generated tokens, and the dataset is 75% synthetic, 25% prompt, not 100% synthetic."""
    from collapsebench.models.tokens import token_total
    from collapsebench.regimes.mixing import replace

    ctx = make_ctx(iteration=2)
    real, syn = _data(10, 30, prompt=5, generated=15)
    d = replace(ctx, real, [syn], alpha=1.0, size_tokens=150)
    generated = np.asarray(d["n_tokens"]) - np.asarray(d["n_prompt_tokens"])
    assert generated.sum() >= 150 and generated.sum() - 15 < 150  # the shortest run of samples that covers it
    total = token_total(ctx, d)
    assert total.synthetic / total.tokens == pytest.approx(0.75)
    assert total.prompt / total.tokens == pytest.approx(0.25)
    half = replace(ctx, real, [syn], alpha=0.5, size_tokens=200)
    t = token_total(ctx, half)
    assert t.synthetic == 105 and t.tokens - t.synthetic - t.prompt == 100  # 7 samples cover 100 generated


@pytest.mark.slow
def test_a_prefix_run_reports_the_prompt_share_apart(tmp_path):
    """The whole loop with K = 4 token prefixes kept and alpha = 1: the curated data of iteration 2
    is made of samples alone, yet its synthetic token share is below 1 by the prompts' share."""
    cfg = tiny_config(tmp_path)
    cfg["curate"] = {"regime": {"name": "replace", "alpha": 1.0}}
    cfg["generate"]["prompts"] = {"name": "real_prefix", "tokens": 4}
    cfg["evaluate"] = {"evaluations": ["sample_stats"]}
    run = run_experiment(config_from_dict(cfg), quiet=True)
    m = run.read_metrics()[1]
    d2 = datasets.load_from_disk(str(run.phase_dir(2, "curate") / "dataset"))
    prompt = int(np.sum(d2["n_prompt_tokens"]))
    assert m["curate/synthetic_fraction"] == 1.0 and prompt > 0
    assert m["curate/prompt_fraction_tokens"] == pytest.approx(prompt / m["curate/tokens"])
    assert m["curate/synthetic_fraction_tokens"] == pytest.approx(1 - prompt / m["curate/tokens"])
