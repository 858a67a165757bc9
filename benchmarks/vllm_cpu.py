"""vLLM's CPU build on this machine: its tokens/s against transformers ``generate``, its engine start,
and the ``vllm`` generator (the framework's path) against a raw ``LLM.generate`` script.

    PYTHONPATH=src python benchmarks/vllm_cpu.py --vllm-python .venv-vllm/bin/python   # ~12 min on 2 cores
    PYTHONPATH=src python benchmarks/vllm_cpu.py --vllm-python .venv-vllm/bin/python --part engines
    PYTHONPATH=src python benchmarks/vllm_cpu.py --vllm-python .venv-vllm/bin/python --quick

``--vllm-python``: the interpreter of vLLM's environment (``bash .ci/vllm_venv.sh`` builds it and
prints it). Setup (not timed): the quickstart's tiny GPT-2 (2 layers, 64 dimensions, head dimension
32, BPE of 1024 tokens) trained for one iteration of ``configs/quickstart.yaml``; float32 throughout.

* engines: one process of vLLM's environment holds a ``vllm.LLM`` and the same model under
  transformers; ``--rounds`` rounds alternate the two (which goes first alternates too) on
  ``--prompts`` BOS prompts, ancestral sampling (temperature 1, no top-k or top-p), up to
  ``--max-new-tokens``; tokens/s count the generated tokens up to the EOS. Reported: the ratio
  vLLM / transformers of each round and their median. Engine start: ``import vllm`` and
  ``vllm.LLM(...)`` in that fresh process.
* generator: ``collapsebench phase RUN 1.generate`` with the ``vllm`` generator (one worker,
  ``--samples`` unconditional samples, no validators) against a raw script in vLLM's environment
  (``import vllm``, ``LLM(...)``, ``generate`` on as many BOS prompts with a seed each, texts
  written as JSON lines): each side is one fresh process with one engine start, timed from its
  start to its exit; tokens/s count the generated tokens. The sides alternate for
  ``--generator-rounds`` rounds; reported: the ratio generator / raw of each round and the median.

Other work may share the machine: the load averages before and after are recorded.
Writes ``benchmarks/results/vllm_cpu.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENGINE = {"gpu_memory_utilization": 0.1, "enforce_eager": True, "dtype": "float32", "max_model_len": 256}


# ------------------------------------------------------------------------------------ in vLLM's environment

def inside_engines(spec: dict[str, Any]) -> dict[str, Any]:
    """Engine start, then alternating rounds of vLLM and transformers on the same prompts."""
    start = time.perf_counter()
    from vllm import LLM, SamplingParams

    imported = time.perf_counter()
    llm = LLM(model=spec["model"], **ENGINE)
    started = time.perf_counter()
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32).eval()
    eos, bos, n, limit = spec["eos"], spec["bos"], spec["prompts"], spec["max_new_tokens"]

    def until_eos(ids: list[int]) -> int:
        return ids.index(eos) if eos in ids else len(ids)

    def with_vllm(r: int) -> int:
        params = [SamplingParams(temperature=1.0, max_tokens=limit, seed=r * n + i) for i in range(n)]
        out = llm.generate([{"prompt_token_ids": [bos]}] * n, params, use_tqdm=False)
        return sum(until_eos(list(o.outputs[0].token_ids)) for o in out)

    def with_transformers(r: int) -> int:
        torch.manual_seed(r)
        ids = torch.full((n, 1), bos, dtype=torch.long)
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0,
                                 top_p=1.0, max_new_tokens=limit, pad_token_id=eos, eos_token_id=eos)
        return sum(until_eos(row) for row in out[:, 1:].tolist())

    rounds = []
    for r in range(spec["rounds"]):
        order = ("vllm", "transformers") if r % 2 == 0 else ("transformers", "vllm")
        row: dict[str, Any] = {"round": r, "order": list(order)}
        for side in order:
            t = time.perf_counter()
            tokens = with_vllm(r) if side == "vllm" else with_transformers(r)
            seconds = time.perf_counter() - t
            row.update({f"{side}_tokens": tokens, f"{side}_seconds": round(seconds, 3),
                        f"{side}_tokens_per_second": round(tokens / seconds, 1)})
        row["ratio"] = round(row["vllm_tokens_per_second"] / row["transformers_tokens_per_second"], 3)
        rounds.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return {"import_vllm_seconds": round(imported - start, 2), "engine_start_seconds": round(started - imported, 2),
            "torch_threads": torch.get_num_threads(), "rounds": rounds}


def inside_raw(spec: dict[str, Any]) -> None:
    """The script a researcher would write: an engine, a seed per sample, texts to a file."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=spec["model"], **ENGINE)
    n = spec["samples"]
    params = [SamplingParams(temperature=1.0, max_tokens=spec["max_new_tokens"], seed=i) for i in range(n)]
    out = llm.generate([{"prompt_token_ids": [spec["bos"]]}] * n, params, use_tqdm=False)
    with open(spec["out"], "w") as f:
        for o in out:
            ids = [t for t in o.outputs[0].token_ids if t != spec["eos"]]
            f.write(json.dumps({"text": o.outputs[0].text, "new_tokens": len(ids)}) + "\n")


# ------------------------------------------------------------------------------------ the driver

def in_vllm(python: str, mode: str, spec: dict[str, Any], folder: Path) -> float:
    """Run this file's ``mode`` in vLLM's environment; its wall seconds."""
    (folder / "spec.json").write_text(json.dumps(spec))
    start = time.perf_counter()
    subprocess.run([python, __file__, "--inside", mode, str(folder / "spec.json")], check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    return time.perf_counter() - start


def generator_run(base: Path, root: Path, python: str, samples: int, max_new_tokens: int) -> Path:
    """A run directory sharing ``base``'s committed iteration-1 model, generating with ``vllm``."""
    import yaml

    run = root / "gen-run"
    (run / "iter_001").mkdir(parents=True)
    os.symlink(base / "iter_000", run / "iter_000")
    for phase in ("curate", "train"):
        os.symlink(base / "iter_001" / phase, run / "iter_001" / phase)
    config = yaml.safe_load((base / "config.yaml").read_text())
    config["output_dir"] = str(run)
    config["generate"].update(num_samples=samples, validators=[],
                              generator={"name": "vllm", "max_new_tokens": max_new_tokens, "python": python,
                                         "engine": ENGINE})
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def generator_rounds(base: Path, root: Path, python: str, args: argparse.Namespace,
                     tokens: dict[str, int]) -> list[dict[str, Any]]:
    from collapsebench.layout import RunLayout

    run = generator_run(base, root, python, args.samples, args.max_new_tokens)
    spec = {"model": str(base / "iter_001" / "train" / "model"), "samples": args.samples,
            "max_new_tokens": args.max_new_tokens, "out": str(root / "raw.jsonl"), **tokens}
    rounds = []
    for r in range(args.generator_rounds):
        order = ("generator", "raw") if r % 2 == 0 else ("raw", "generator")
        row: dict[str, Any] = {"round": r, "order": list(order)}
        for side in order:
            if side == "raw":
                seconds = in_vllm(python, "raw", spec, root)
                made = sum(json.loads(line)["new_tokens"] for line in Path(spec["out"]).read_text().splitlines())
            else:
                for name in ("generate", "generate.tmp"):
                    shutil.rmtree(run / "iter_001" / name, ignore_errors=True)
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "collapsebench", "phase", str(run), "1.generate"], check=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
                seconds = time.perf_counter() - start
                stats = RunLayout(run).committed_stats(1, "generate")
                made = stats["new_tokens"]
                row.update(generator_engine_starts=stats["engine_starts"], generator_rounds=stats["metrics"]["rounds"],
                           generator_quota_seconds=stats["seconds"])
            row.update({f"{side}_tokens": made, f"{side}_seconds": round(seconds, 2),
                        f"{side}_tokens_per_second": round(made / seconds, 1)})
        row["ratio"] = round(row["generator_tokens_per_second"] / row["raw_tokens_per_second"], 3)
        rounds.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vllm-python", default=os.environ.get("COLLAPSEBENCH_VLLM_PYTHON"))
    parser.add_argument("--part", choices=("all", "engines", "generator"), default="all",
                        help="run one part only, updating its figures in an existing result file")
    parser.add_argument("--prompts", type=int, default=1024)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--samples", type=int, default=5000, help="the generator benchmark's samples")
    parser.add_argument("--generator-rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 rounds of each, 1000 samples; no result unless --out")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--inside", nargs=2, metavar=("MODE", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        spec = json.loads(Path(args.inside[1]).read_text())
        if args.inside[0] == "engines":
            Path(spec["out"]).write_text(json.dumps(inside_engines(spec)))
        else:
            inside_raw(spec)
        return
    if not args.vllm_python:
        parser.error("--vllm-python (or COLLAPSEBENCH_VLLM_PYTHON): the interpreter of vLLM's environment")
    if args.quick:
        args.rounds, args.generator_rounds, args.samples = 2, 2, 1000
    out = args.out or (None if args.quick else ROOT / "benchmarks" / "results" / "vllm_cpu.json")

    sys.path.insert(0, str(Path(__file__).parent))
    from generation import setup  # the quickstart with iteration 1 trained, as the generation benchmark uses it
    from results_file import machine, write_result

    from collapsebench.models.loading import bos_id, load_tokenizer

    started = dt.datetime.now(dt.timezone.utc)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        setup(root)
        base = root / "run"
        model = base / "iter_001" / "train" / "model"
        tok = load_tokenizer(model)
        tokens = {"bos": bos_id(tok), "eos": tok.eos_token_id}
        spec = {"model": str(model), "prompts": args.prompts, "max_new_tokens": args.max_new_tokens,
                "rounds": args.rounds, "out": str(root / "engines.json"), **tokens}
        result: dict[str, Any] = {}
        if args.part in ("all", "engines"):
            in_vllm(args.vllm_python, "engines", spec, root)
            engines = json.loads((root / "engines.json").read_text())
            result.update(engines_command="PYTHONPATH=src python benchmarks/vllm_cpu.py " + " ".join(sys.argv[1:]),
                          engines_machine=machine(engines["torch_threads"], load_before),
                          engine_start={k: engines[k] for k in ("import_vllm_seconds", "engine_start_seconds")},
                          engines_rounds=engines["rounds"],
                          vllm_over_transformers_median=statistics.median(r["ratio"] for r in engines["rounds"]))
        if args.part in ("all", "generator"):
            generator = generator_rounds(base, root, args.vllm_python, args, tokens)
            result.update(generator_command="PYTHONPATH=src python benchmarks/vllm_cpu.py " + " ".join(sys.argv[1:]),
                          generator_machine=machine(1, load_before), generator_rounds=generator,
                          generator_over_raw_median=statistics.median(r["ratio"] for r in generator))
    earlier = json.loads(out.read_text()) if args.part != "all" and out is not None and out.exists() else {}
    result = {**earlier, "benchmark": "vllm_cpu", "date": started.isoformat(timespec="seconds"),
              "note": "other work shared the 2 cores during the run (see each part's load averages); vLLM's CPU "
                      "build computes on 1 of the 2 cores (it reserves the other), transformers on 2 torch threads",
              "settings": {"model": "configs/quickstart.yaml (GPT-2, 2 layers, 64 dims, head dim 32), trained 1 "
                                    "iteration, float32", "engine": ENGINE, "prompts": args.prompts,
                           "max_new_tokens": args.max_new_tokens, "samples": args.samples,
                           "sampling": "temperature 1, no top-k, no top-p, a seed per request"},
              **result, "target": "generator / raw >= 0.95"}
    write_result(result, out, tuple(k for k in ("engine_start", "vllm_over_transformers_median",
                                                "generator_over_raw_median") if k in result))


if __name__ == "__main__":
    main()
