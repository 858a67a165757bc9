"""Qualitative prompts: a fixed list of prompts answered by every iteration's model.

The answers go to ``qualitative.jsonl`` in the evaluation folder (one row per prompt: ``iteration``,
``index``, ``prompt``, ``completion``), so a report can show the same prompts side by side across
generations. Decoding is greedy by default; with ``do_sample: true`` it is seeded by the phase
seed, so the answers are reproducible. Config example::

    - name: qualitative
      prompts: ["Once upon a time", "The capital of France is"]   # or path: prompts.txt
      max_new_tokens: 48
"""

from __future__ import annotations

from collapsebench.api import PhaseContext
from collapsebench.errors import UserError
from collapsebench.evaluations.common import write_jsonl
from collapsebench.models.generation import complete_each
from collapsebench.models.loading import cached_causal_lm

DEFAULT_PROMPTS = [
    "Once upon a time",
    "The most important thing about science is",
    "In the year 2050,",
    "My favourite food is",
    "The history of the city begins",
]


def load_prompts(ctx: PhaseContext, prompts: list[str] | None, path: str | None) -> list[str]:
    """Prompts from the config list, or from a text file (one prompt per line), or the defaults."""
    if prompts is not None and path is not None:
        raise UserError("qualitative: give either 'prompts' or 'path', not both")
    if path is not None:
        file = ctx.config.resolve_path(path)
        if not file.is_file():
            raise UserError(f"qualitative.path: file not found: {file}")
        prompts = [line.rstrip("\n") for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    prompts = DEFAULT_PROMPTS if prompts is None else prompts
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise UserError("qualitative.prompts: expected a non-empty list of strings")
    return list(prompts)


def qualitative(ctx: PhaseContext, *, prompts: list[str] | None = None, path: str | None = None, max_new_tokens: int = 48,
                do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                model: str | None = None) -> dict[str, float]:
    """Evaluation: answer the fixed prompts with the iteration's model; writes ``qualitative.jsonl``."""
    texts = load_prompts(ctx, prompts, path)
    lm, tok = cached_causal_lm(ctx, model or ctx.model_dir())
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if do_sample else {"do_sample": False}
    answers = complete_each(lm, tok, texts, max_new_tokens=max_new_tokens, seed=ctx.seed, **sampling)
    rows = [{"iteration": ctx.iteration, "index": i, "prompt": prompt, "completion": text}
            for i, (prompt, (text, _)) in enumerate(zip(texts, answers))]
    write_jsonl(ctx.out_dir / "qualitative.jsonl", rows)
    lengths = [n for _, n in answers]
    return {"qualitative_prompts": float(len(rows)), "qualitative_mean_new_tokens": sum(lengths) / len(lengths)}
