"""Validators: verdict conventions, the chain, the Jinja sandbox, a classifier threshold, perplexity tiers."""

import numpy as np
import pytest

from collapsebench.config import Spec
from collapsebench.errors import UserError
from collapsebench.validators import builtin as VB
from collapsebench.validators import chain as V
from generation_fixtures import gen_ctx


@pytest.fixture
def ctx(gen_base, tmp_path):
    return gen_ctx(gen_base, tmp_path)


def short_only(ctx, batch, max_chars=10):
    """A plain Python validator (used as module:function)."""
    return [(len(t) <= max_chars, f"{len(t)} chars") for t in batch["text"]]


SEEN = []


def record(ctx, batch):
    SEEN.append(list(batch["text"]))
    return [V.keep(score=len(t)) for t in batch["text"]]


def test_verdict_conventions():
    assert V.as_verdict(True, "v") == V.Verdict(True)
    assert V.as_verdict((False, "too long", 3), "v") == V.Verdict(False, "too long", 3.0)
    assert not V.as_verdict(np.bool_(False), "v").keep
    with pytest.raises(UserError, match="expected a Verdict"):
        V.as_verdict("yes", "v")


def test_chain_runs_python_functions_in_order(ctx):
    texts = ["short", "a much longer text", "tiny", "another long one here"]
    specs = [Spec(name="test_generation_validators:short_only", max_chars=6),
             Spec(name="test_generation_validators:record")]
    SEEN.clear()
    out = V.apply_chain(ctx, {"text": texts, "prompt": [""] * 4, "parent": [""] * 4}, specs)
    assert out["accepted"] == [True, False, True, False]
    assert out["rejected_by"] == ["", "short_only", "", "short_only"] and out["reason"][1] == "18 chars"
    assert SEEN == [["short", "tiny"]]  # the second validator sees only the survivors
    assert out["score_record"][0] == 5 and np.isnan(out["score_record"][1])
    assert V.validator_keys([Spec(name="jinja", template="x"), Spec(name="jinja", template="y")]) == ["jinja", "jinja_2"]


def test_jinja_validator_and_sandbox(ctx):
    batch = {"text": ["user: hi\nassistant: hello", "assistant: no user", "user: alone"], "prompt": ["", "", ""]}
    out = VB.jinja(ctx, batch, template="{{ text.startswith('user:') and 'assistant:' in text }}")
    assert [v.keep for v in out] == [True, False, False]
    scored = VB.jinja(ctx, batch, template="{{ text | length }}", threshold=18)
    assert [v.keep for v in scored] == [True, True, False] and scored[2].score == 11
    for bad in ("{{ ''.__class__.__mro__ }}", "{{ text.__class__.__subclasses__() }}"):
        with pytest.raises(UserError, match="failed for every row.*unsafe"):
            VB.jinja(ctx, batch, template=bad)
    with pytest.raises(UserError, match="true/false or a number"):
        VB.jinja(ctx, batch, template="{{ text }}")
    with pytest.raises(UserError, match="columns: text, prompt"):
        VB.jinja(ctx, batch, template="{{ answer }}")
    # a template that fails on some rows only rejects those rows, with the error as the reason
    partial = VB.jinja(ctx, batch, template="{{ 1 / (text | length - 11) > 0 }}")
    assert [v.keep for v in partial] == [True, True, False]
    assert partial[2].reason.startswith("template error: ZeroDivisionError")


def test_classifier_threshold(ctx, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, GPT2Config

    from collapsebench.models.loading import load_tokenizer

    tok = load_tokenizer(ctx.model_dir())
    torch.manual_seed(1)
    cfg = GPT2Config(vocab_size=len(tok), n_layer=1, n_head=2, n_embd=32, num_labels=2,
                     id2label={0: "bad", 1: "good"}, label2id={"bad": 0, "good": 1}, pad_token_id=tok.pad_token_id)
    clf = AutoModelForSequenceClassification.from_config(cfg).eval()
    clf.save_pretrained(str(tmp_path / "clf"))
    tok.save_pretrained(str(tmp_path / "clf"))
    texts = ctx.real()["text"][:30]
    with torch.no_grad():
        enc = tok(texts, padding=True, return_tensors="pt")
        expected = torch.softmax(clf(**enc).logits, -1)[:, 1].numpy()
    t = float(np.median(expected))
    out = VB.classifier(ctx, {"text": texts}, model=str(tmp_path / "clf"), label="good", threshold=t)
    assert np.allclose([v.score for v in out], expected, atol=1e-5)
    assert [v.keep for v in out] == [s >= t for s in expected] and 10 <= sum(v.keep for v in out) <= 20
    with pytest.raises(UserError, match="not in"):
        VB.classifier(ctx, {"text": texts}, model=str(tmp_path / "clf"), label="great")


@pytest.mark.parametrize("tier", ["low", "middle", "high"])
def test_perplexity_tier_keeps_the_intended_third(ctx, tier):
    from collapsebench.models.loading import load_causal_lm
    from collapsebench.models.scoring import sequence_logprobs

    texts = ctx.real()["text"][:30]
    model, tok = load_causal_lm(ctx.model_dir())
    total, count = sequence_logprobs(model, tok, texts)
    ppl = np.exp(-total / count)
    out = V.apply_chain(ctx, {"text": texts}, [Spec(name="perplexity_tier", tier=tier, by="count")])  # the batch is the pool
    kept = np.array(out["accepted"])
    assert kept.sum() == 10 and np.allclose(out["score_perplexity_tier"], ppl)
    ranks = np.argsort(np.argsort(ppl))
    assert set(ranks[kept]) == set({"low": range(10), "middle": range(10, 20), "high": range(20, 30)}[tier])


@pytest.mark.parametrize("by", ["count", "tokens"])
def test_perplexity_tier_ranks_the_whole_pool_not_each_shard(gen_base, tmp_path, by):
    """The same 120 candidates, validated as 1 shard or as 4: the same 40 samples are chosen."""
    import datasets

    from collapsebench.generators.quota import read_prompts, run_quota, write_raw_shard
    from collapsebench.models.loading import load_tokenizer

    tok = load_tokenizer(gen_base / "iter_001" / "train" / "model")
    pool = [" ".join(t.split()[:8]) for t in datasets.load_from_disk(str(gen_base / "iter_000" / "curate" / "real"))["text"]]

    def write_raw(r, prompts, jobs):  # candidates that depend on the prompt's position only, not on the shard
        for job in jobs:
            rows = read_prompts(prompts, job.lo, job.hi)
            texts = [pool[(r * 997 + i) % len(pool)] for i in range(job.lo, job.hi)]
            write_raw_shard(job.path, rows["prompt"], rows["parent"], texts,
                            tok(texts, add_special_tokens=False)["input_ids"], 1)

    chosen = []
    for shard_size in (120, 30):
        ctx = gen_ctx(gen_base, tmp_path / str(shard_size), num_samples=40, shard_size=shard_size, oversample=3,
                      validators=[{"name": "perplexity_tier", "tier": "low", "by": by}])
        stats = run_quota(ctx, write_raw, tokenizer=tok)
        assert stats["shards"] >= 120 // shard_size
        if by == "count":
            assert stats["shards"] == 120 // shard_size and stats["metrics"]["rounds"] == 1
        chosen.append(sorted(datasets.load_from_disk(str(ctx.out_dir / "samples"))["text"]))
    assert chosen[0] == chosen[1], f"{len(set(chosen[0]) - set(chosen[1]))} of 40 samples differ"


def _classifier(tmp_path, ctx, name, **config):
    import torch
    from transformers import AutoModelForSequenceClassification, GPT2Config

    from collapsebench.models.loading import load_tokenizer

    tok = load_tokenizer(ctx.model_dir())
    torch.manual_seed(2)
    cfg = GPT2Config(vocab_size=len(tok), n_layer=1, n_head=2, n_embd=32, pad_token_id=tok.pad_token_id, **config)
    clf = AutoModelForSequenceClassification.from_config(cfg).eval()
    clf.save_pretrained(str(tmp_path / name))
    tok.save_pretrained(str(tmp_path / name))
    texts = list(ctx.real()["text"][:30])
    with torch.no_grad():
        logits = clf(**tok(texts, padding=True, return_tensors="pt")).logits
    return str(tmp_path / name), texts, logits


def test_classifier_regression_head_thresholds_the_raw_score(ctx, tmp_path):
    """A one-output head (a quality score, as math-data filters use) is a score, not a probability."""
    path, texts, logits = _classifier(tmp_path, ctx, "score", num_labels=1, problem_type="regression")
    raw = logits[:, 0].numpy()
    t = float(np.median(raw))
    out = VB.classifier(ctx, {"text": texts}, model=path, label=0, threshold=t)
    kept = sum(v.keep for v in out)
    assert 10 <= kept <= 20, f"{kept} of 30 kept at the median score (filter rate {1 - kept / 30:.0%})"
    assert np.allclose([v.score for v in out], raw, atol=1e-5)
    with pytest.raises(UserError, match="threshold"):
        VB.classifier(ctx, {"text": texts}, model=path)  # a raw score has no default threshold


def test_classifier_binary_and_multiclass_heads(ctx, tmp_path):
    import torch

    path, texts, logits = _classifier(tmp_path, ctx, "one", num_labels=1)
    sig = torch.sigmoid(logits[:, 0]).numpy()
    out = VB.classifier(ctx, {"text": texts}, model=path, head="binary", threshold=float(np.median(sig)))
    assert np.allclose([v.score for v in out], sig, atol=1e-5) and 10 <= sum(v.keep for v in out) <= 20
    path, texts, logits = _classifier(tmp_path, ctx, "three", num_labels=3, id2label={0: "a", 1: "b", 2: "c"},
                                      label2id={"a": 0, "b": 1, "c": 2})
    probs = torch.softmax(logits, -1).numpy()
    out = VB.classifier(ctx, {"text": texts}, model=path, label="b")  # multi-class: keep where 'b' is predicted
    assert [v.keep for v in out] == list(probs.argmax(-1) == 1) and np.allclose([v.score for v in out], probs[:, 1])
    out = VB.classifier(ctx, {"text": texts}, model=path, label="b", threshold=0.2)
    assert [v.keep for v in out] == list(probs[:, 1] >= 0.2)
