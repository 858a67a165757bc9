"""Short generations with a loaded causal LM outside the generate phase: fixed qualitative
prompts answered one by one, and a local model answering judge prompts (greedy, batched,
through its chat template when it has one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from collapsebench.api import Model, Tensor, Tokenizer
from collapsebench.models.loading import context_length


def generate_ids(model: Model, **kwargs: Any) -> Tensor:
    """``model.generate`` without gradients: the token ids of prompts and continuations."""
    import torch

    with torch.no_grad():
        out: Tensor = cast(Any, model).generate(**kwargs)
    return out


def complete_each(model: Model, tokenizer: Tokenizer, prompts: list[str], *, max_new_tokens: int, seed: int,
                  **sampling: Any) -> list[tuple[str, int]]:
    """(completion, new tokens) for each prompt, one at a time, seeded once by ``seed``."""
    import torch

    device = next(model.parameters()).device
    torch.manual_seed(seed % (2**63))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    for prompt in prompts:
        enc = tokenizer(prompt, return_tensors="pt").to(device)
        generated = generate_ids(model, **enc, max_new_tokens=max_new_tokens, pad_token_id=pad, **sampling)
        new = generated[0, enc["input_ids"].shape[1]:]
        out.append((str(tokenizer.decode(new, skip_special_tokens=True)), int(new.numel())))
    return out


def greedy_responder(model: Model, tokenizer: Tokenizer, *, max_new_tokens: int, batch_size: int,
                     device: str | None = None) -> Callable[[list[str]], list[str]]:
    """A function answering a list of prompts greedily (left padding; prompts that do not fit the
    context are cut at the start, since they end with the answer format)."""
    if device is not None:
        cast(Any, model).to(device)
    dev = next(model.parameters()).device
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    context = context_length(model, default=0)
    max_prompt = max(1, context - max_new_tokens) if context else None
    chat = bool(getattr(tokenizer, "chat_template", None))

    def run(prompts: list[str]) -> list[str]:
        if chat:
            prompts = [str(tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                         add_generation_prompt=True)) for p in prompts]
        out: list[str] = []
        for start in range(0, len(prompts), batch_size):
            enc = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                            truncation=max_prompt is not None, max_length=max_prompt,
                            add_special_tokens=not chat).to(dev)
            gen = generate_ids(model, **enc, max_new_tokens=max_new_tokens, do_sample=False,
                               pad_token_id=tokenizer.pad_token_id)
            out += tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return out

    return run
