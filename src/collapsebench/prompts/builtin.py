"""Prompt sources: what each generated sample starts from. ``fn(ctx, n, tokenizer, **kw)`` returns a
dataset of ``n`` rows with ``prompt`` (text) and ``parent`` (source document / prompt id, or "").

No prompt is held-out evaluation data: the sources built on real documents (``real_prefix``,
``real_blocks``, ``parts_from_real``, ``parts_from_previous_generation``) read the training split
only (the last one also the previous iteration's samples), and ``prompt_dataset`` leaves out the
rows that are held-out documents (compared by fingerprint).

Finite sources (``prompt_dataset``, ``real_blocks``; registered with ``finite=True``) also accept
``n=None``: all their prompts, in order. When ``generate.num_samples`` is null, that count (times
the samples per prompt) is the target. For any other ``n`` they draw from their prompts with
:func:`draw`: all in order when ``n`` equals the count, a seeded random subset when fewer, all
plus seeded draws with replacement when more (later rounds of the quota loop draw replacements
this way, with a seed of their own).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import numpy as np

from collapsebench.api import Dataset, PhaseContext, Tokenizer
from collapsebench.config import Config
from collapsebench.data import string_column, text_hashes
from collapsebench.errors import UserError
from collapsebench.io import digest
from collapsebench.regimes.parts import part_index, regenerated
from collapsebench.sources.files import BUILDERS, hub_source, local_or_hub, local_source
from collapsebench.templating import RenderError, compile_template, render_rows


def draw(total: int, n: int | None, seed: int) -> np.ndarray | None:
    """Row indices for ``n`` of ``total`` prompts (None: all, in order)."""
    if n is None or n == total:
        return None
    rng = np.random.default_rng(seed)
    if n < total:
        return np.sort(rng.choice(total, size=n, replace=False))
    return np.concatenate([np.arange(total), rng.integers(0, total, size=n - total)])


def _select(ds: Dataset, n: int | None, seed: int) -> Dataset:
    idx = draw(len(ds), n, seed)
    return ds if idx is None else ds.select(idx)


def unconditional(ctx: PhaseContext, n: int, tokenizer: Tokenizer) -> Dataset:
    """Every sample starts from BOS alone."""
    import datasets

    return datasets.Dataset.from_dict({"prompt": [""] * n, "parent": [""] * n})


def real_prefix(ctx: PhaseContext, n: int, tokenizer: Tokenizer, tokens: int = 16,
                position: str = "start") -> Dataset:
    """``tokens`` consecutive tokens of real training documents drawn uniformly (with replacement).

    ``position``: ``start`` (the document's first tokens) or ``uniform`` (a window starting at a
    uniformly drawn token; documents shorter than ``tokens`` give the whole document). ``tokens: 0``
    is unconditional generation (empty prompts, no parent)."""
    if position not in ("start", "uniform"):
        raise UserError(f"generate.prompts.position must be 'start' or 'uniform', got '{position}'")
    if tokens < 0:
        raise UserError(f"generate.prompts.tokens must be >= 0, got {tokens}")
    if tokens == 0:
        return unconditional(ctx, n, tokenizer)
    real = ctx.real()
    rows = np.random.default_rng(ctx.seed).integers(0, len(real), size=n)
    field = ctx.text_field

    def cut(batch: dict[str, list], idx: list[int]) -> dict[str, list]:
        ids = tokenizer(batch[field], add_special_tokens=False)["input_ids"]
        if position == "start":
            starts = [0] * len(ids)
        else:
            rng = np.random.default_rng([ctx.seed, idx[0] if idx else 0])
            starts = [int(rng.integers(0, max(len(x) - tokens, 0) + 1)) for x in ids]
        windows = [x[s : s + tokens] for x, s in zip(ids, starts)]
        return {"prompt": tokenizer.batch_decode(windows), "parent": batch["id"]}

    picked = real.select(rows).select_columns([field, "id"])
    return picked.map(cut, batched=True, batch_size=1000, with_indices=True, remove_columns=[field, "id"],
                      cache_file_name=str(ctx.cache_dir / f"prefix_{ctx.seed}_{n}_{tokens}_{position}.arrow"))


def real_blocks(ctx: PhaseContext, n: int | None, tokenizer: Tokenizer, block_tokens: int = 64) -> Dataset:
    """The real training split tokenised (each document + EOS) and cut into ``block_tokens``-token
    blocks, each block a prompt (the classic WikiText-2 setting: continue every block). The parent
    is the document the block starts in. Documents are concatenated 1000 at a time (the remainder
    of each group is dropped); generation then continues BOS + the block, like a training block
    that starts inside a document."""
    real = ctx.real()
    field = ctx.text_field
    eos = tokenizer.eos_token_id

    def cut(batch: dict[str, list]) -> dict[str, list]:
        stream: list[int] = []
        owner: list[str] = []
        for doc_id, ids in zip(batch["id"], tokenizer(batch[field], add_special_tokens=False)["input_ids"]):
            stream.extend([*ids, eos])
            owner.extend([doc_id] * (len(ids) + 1))
        starts = range(0, len(stream) // block_tokens * block_tokens, block_tokens)
        if not starts:
            return {"prompt": [], "parent": []}
        return {"prompt": tokenizer.batch_decode([stream[s : s + block_tokens] for s in starts]),
                "parent": [owner[s] for s in starts]}

    blocks = real.select_columns([field, "id"]).map(
        cut, batched=True, batch_size=1000, remove_columns=[field, "id"],
        cache_file_name=str(ctx.cache_dir / f"blocks_{block_tokens}.arrow"))
    if len(blocks) == 0:
        raise UserError(f"generate.prompts (real_blocks): the real training data holds fewer than "
                        f"{block_tokens} tokens (block_tokens)")
    return _select(blocks, n, ctx.seed)



def _load_prompts(ctx: PhaseContext, path: str, config_name: str | None, split: str,
                  sample_by: Literal["line", "paragraph", "document"]) -> Dataset:
    local = ctx.config.resolve_path(path)
    if not local.exists() and (path.startswith((".", "/", "~")) or local.suffix.lower() in BUILDERS):
        raise UserError(f"generate.prompts.path: file not found: {local}")
    if not local.exists():
        return hub_source(ctx, path, config_name=config_name, split=split)
    try:
        return local_source(ctx, str(local), sample_by=sample_by, split=split)
    except UserError as exc:
        raise UserError(str(exc).replace("data.source.", "generate.prompts.")) from None


def prompt_dataset(ctx: PhaseContext, n: int | None, tokenizer: Tokenizer, path: str, template: str = "{text}",
                   config_name: str | None = None, split: str = "train", id_field: str = "id",
                   sample_by: Literal["line", "paragraph", "document"] = "line") -> Dataset:
    """Prompts from a dataset: a local file / ``save_to_disk`` folder (relative to the config) or a
    hub name. Each row is rendered through ``template`` (``{column}`` placeholders or sandboxed
    Jinja2, see :mod:`collapsebench.templating`); a row the template fails on is left out, with
    its reason in ``prompts_rejected.jsonl``. The parent is the row's ``id_field`` value, else
    ``prompt-<row index>``. Rows that are held-out documents are left out (:func:`outside_holdout`),
    so the file the real data came from can serve as prompts."""
    ds = _load_prompts(ctx, path, config_name, split, sample_by)
    if len(ds) == 0:
        raise UserError(f"generate.prompts.path: {path}: no prompts")
    columns = ds.column_names
    where = "generate.prompts.template"
    compile_template(template, where)

    def render(batch: dict[str, list], idx: list[int]) -> dict[str, list]:
        rows = [{c: batch[c][j] for c in columns} for j in range(len(idx))]
        prompts, parents, sources = [], [], []
        for i, row, text in zip(idx, rows, render_rows(template, rows, where)):
            if isinstance(text, RenderError):
                with open(ctx.out_dir / "prompts_rejected.jsonl", "a") as fh:
                    fh.write(json.dumps({"row": i, "reason": str(text)}) + "\n")
                continue
            prompts.append(text)
            parents.append(str(row[id_field]) if id_field in row else f"prompt-{i}")
            sources.append(row.get(ctx.text_field))
        out = {"prompt": prompts, "parent": parents}
        return {**out, ctx.text_field: sources} if ctx.text_field in columns and ctx.text_field != "prompt" else out

    key = digest([path, template, config_name, split, id_field, sample_by])  # an explicit cache file is reused as is
    rendered = ds.map(render, batched=True, batch_size=1000, with_indices=True,
                      remove_columns=columns,
                      cache_file_name=str(ctx.cache_dir / f"prompt_dataset_{key}.arrow"))
    return _select(outside_holdout(ctx, rendered, path), n, ctx.seed)


def outside_holdout(ctx: PhaseContext, prompts: Dataset, path: str) -> Dataset:
    """``prompts`` without the rows whose prompt, or whose source text (the text field, when the
    prompt file has one), is a held-out document, compared by fingerprint
    (:func:`collapsebench.data.text_hashes`): a model prompted with its evaluation data would be
    scored on text it was shown. Returns the ``prompt`` and ``parent`` columns."""
    held_out = np.unique(text_hashes(ctx.holdout(), ctx.text_field))
    leaked = np.isin(text_hashes(prompts, "prompt"), held_out)
    if ctx.text_field in prompts.column_names and ctx.text_field != "prompt":
        leaked |= np.isin(text_hashes(prompts, ctx.text_field), held_out)
    prompts = prompts.select_columns(["prompt", "parent"])
    if leaked.all():
        raise UserError(f"generate.prompts.path: every prompt of {path} is a held-out document (data.holdout); "
                        "prompting with the evaluation data would show the model its own test set")
    if leaked.any():
        ctx.log.warning("generate.prompts: %d of %d prompts of %s are held-out documents; left out", int(leaked.sum()),
                        len(leaked), path)
        prompts = prompts.select(np.flatnonzero(~leaked))
    return prompts



def _parts_seen(ctx: PhaseContext, n: int, parts: int | None, part_by: str | None,
                name: str) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """(real split, part of every real row, the rows of parts 0..k-1 at iteration k in order): the
    documents a ``parts_from_*`` source regenerates, at least ``n`` of them."""
    real = ctx.real()
    index, names = part_index(real, parts, part_by, default=ctx.config.iterations, key="generate.prompts")
    rows = np.flatnonzero(index < min(ctx.iteration, len(names)))
    if n < len(rows):
        raise UserError(f"generate.num_samples: {n} samples cannot regenerate the {len(rows)} documents of parts "
                        f"0..{ctx.iteration - 1} (generate.prompts: {name}); raise it to at least {len(rows)}")
    return real, index, rows


def _prefix_prompts(ctx: PhaseContext, docs: Dataset, n: int, tokenizer: Tokenizer, tokens: int,
                    key: str) -> Dataset:
    """The first ``tokens`` tokens of each of ``docs`` (columns: the text field, ``id``) as its
    prompt, its ``id`` the parent; the documents cycled to fill ``n`` prompts."""
    field = ctx.text_field

    def cut(batch: dict[str, list]) -> dict[str, list]:
        ids = tokenizer(batch[field], add_special_tokens=False)["input_ids"]
        return {"prompt": tokenizer.batch_decode([x[:tokens] for x in ids]), "parent": batch["id"]}

    picked = docs.select(np.arange(n) % len(docs))
    return picked.map(cut, batched=True, batch_size=1000, remove_columns=[field, "id"],
                      cache_file_name=str(ctx.cache_dir / f"{key}.arrow"))


def parts_from_real(ctx: PhaseContext, n: int, tokenizer: Tokenizer, parts: int | None = None,
                    tokens: int = 16, part_by: str | None = None) -> Dataset:
    """Regenerate every part the model has seen (parts 0..k-1 at iteration k, see
    :mod:`collapsebench.regimes.parts`; ``parts`` and ``part_by`` as the regime's) from the REAL
    documents: each document's first ``tokens`` tokens are its prompt and its id the sample's
    ``parent``, at every iteration; the documents are cycled to fill ``n`` samples. Not the
    published recursion (the split's previous generation is the prompt there): that is
    :func:`parts_from_previous_generation`."""
    real, _, rows = _parts_seen(ctx, n, parts, part_by, "parts_from_real")
    docs = real.select(rows).select_columns([ctx.text_field, "id"])
    return _prefix_prompts(ctx, docs, n, tokenizer, tokens, f"parts_from_real_{digest([n, tokens, parts, part_by])}")


def parts_from_previous_generation(ctx: PhaseContext, n: int, tokenizer: Tokenizer, parts: int | None = None,
                                   tokens: int = 16, part_by: str | None = None) -> Dataset:
    """Regenerate every part the model has seen from its PREVIOUS GENERATION, the text the model
    was trained on (Algorithm 1 of the knowledge-retention setting: after training M_i on
    [D_0^(i), ..., D_i^(0)], D_k^(i+1-k) <= M_i(D_k^(i-k)) for k = 0..i). At iteration k the fresh
    part k-1 is prompted from its real documents (generation 0); every earlier part from the
    regeneration of each document that iteration k-1 made, the one ``fresh_real`` put into D(k)
    (the first sample per ``parent``), read as the token ids it was trained on (``input_ids``;
    its text tokenised when a sample has none). The prompt is the first ``tokens`` of them; the
    parent stays the real document's id, so the regime replaces the same document again.
    ``parts``, ``part_by`` as the regime's; documents cycled to fill ``n``. With ``keep_prompt:
    true`` a regeneration starts with its prompt, so a prefix of ``tokens`` tokens is carried
    unchanged from generation to generation: only ``keep_prompt: false`` (the continuation alone
    is the regenerated text) makes the prompts generated text (docs/generation.md)."""
    import datasets

    real, index, rows = _parts_seen(ctx, n, parts, part_by, "parts_from_previous_generation")
    field = ctx.text_field
    docs = real.select(rows).select_columns([field, "id"])
    prefixes = [x[:tokens] for x in tokenizer(list(docs[field]), add_special_tokens=False)["input_ids"]]
    earlier = np.flatnonzero(index[rows] < ctx.iteration - 1)
    if len(earlier):
        regen, position = regenerated(ctx.samples(ctx.iteration - 1), string_column(docs.select(earlier)))
        if len(regen) < len(earlier):
            raise UserError(
                f"generate.prompts (parts_from_previous_generation): iteration {ctx.iteration - 1}'s samples "
                f"regenerate {len(regen)} of the {len(earlier)} documents of parts 0..{ctx.iteration - 2}; each "
                "needs its previous generation (generate.num_samples at least the documents of the parts seen)")
        ids = (regen["input_ids"] if "input_ids" in regen.column_names
               else tokenizer(list(regen[field]), add_special_tokens=False)["input_ids"])
        for j, x in zip(earlier[position], ids):
            prefixes[j] = list(x)[:tokens]
    cycle = np.arange(n) % len(rows)
    parents = list(docs["id"])
    return datasets.Dataset.from_dict({"prompt": tokenizer.batch_decode([prefixes[j] for j in cycle]),
                                       "parent": [parents[j] for j in cycle]})


def preflight_prompt_dataset(config: Config, kwargs: dict[str, Any]) -> list[str]:
    """The prompt file exists (or the hub dataset is cached); the template compiles."""
    compile_template(kwargs.get("template", "{text}"), "generate.prompts.template")
    return local_or_hub(config, kwargs["path"], "generate.prompts.path", "dataset")
