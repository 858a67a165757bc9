"""Generation and training throughput on this machine's GPU, with whatever engines are installed.

    python benchmarks/gpu.py                      # CUDA: a GPT-2-small-sized model, HF training + generation, vLLM if installed
    python benchmarks/gpu.py --device cpu --quick # a smoke test of the script itself on the CPU (tiny model)

Everything is built offline: a GPT-2 with random weights (12 layers x 768, vocabulary 32768: about
124 M parameters; ``--quick``: 2 x 128) and a byte-level BPE tokenizer trained on made-up text,
saved to a temporary folder that the engines load like any model. Measured, each after warm-up:

* ``hf_train``: tokens/s of ``transformers`` training steps (AdamW, bf16 autocast on CUDA) at batch
  x sequence length, and the model FLOPs utilisation 6·N·tokens/s / peak where the GPU is known;
* ``hf_generate``: new tokens/s of ``model.generate`` (sampling, KV cache, every sequence forced
  to the full length);
* ``vllm_generate``: new tokens/s of vLLM on the same model (``ignore_eos``), where vllm imports.

What could not be measured is listed under ``not_measured`` with the reason. Writes
``benchmarks/results/gpu.json`` (``--out``) with the date, machine, versions and command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "gpu.json"
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}
SIZES = {"full": {"n_layer": 12, "n_embd": 768, "n_head": 12, "vocab": 32768, "batch": 16, "seq": 512,
                  "gen_batch": 64, "prompt": 16, "new": 256, "vllm_prompts": 512},
         "quick": {"n_layer": 2, "n_embd": 128, "n_head": 2, "vocab": 4096, "batch": 4, "seq": 64,
                   "gen_batch": 8, "prompt": 8, "new": 16, "vllm_prompts": 32}}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "accelerate", "vllm", "deepspeed", "ray", "collapsebench"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def build(folder: Path, size: dict[str, int]) -> tuple[Any, Any]:
    """A random GPT-2 and a BPE tokenizer trained on made-up words, saved to ``folder``."""
    import random

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(5000)]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 30))) for _ in range(20000)]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=size["vocab"], special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(fast), n_layer=size["n_layer"], n_embd=size["n_embd"], n_head=size["n_head"],
                        n_positions=1024, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    return model, fast


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def hf_train(model: Any, device: str, size: dict[str, int], peak: float | None, steps: int = 10) -> dict[str, Any]:
    import torch

    model = model.to(device).train()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = torch.randint(0, model.config.vocab_size, (size["batch"], size["seq"]), device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)

    def step() -> None:
        with autocast:
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    seconds = time.perf_counter() - start
    tokens_per_s = size["batch"] * size["seq"] * steps / seconds
    n = sum(p.numel() for p in model.parameters())
    out = {"tokens_per_s": tokens_per_s, "batch": size["batch"], "seq_len": size["seq"], "steps": steps,
           "params": n, "dtype": "bf16 autocast" if device == "cuda" else "float32"}
    if peak:
        out["mfu"] = 6 * n * tokens_per_s / (peak * 1e12)
    if device == "cuda":
        out["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def hf_generate(model: Any, tok: Any, device: str, size: dict[str, int]) -> dict[str, Any]:
    import torch

    model = model.to(device).eval()
    if device == "cuda":
        model = model.to(torch.bfloat16)
    prompts = torch.randint(0, model.config.vocab_size, (size["gen_batch"], size["prompt"]), device=device)
    kwargs = {"max_new_tokens": size["new"], "min_new_tokens": size["new"], "do_sample": True, "top_k": 0,
              "pad_token_id": tok.pad_token_id}
    with torch.no_grad():
        model.generate(prompts, attention_mask=torch.ones_like(prompts), **{**kwargs, "max_new_tokens": 4,
                                                                             "min_new_tokens": 4})
        sync(device)
        start = time.perf_counter()
        out = model.generate(prompts, attention_mask=torch.ones_like(prompts), **kwargs)
        sync(device)
    seconds = time.perf_counter() - start
    new = (out.shape[1] - size["prompt"]) * size["gen_batch"]
    return {"tokens_per_s": new / seconds, "batch": size["gen_batch"], "new_tokens": size["new"],
            "dtype": "bfloat16" if device == "cuda" else "float32"}


def vllm_generate(folder: Path, size: dict[str, int]) -> dict[str, Any]:
    import random

    from vllm import LLM, SamplingParams

    llm = LLM(model=str(folder), dtype="bfloat16", gpu_memory_utilization=0.8, max_model_len=1024, seed=0)
    rng = random.Random(0)
    vocab = llm.get_tokenizer().vocab_size
    requests = [{"prompt_token_ids": [rng.randrange(vocab) for _ in range(size["prompt"])]}
                for _ in range(size["vllm_prompts"])]
    params = SamplingParams(max_tokens=size["new"], ignore_eos=True, temperature=1.0)
    llm.generate(requests[:8], params, use_tqdm=False)
    start = time.perf_counter()
    outs = llm.generate(requests, params, use_tqdm=False)
    seconds = time.perf_counter() - start
    new = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"tokens_per_s": new / seconds, "prompts": len(requests), "new_tokens": size["new"], "dtype": "bfloat16"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test of the script)")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    size = SIZES["quick" if args.quick else "full"]
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "versions": versions(), "size": size,
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip(),
        "measured": {}, "not_measured": {}}
    if args.device == "cuda" and not torch.cuda.is_available():
        result["not_measured"]["everything"] = "no CUDA device visible to torch"
        print(json.dumps(result, indent=1))
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        return 1
    peak = None
    if args.device == "cuda":
        name = torch.cuda.get_device_name(0)
        result["gpu"] = {"name": name, "count": torch.cuda.device_count(),
                         "memory_gb": torch.cuda.get_device_properties(0).total_memory / 2**30}
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name.upper()), None)
        result["gpu"]["peak_bf16_tflops"] = peak
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = build(Path(tmp), size)
        try:
            result["measured"]["hf_train"] = hf_train(model, args.device, size, peak)
        except Exception as exc:  # a benchmark records what failed and goes on
            result["not_measured"]["hf_train"] = f"{type(exc).__name__}: {exc}"
        try:
            result["measured"]["hf_generate"] = hf_generate(model, tok, args.device, size)
        except Exception as exc:
            result["not_measured"]["hf_generate"] = f"{type(exc).__name__}: {exc}"
        model = None  # its GPU memory goes back before vLLM starts
        if args.device != "cuda":
            result["not_measured"]["vllm_generate"] = "vLLM is measured on CUDA only"
        else:
            try:
                import vllm  # noqa: F401
            except ImportError as exc:
                result["not_measured"]["vllm_generate"] = f"vllm does not import: {exc}"
            else:
                torch.cuda.empty_cache()
                try:
                    result["measured"]["vllm_generate"] = vllm_generate(Path(tmp), size)
                except Exception as exc:
                    result["not_measured"]["vllm_generate"] = f"{type(exc).__name__}: {exc}"
    result["not_measured"].setdefault("deepspeed", "not benchmarked here; tests/test_gpu.py runs a ZeRO-2 step")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
