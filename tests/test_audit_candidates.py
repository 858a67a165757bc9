"""Audits of every candidate: generation commits candidates/ (accepted, surplus, rejected), and
classifier_score / judge_quality score the set chosen with ``on`` (default: all), reporting the
accepted and rejected ones apart."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest

from generation_fixtures import gen_ctx


def even_words(ctx, batch):
    """A validator: keep the texts with an even number of words."""
    return [(len(t.split()) % 2 == 0, "odd") for t in batch["text"]]


def test_generation_commits_every_candidate_with_its_status(gen_base, tmp_path):
    from collapsebench.generators.quota import read_prompts, run_quota, write_raw_shard
    from collapsebench.models.loading import load_tokenizer

    tok = load_tokenizer(gen_base / "iter_001" / "train" / "model")
    pool = [" ".join(t.split()[: 3 + i % 5]) for i, t in
            enumerate(datasets.load_from_disk(str(gen_base / "iter_000" / "curate" / "real"))["text"])]

    def write_raw(r, prompts, jobs):
        for job in jobs:
            rows = read_prompts(prompts, job.lo, job.hi)
            texts = [pool[(r * 31 + i) % len(pool)] for i in range(job.lo, job.hi)]
            write_raw_shard(job.path, rows["prompt"], rows["parent"], texts,
                            tok(texts, add_special_tokens=False)["input_ids"], 1)

    ctx = gen_ctx(gen_base, tmp_path, num_samples=15, oversample=3, validators=[{"name": f"{__name__}:even_words"}])
    stats = run_quota(ctx, write_raw, tokenizer=tok, keep_prompt=False)
    cand = datasets.load_from_disk(str(ctx.out_dir / "candidates"))
    samples = datasets.load_from_disk(str(ctx.out_dir / "samples"))
    rejected = datasets.load_from_disk(str(ctx.out_dir / "rejected"))
    status = np.asarray(cand["status"])
    assert len(cand) == stats["metrics"]["candidates"]
    assert (status == "accepted").sum() == len(samples) == 15
    assert (status == "rejected").sum() == len(rejected) > 0
    assert (status == "surplus").sum() == stats["surplus"] > 0  # accepted past the target: in neither folder
    assert [t for t, s in zip(cand["text"], status) if s == "accepted"] == samples["text"]
    assert all(len(t.split()) % 2 == 0 for t, s in zip(cand["text"], status) if s == "surplus")


def _classifier(tmp_path, texts):
    from evalhelpers import tiny_regression_classifier

    return tiny_regression_classifier(tmp_path, texts)


def _candidates(ctx, texts, status):
    from collapsebench.data import add_lineage

    ds = datasets.Dataset.from_dict({"text": texts, "status": status})
    folder = ctx.phase_dir(ctx.iteration, "generate")
    add_lineage(ds, origin="synthetic", generation=1, prefix="g001-candidate-").save_to_disk(str(folder / "candidates"))
    accepted = [t for t, s in zip(texts, status) if s == "accepted"]
    add_lineage(datasets.Dataset.from_dict({"text": accepted}), origin="synthetic", generation=1,
                prefix="g001-").save_to_disk(str(folder / "samples"))


def test_the_classifier_audit_scores_every_candidate_not_what_it_let_through(tmp_path):
    """The filter's own classifier on its accepted samples passes them all by construction; over
    every candidate it passes about half: what App. C of the framework paper measures."""
    from collapsebench.evaluations.classifier_audit import classifier_score
    from collapsebench.validators.builtin import classifier
    from evalhelpers import eval_ctx, save_real

    texts = [f"the {c} cat sat on mat number {i}" for i, c in enumerate(["red", "big", "old", "shy"] * 6)]
    clf = _classifier(tmp_path, texts)
    ctx = eval_ctx(tmp_path, iteration=1)
    save_real(ctx, texts[:8], split="holdout")
    raw = np.array([v.score for v in classifier(ctx, {"text": texts}, model=clf, threshold=0.0)])
    cut = float(np.median(raw))
    status = ["accepted" if s >= cut else "rejected" for s in raw]  # the filter the validator applied
    status[int(np.argmax(raw))] = "surplus"  # accepted past the target
    _candidates(ctx, texts, status)
    m = classifier_score(ctx, model=clf, threshold=cut, n_samples=100)
    passed = raw >= cut
    assert m["classifier_n_all"] == len(texts)
    assert m["classifier_n_accepted"] == passed.sum() and m["classifier_n_rejected"] == (~passed).sum()
    assert m["classifier_mean_all"] == pytest.approx(float(raw.mean()), abs=1e-5)
    assert m["classifier_pass_rate_accepted"] == 1.0  # satisfied by construction
    assert m["classifier_pass_rate_all"] == pytest.approx(float(passed.mean()))
    assert m["classifier_pass_rate_rejected"] == 0.0
    lines = [json.loads(line) for line in (ctx.out_dir / "classifier_scores.jsonl").read_text().splitlines()]
    assert sum(r["source"] == "synthetic" for r in lines) == len(texts)
    only = classifier_score(ctx, model=clf, threshold=cut, n_samples=100, on="rejected", include_real=False)
    assert set(only) == {"classifier_mean_rejected", "classifier_pass_rate_rejected", "classifier_n_rejected"}
    assert only["classifier_mean_rejected"] == pytest.approx(float(raw[~passed].mean()), abs=1e-5)


def test_judge_quality_reads_every_candidate_and_names_missing_ones(tmp_path):
    from collapsebench.errors import UserError
    from collapsebench.evaluations.judges import judge_quality
    from evalhelpers import eval_ctx, save_samples, tiny_causal_lm

    texts = ["the cat sat .", "a dog ran .", "birds sing .", "fish swim .", "sun rose ."]
    ctx = eval_ctx(tmp_path, iteration=1)
    model = tiny_causal_lm(tmp_path / "judge", texts)
    judge = {"type": "transformers", "model": str(model), "max_new_tokens": 3}
    save_samples(ctx, 1, texts[:2])
    with pytest.raises(UserError, match="on: all needs every candidate"):
        judge_quality(ctx, judge, n_samples=5)
    import shutil

    shutil.rmtree(ctx.phase_dir(1, "generate") / "samples")
    _candidates(ctx, texts, ["accepted", "rejected", "surplus", "rejected", "rejected"])
    m = judge_quality(ctx, judge, n_samples=5)
    assert (m["judge_quality_n_all"], m["judge_quality_n_accepted"], m["judge_quality_n_rejected"]) == (5, 2, 3)
    rows = [json.loads(line) for line in (ctx.out_dir / "judge_quality.jsonl").open()]
    assert sorted(r["accepted"] for r in rows) == [False, False, False, True, True]
