"""vLLM's CPU build against transformers (marked `engines`; minutes): the `vllm` generator through
one iteration of the quickstart with one and two workers, greedy equality of the two engines, and
whether the first sampled token of each follows the model's own distribution after temperature,
top-k and top-p.

vLLM lives in an environment of its own (its transformers pin differs from the project's):
COLLAPSEBENCH_VLLM_PYTHON names its interpreter (``bash .ci/vllm_venv.sh`` builds it and prints
it); these tests run here and start vLLM in that interpreter, as the generator's ``python:``
option does. The model is the quickstart's iteration-1 model (GPT-2, head dimension 32, float32),
trained once for the module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml

from collapsebench.layout import RunLayout
from conftest import REPO
from engines_setup import CPU_ENGINE, ENGINES, VLLM_PYTHON

pytestmark = ENGINES

ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}  # the workers run this checkout


def generator(data_parallel: int) -> str:
    return json.dumps({"name": "vllm", "max_new_tokens": 96, "python": VLLM_PYTHON, "engine": CPU_ENGINE,
                       "data_parallel": data_parallel})


def cli(*args: str) -> None:
    out = subprocess.run([sys.executable, "-m", "collapsebench", *args], env=ENV, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> RunLayout:
    """One iteration of configs/quickstart.yaml, generating with the `vllm` generator (one worker)."""
    run = tmp_path_factory.mktemp("quickstart") / "run"
    cli("run", str(REPO / "configs" / "quickstart.yaml"), "iterations=1", f"output_dir={run}",
        f"generate.generator={generator(1)}")
    return RunLayout(run)


def samples(layout: RunLayout) -> datasets.Dataset:
    return datasets.load_from_disk(str(layout.phase_dir(1, "generate") / "samples"))


def test_one_quickstart_iteration_generates_with_vllm(quickstart):
    stats = quickstart.committed_stats(1, "generate")
    counts, got = stats["metrics"], samples(quickstart)
    assert stats["engine_starts"] == stats["workers"] == 1  # one engine for the phase, whatever its rounds
    assert len(got) == counts["samples"] > 1000 and len(set(got["id"])) == len(got)
    assert 0 < counts["acceptance"] <= 1 and counts["candidates"] >= len(got)
    assert counts["tokens"] == sum(got["n_tokens"]) and stats["new_tokens"] > len(got)
    (row,) = quickstart.read_metrics()
    assert 1 < row["holdout_perplexity"] < 1024  # better than uniform over the vocabulary
    assert row["lang_kl_truth_model_per_word"] > 0 and row["sample_words_mean"] > 1


def test_two_workers_make_the_same_samples(quickstart, tmp_path):
    """data_parallel 2: two engines share the shards; each shard's seeds do not depend on which
    worker made it, so the samples are those of one worker."""
    run = tmp_path / "run"
    (run / "iter_001").mkdir(parents=True)
    os.symlink(quickstart.path / "iter_000", run / "iter_000")
    for phase in ("curate", "train"):
        os.symlink(quickstart.path / "iter_001" / phase, run / "iter_001" / phase)
    config = yaml.safe_load((quickstart.path / "config.yaml").read_text())
    config["generate"]["generator"]["data_parallel"] = 2
    config["output_dir"] = str(run)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    cli("phase", str(run), "1.generate")
    two = RunLayout(run)
    stats = two.committed_stats(1, "generate")
    assert stats["workers"] == stats["engine_starts"] == 2
    assert {p.name for p in (run / "logs").glob("1.generate.vllm.w*.log")} == {"1.generate.vllm.w0.log",
                                                                             "1.generate.vllm.w1.log"}
    a, b = samples(two), samples(quickstart)
    assert a["id"] == b["id"] and a["text"] == b["text"]


# ------------------------------------------------------------------------------------ engine against engine

GREEDY_PROMPTS, GREEDY_TOKENS = 256, 64
SAMPLING = {"temperature": 0.8, "top_k": 40, "top_p": 0.9}
DRAWS = 2000  # first tokens drawn per prompt and engine


@pytest.fixture(scope="module")
def model(quickstart):
    import torch
    from transformers import AutoModelForCausalLM

    from collapsebench.models.loading import load_tokenizer

    path = quickstart.path / "iter_001" / "train" / "model"
    torch.manual_seed(0)
    return path, AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(), load_tokenizer(path)


@pytest.fixture(scope="module")
def prompts(quickstart, model):
    """256 distinct 5-token prefixes of held-out documents (BOS first), and three prompts to sample
    the first token after: BOS alone and two document starts."""
    from collapsebench.models.loading import prompt_ids

    _, _, tok = model
    holdout = datasets.load_from_disk(str(quickstart.phase_dir(0, "curate") / "holdout"))
    greedy: list[list[int]] = []
    for ids in prompt_ids(tok, holdout["text"]):
        if len(ids) >= 6 and ids[:6] not in greedy:
            greedy.append(ids[:6])
    assert len(greedy) >= GREEDY_PROMPTS
    return greedy[:GREEDY_PROMPTS], [greedy[0][:1], greedy[0][:3], greedy[1][:4]]


@pytest.fixture(scope="module")
def vllm_side(model, prompts, tmp_path_factory):
    """vLLM's answers on the same model and prompts, from one engine in vLLM's environment."""
    folder = tmp_path_factory.mktemp("vllm_side")
    spec = {"model": str(model[0]), "engine": CPU_ENGINE, "greedy_prompts": prompts[0], "greedy_tokens": GREEDY_TOKENS,
            "sample_prompts": prompts[1], "samples": DRAWS, "sampling": SAMPLING}
    (folder / "spec.json").write_text(json.dumps(spec))
    out = subprocess.run([VLLM_PYTHON, str(Path(__file__).with_name("vllm_side.py")), str(folder / "spec.json"),
                          str(folder / "out.json")], env=ENV, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads((folder / "out.json").read_text())


def until_eos(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos) + 1] if eos in ids else ids


def test_greedy_continuations_are_the_same_token_ids(model, prompts, vllm_side):
    import torch

    _, lm, tok = model
    with torch.no_grad():
        out = lm.generate(torch.tensor(prompts[0]), do_sample=False, max_new_tokens=GREEDY_TOKENS,
                          pad_token_id=tok.pad_token_id, attention_mask=torch.ones(len(prompts[0]), 6, dtype=torch.long))
    ours = [until_eos(row[6:].tolist(), tok.eos_token_id) for row in out]
    theirs = [until_eos(ids, tok.eos_token_id) for ids in vllm_side["greedy"]]
    differ = {i: next((k for k, (a, b) in enumerate(zip(ours[i], theirs[i])) if a != b), min(len(ours[i]), len(theirs[i])))
              for i in range(len(ours)) if ours[i] != theirs[i]}
    report = (f"greedy: {len(ours) - len(differ)} of {len(ours)} continuations identical; "
              f"first differing position of the rest (prompt: position): {differ}")
    print(report)
    assert len(differ) <= 0.01 * len(ours), report


def expected_first_token(lm, prompt: list[int]) -> np.ndarray:
    """The model's next-token distribution after temperature, top-k and top-p, through the warpers
    transformers' generate applies (in that order)."""
    import torch
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    ids = torch.tensor([prompt])
    with torch.no_grad():
        scores = lm(ids).logits[:, -1, :]
    for warper in (TemperatureLogitsWarper(SAMPLING["temperature"]), TopKLogitsWarper(SAMPLING["top_k"]),
                   TopPLogitsWarper(SAMPLING["top_p"])):
        scores = warper(ids, scores)
    return torch.softmax(scores.double(), dim=-1)[0].numpy()


def goodness_of_fit(draws: list[int], probs: np.ndarray) -> tuple[float, int]:
    """Chi-square p-value of the drawn tokens' counts against ``probs``: every token expected at
    least 5 times is a cell, the rest are pooled into one (merged into the smallest cell when it
    expects fewer than 5). Also the number of draws of tokens the filters exclude."""
    from scipy.stats import chisquare

    counts = np.bincount(draws, minlength=len(probs))
    expected = probs * len(draws)
    frequent = np.flatnonzero(expected >= 5)
    obs, exp = list(counts[frequent]), list(expected[frequent])
    rest_obs, rest_exp = len(draws) - sum(obs), len(draws) - sum(exp)
    if rest_exp >= 5:
        obs.append(rest_obs)
        exp.append(rest_exp)
    else:
        smallest = int(np.argmin(exp))
        obs[smallest] += rest_obs
        exp[smallest] += rest_exp
    return float(chisquare(obs, exp).pvalue), int(counts[probs == 0].sum())


def test_first_sampled_tokens_follow_the_models_distribution(model, prompts, vllm_side):
    import torch

    _, lm, _ = model
    results = []
    for k, prompt in enumerate(prompts[1]):
        probs = expected_first_token(lm, prompt)
        torch.manual_seed(k)
        with torch.no_grad():
            ids = torch.tensor([prompt] * DRAWS)
            out = lm.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, max_new_tokens=1,
                              min_new_tokens=1, pad_token_id=lm.config.eos_token_id, **SAMPLING)
        for engine, draws in (("transformers", out[:, -1].tolist()), ("vllm", vllm_side["first_tokens"][k])):
            p, excluded = goodness_of_fit(draws, probs)
            results.append((engine, len(prompt), int((probs > 0).sum()), round(p, 4), excluded))
    report = "chi-square (engine, prompt length, tokens kept by the filters, p-value, excluded drawn): " + str(results)
    print(report)
    assert all(p >= 0.01 and excluded == 0 for _, _, _, p, excluded in results), report
