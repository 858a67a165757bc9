"""The vLLM side of the engine comparisons, run in vLLM's own environment by tests/test_engines_vllm.py:
``python tests/vllm_side.py SPEC.json OUT.json``.

One engine (``spec["engine"]``, ``vllm.LLM`` arguments) on ``spec["model"]`` answers:

- ``greedy``: token-id prompts continued greedily for ``greedy_tokens`` tokens;
- ``first_tokens``: for each prompt of ``sample_prompts``, ``samples`` first tokens drawn with
  ``sampling`` (temperature, top_k, top_p), one request per draw with a seed of its own (one
  ``seed`` in a SamplingParams shared by all the requests would make every draw the same).

The engine core is a spawned process, so the work sits under ``if __name__ == "__main__"``.
"""

from __future__ import annotations

import json
import sys
import time


def run(spec: dict) -> dict:
    from vllm import LLM, SamplingParams

    start = time.perf_counter()
    llm = LLM(model=spec["model"], **spec["engine"])
    out: dict = {"engine_start_s": time.perf_counter() - start}
    if spec.get("greedy_prompts"):
        params = SamplingParams(temperature=0.0, max_tokens=spec["greedy_tokens"])
        got = llm.generate([{"prompt_token_ids": p} for p in spec["greedy_prompts"]], params, use_tqdm=False)
        out["greedy"] = [list(o.outputs[0].token_ids) for o in got]
    if spec.get("sample_prompts"):
        n = spec["samples"]
        draws = []
        for k, prompt in enumerate(spec["sample_prompts"]):
            params = [SamplingParams(**spec["sampling"], max_tokens=1, seed=k * n + i) for i in range(n)]
            got = llm.generate([{"prompt_token_ids": prompt}] * n, params, use_tqdm=False)
            draws.append([o.outputs[0].token_ids[0] for o in got])
        out["first_tokens"] = draws
    return out


if __name__ == "__main__":
    spec_path, out_path = sys.argv[1:3]
    with open(spec_path) as f:
        result = run(json.load(f))
    with open(out_path, "w") as f:
        json.dump(result, f)
