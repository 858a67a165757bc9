"""The evaluation suite inside a real (tiny) run, plus user evaluation plug-ins."""

import json
from pathlib import Path

import pandas as pd
import pytest

from collapsebench.cli import main as cli
from collapsebench.config import config_from_dict
from collapsebench.loop import run_experiment
from conftest import tiny_config

PLUGIN_FILE = '''
from collapsebench.registry import evaluations

@evaluations.register("sample_count")
def sample_count(ctx, scale=1.0):
    return {"custom_sample_count": scale * len(ctx.samples())}
'''

PLUGIN_MODULE = '''
def mean_chars(ctx):
    texts = ctx.samples()[ctx.text_field]
    return {"custom_mean_chars": sum(len(t) for t in texts) / max(len(texts), 1)}
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evalrun")
    cfg = tiny_config(tmp)
    assert cli(["knowledge-items", str(tmp / "corpus.txt"), str(tmp / "items.jsonl"), "--n", "20", "--seed", "0"]) == 0
    (tmp / "my_evals.py").write_text(PLUGIN_FILE)
    (tmp / "evalplug_mod.py").write_text(PLUGIN_MODULE)
    import sys

    sys.path.insert(0, str(tmp))
    cfg["config_dir"] = str(tmp)
    cfg["plugins"] = ["./my_evals.py"]
    cfg["evaluate"] = {"evaluations": [
        "perplexity",
        {"name": "diversity", "texts": 10, "length": 4, "draws": 2, "self_bleu_texts": 10},
        "unigram_kl",
        {"name": "reference_perplexity", "reference": 1},
        {"name": "knowledge", "path": "items.jsonl"},
        {"name": "qualitative", "prompts": ["The cat", "A big"], "max_new_tokens": 8},
        {"name": "sample_count", "scale": 2.0},
        "evalplug_mod:mean_chars",
    ]}
    try:
        run_dir = run_experiment(config_from_dict(cfg), quiet=True)
    finally:
        sys.path.remove(str(tmp))
    rows = [json.loads(line) for line in (Path(run_dir.path) / "metrics.jsonl").read_text().splitlines()]
    return Path(run_dir.path), rows


def test_metrics_rows_hold_every_evaluation(run):
    run_dir, rows = run
    assert [r["iteration"] for r in rows] == [1, 2]
    for row in rows:
        for key in ("distinct_1", "distinct_4", "self_bleu", "type_token_ratio", "real_distinct_1",
                    "unigram_kl_synthetic_real", "ref_logppl_mean", "ref_ppl", "knowledge_accuracy",
                    "knowledge_ece", "knowledge_ece_alert_level", "qualitative_prompts"):
            assert key in row, key
        assert 0.0 <= row["knowledge_accuracy"] <= 1.0
        assert row["unigram_kl_synthetic_real"] >= 0.0
    assert rows[0]["knowledge_ece_alert_level"] == 0.0  # nothing to compare the first iteration with
    real = [{k: v for k, v in r.items() if k.startswith("real_")} for r in rows]
    assert real[0] == real[1]  # the real reference does not move between iterations


def test_per_sample_outputs_in_each_evaluation_folder(run):
    run_dir, rows = run
    for k in (1, 2):
        folder = run_dir / f"iter_{k:03d}" / "evaluate"
        table = pd.read_parquet(folder / "ref_perplexity.parquet")
        assert (table["generation"] == k).all() and len(table) > 0
        assert len((folder / "knowledge_items.jsonl").read_text().splitlines()) == rows[k - 1]["knowledge_items"]
        answers = [json.loads(line) for line in (folder / "qualitative.jsonl").read_text().splitlines()]
        assert [a["prompt"] for a in answers] == ["The cat", "A big"] and answers[0]["iteration"] == k


def test_user_plugins_file_and_module_function(run):
    import datasets

    run_dir, rows = run
    for k, row in enumerate(rows, 1):
        samples = datasets.load_from_disk(str(run_dir / f"iter_{k:03d}" / "generate" / "samples"))
        assert row["custom_sample_count"] == 2.0 * len(samples)
        assert row["custom_mean_chars"] == pytest.approx(sum(len(t) for t in samples["text"]) / len(samples))
