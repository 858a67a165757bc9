"""The built-in default: configs/quickstart.yaml, end to end."""

import json
import math

import pytest

from collapsebench.config import load_config
from collapsebench.loop import run_experiment
from conftest import REPO, pickles_in

QUICKSTART = REPO / "configs" / "quickstart.yaml"


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_quickstart_runs_small(tmp_path):
    """The shipped default, shrunk by overrides, runs end to end on its own generated data."""
    config = load_config(QUICKSTART, [f"output_dir={tmp_path / 'run'}", "iterations=2",
                                      "data.source.n_documents=400", "data.holdout=80",
                                      "train.trainer.args.num_train_epochs=1",
                                      "evaluate.evaluations=[perplexity, {name: language_kl, n_true: 100, "
                                      "entropy_samples: 100}, language_tails]"])
    run_experiment(config, quiet=True)
    got = rows(tmp_path / "run")
    assert [r["iteration"] for r in got] == [1, 2]
    for r in got:
        assert r["holdout_perplexity"] == pytest.approx(math.exp(r["holdout_cross_entropy"]))
        assert r["lang_kl_truth_model_per_word"] > 0  # a model is not the truth
        assert 0 <= r["lang_tail_word_ratio"]
    assert got[1]["curate/synthetic_fraction"] == 1.0  # replace, alpha = 1
    page = (tmp_path / "run" / "report" / "report.html").read_text()
    assert "holdout_perplexity vs iteration" in page and "data:image/svg+xml;base64," in page
    assert pickles_in(tmp_path / "run") == []


@pytest.mark.slow
def test_quickstart_full(tmp_path):
    """The full default: 5 iterations; the model drifts away from the truth under replace."""
    config = load_config(QUICKSTART, [f"output_dir={tmp_path / 'run'}"])
    run_experiment(config, quiet=True)
    got = rows(tmp_path / "run")
    assert [r["iteration"] for r in got] == [1, 2, 3, 4, 5]
    assert got[-1]["holdout_perplexity"] > got[0]["holdout_perplexity"]
    assert got[-1]["lang_kl_truth_model_per_word"] > got[0]["lang_kl_truth_model_per_word"]
    assert got[-1]["lang_tail_word_ratio"] < got[0]["lang_tail_word_ratio"]
