"""Preprocessors: ``fn(ctx, dataset, **kw) -> Dataset``, used once on the real data
(``data.preprocess``) and on every curated dataset (``curate.preprocess``).

All work in batches over the Arrow table. Each appends one line of counts (rows in, rows out) to
``preprocess.jsonl`` in the phase's folder, so dropped rows are visible next to the dataset.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from collapsebench.api import Dataset, PhaseContext
from collapsebench.data import text_hashes
from collapsebench.errors import UserError
from collapsebench.models.loading import run_tokenizer
from collapsebench.templating import RenderError, compile_template, is_jinja, placeholders, render_rows

BATCH = 10_000


def cache_file(ctx: PhaseContext, name: str) -> str:
    """A fresh cache file in the phase's scratch folder (never next to a committed dataset)."""
    import uuid

    return str(ctx.cache_dir / f"{name}-{uuid.uuid4().hex[:8]}.arrow")


def record(ctx: PhaseContext, name: str, before: int, after: int, **extra: Any) -> None:
    with open(ctx.out_dir / "preprocess.jsonl", "a") as fh:
        fh.write(json.dumps({"preprocessor": name, "rows_in": before, "rows_out": after,
                             "dropped": before - after, **extra}) + "\n")


def template(ctx: PhaseContext, dataset: Dataset, template: str,
             output: str | None = None) -> Dataset:
    """Write the rendered ``template`` into ``output`` (default: the text field): ``{column}``
    placeholders, e.g. ``"user: {prompt}\\nassistant: {response}"``, or sandboxed Jinja2. Rows the
    template fails on are dropped and counted."""
    where = "preprocess template"
    compile_template(template, where)
    if not is_jinja(template):
        missing = [f for f in placeholders(template) if f not in dataset.column_names]
        if missing:
            raise UserError(f"{where}: column(s) {', '.join(missing)} not in the dataset "
                            f"(columns: {', '.join(dataset.column_names)})")
    out = output or ctx.text_field
    columns = dataset.column_names

    def fill(batch: dict[str, list]) -> dict[str, list]:
        n = len(batch[columns[0]])
        rows = [{c: batch[c][i] for c in columns} for i in range(n)]
        rendered = render_rows(template, rows, where)
        keep = [i for i, r in enumerate(rendered) if not isinstance(r, RenderError)]
        result = {c: [batch[c][i] for i in keep] for c in columns}
        result[out] = [rendered[i] for i in keep]
        return result

    result = dataset.map(fill, batched=True, batch_size=BATCH, desc="template", remove_columns=columns,
                         cache_file_name=cache_file(ctx, "template"))
    record(ctx, "template", len(dataset), len(result))
    return result


def tokenizer_for(ctx: PhaseContext) -> Any:
    """The run's tokenizer (available in ``data.preprocess`` only when it does not have to be trained
    on the real data first: ``model.tokenizer.path`` or ``model.base``)."""
    m = ctx.config.model
    if ctx.iteration == 0 and m.base is None and m.tokenizer.path is None:
        raise UserError("preprocess: counting tokens needs a tokenizer: set model.tokenizer.path or model.base "
                        "(the tokenizer trained on the real data exists only after iteration 0)")
    return run_tokenizer(ctx)


def length_filter(ctx: PhaseContext, dataset: Dataset, min_words: int | None = None,
                  max_words: int | None = None, max_tokens: int | None = None) -> Dataset:
    """Drop rows with fewer than ``min_words`` / more than ``max_words`` words or more than
    ``max_tokens`` tokens (the run's tokenizer, no special tokens)."""
    field = ctx.text_field
    tok = tokenizer_for(ctx) if max_tokens is not None else None

    def keep(batch: dict[str, list]) -> list[bool]:
        texts = batch[field]
        ok = np.ones(len(texts), dtype=bool)
        if min_words is not None or max_words is not None:
            words = np.array([len(t.split()) for t in texts])
            ok &= words >= (min_words or 0)
            if max_words is not None:
                ok &= words <= max_words
        if tok is not None:
            n = np.array([len(x) for x in tok(texts, add_special_tokens=False)["input_ids"]])
            ok &= n <= max_tokens
        return ok.tolist()

    result = dataset.filter(keep, batched=True, batch_size=BATCH, desc="length filter",
                            cache_file_name=cache_file(ctx, "length"))
    record(ctx, "length_filter", len(dataset), len(result), min_words=min_words, max_words=max_words,
           max_tokens=max_tokens)
    return result


def dedup(ctx: PhaseContext, dataset: Dataset, column: str | None = None) -> Dataset:
    """Exact deduplication by a hash of the text (first occurrence kept), streamed in batches:
    only 8 bytes per row are held in memory."""
    _, first = np.unique(text_hashes(dataset, column or ctx.text_field), return_index=True)
    keep = np.sort(first)
    result = dataset if len(keep) == len(dataset) else dataset.select(keep)
    record(ctx, "dedup", len(dataset), len(result))
    return result


def tokenize(ctx: PhaseContext, dataset: Dataset, max_length: int | None = None) -> Dataset:
    """Add an ``input_ids`` column (the run's tokenizer, no special tokens; cut at ``max_length``)."""
    tok = tokenizer_for(ctx)
    field = ctx.text_field

    def encode(batch: dict[str, list]) -> dict[str, list]:
        ids = tok(batch[field], add_special_tokens=False)["input_ids"]
        return {"input_ids": [x[:max_length] if max_length else x for x in ids]}

    result = dataset.map(encode, batched=True, batch_size=1000, desc="tokenize",
                         cache_file_name=cache_file(ctx, "tokenize"))
    record(ctx, "tokenize", len(dataset), len(result))
    return result
