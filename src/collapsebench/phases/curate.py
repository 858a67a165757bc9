"""curate: iteration 0 prepares the real data once; iteration k builds D(k) with the chosen regime."""

from __future__ import annotations

from typing import Any

import numpy as np

from collapsebench import data
from collapsebench.api import Dataset, PhaseContext
from collapsebench.config import Spec
from collapsebench.errors import UserError
from collapsebench.models.tokens import PROMPT_COLUMN, has_token_counts, token_total
from collapsebench.registry import data_sources, hook, preprocessors, regimes, trainers


def _preprocess(ctx: PhaseContext, ds: Dataset, specs: list[Spec], key: str) -> Dataset:
    for i, spec in enumerate(specs):
        ds = preprocessors.call(spec.name, ctx, ds, key=f"{key}[{i}]", kwargs=spec.kwargs)
    return ds


def _texts(ds: Dataset, field: str, where: str) -> Dataset:
    """Every row's text is a string; blank rows go (an empty dataset is an error)."""
    data.check_text(ds, field, where)
    n_before = len(ds)
    ds = data.drop_blank(ds, field)
    if len(ds) == 0:
        raise UserError(f"{where}: every row of '{field}' is blank ({n_before} rows)")
    return ds


def load_real(ctx: PhaseContext, spec: Spec, key: str, prefix: str) -> tuple[Dataset, bool]:
    """A real data source with lineage, blank rows dropped, ``data.preprocess`` applied; and whether it is text
    (before any sampling: what a stand-in base must not have seen is all of it)."""
    ds = data_sources.call(spec.name, ctx, key=key, kwargs=spec.kwargs)
    where = f"{key} ({spec.name})"
    if len(ds) == 0:
        raise UserError(f"{where}: the dataset is empty")
    is_text = ctx.text_field in ds.column_names
    if is_text:
        ds = _texts(ds, ctx.text_field, where)
    ds = data.add_lineage(ds, origin="real", generation=0, prefix=prefix, parent="")
    ds = _preprocess(ctx, ds, ctx.config.data.preprocess, "data.preprocess")
    if not is_text and ctx.text_field in ds.column_names:  # written by data.preprocess (a template, say)
        is_text, ds = True, _texts(ds, ctx.text_field, "data.preprocess")
    if not is_text and data_sources.entry(spec.name).data == "text":
        raise UserError(f"{where}: no column '{ctx.text_field}' (data.text_field), and data.preprocess writes none; "
                        f"columns: {', '.join(ds.column_names)}")
    return ds, is_text


def prepare(ctx: PhaseContext) -> dict[str, Any]:
    """Load the real data, add lineage, split off the held-out part (or load the evaluation source),
    train a tokenizer if needed."""
    cfg = ctx.config.data
    ds, is_text = load_real(ctx, cfg.source, "data.source", "real-")
    ds = ds.shuffle(seed=ctx.seed % 2**32)
    if cfg.max_documents:
        ds = ds.select(range(min(cfg.max_documents, len(ds))))
    if cfg.evaluation is not None:  # evaluations read a source of their own; data.source is trained on whole
        holdout, _ = load_real(ctx, cfg.evaluation, "data.evaluation", "eval-")
        real = ds
    else:
        n_holdout = cfg.holdout_rows(len(ds))
        if not 0 < n_holdout < len(ds):
            raise UserError(f"data.holdout: {cfg.held_out:g} leaves {n_holdout} of {len(ds)} rows held out; "
                            "it must keep at least one row on each side")
        holdout, real = ds.select(range(n_holdout)), ds.select(range(n_holdout, len(ds)))
    stats: dict[str, Any] = {"metrics": {"real_size": len(real), "holdout_size": len(holdout)}}
    if is_text:
        real = real.add_column(PROMPT_COLUMN, np.zeros(len(real), dtype=np.int32))  # no prompt in a real row
        real = _count_tokens(ctx, real, stats)
    data.save(real, ctx.out_dir / "real")
    data.save(holdout, ctx.out_dir / "holdout")
    return stats


def _count_tokens(ctx: PhaseContext, real: Dataset, stats: dict[str, Any]) -> Dataset:
    """Train the run's tokenizer on the real split when the model is built from scratch, and give
    every real row its token count (``n_tokens``: the unit of token shares and budgets). When a
    trainer that reads token ids will train on the split (it declares ``token_ids``: the function
    that encodes documents for it, as ``causal_lm`` does), the ids are made here, once: they give
    the counts and fill the token cache that trainer reads."""
    from collapsebench.models.loading import load_tokenizer, run_tokenizer
    from collapsebench.models.tokens import add_token_counts

    m = ctx.config.model
    if m.tokenizer.path is None and m.base is None:
        from collapsebench.models.tokenizer import train_tokenizer

        stats["tokenizer"] = train_tokenizer(real, ctx.text_field, m.tokenizer.vocab_size, ctx.out_dir / "tokenizer")
        tokenizer = load_tokenizer(ctx.out_dir / "tokenizer")
    else:
        tokenizer = run_tokenizer(ctx)
    encoders = [e.token_ids for t in ctx.config.train.trainers if (e := trainers.entry(t.name)).token_ids]
    if encoders:  # a trainer that reads the real split's token ids declares their encoder: cache them now
        from collapsebench.trainers.token_cache import count_and_cache

        real = count_and_cache(ctx, real, tokenizer, hook(encoders[0]))
    else:
        real = add_token_counts(ctx, real, tokenizer)
    stats["metrics"]["real_tokens"] = token_total(ctx, real).tokens
    return real


def run(ctx: PhaseContext) -> dict[str, Any]:
    if ctx.iteration == 0:
        return prepare(ctx)
    spec = ctx.config.curate.regime
    ds = regimes.call(spec.name, ctx, ctx.real(), ctx.synthetic(), key="curate.regime", kwargs=spec.kwargs)
    ds = _preprocess(ctx, ds, ctx.config.curate.preprocess, "curate.preprocess")
    if len(ds) == 0:
        raise UserError(f"curate: regime '{spec.name}' produced an empty dataset at iteration {ctx.iteration}")
    data.save(ds, ctx.out_dir / "dataset")
    by_generation = data.count_by(ds, "generation")
    synthetic_rows = sum(c for g, c in by_generation.items() if g != "0")
    metrics: dict[str, Any] = {"size": len(ds), "synthetic_fraction": synthetic_rows / len(ds)}
    if has_token_counts(ds) or ctx.text_field in ds.column_names:
        total = token_total(ctx, ds, what="curated dataset")
        # generated tokens only: the prompts samples keep (keep_prompt) are real text, reported apart
        metrics.update(tokens=total.tokens, synthetic_fraction_tokens=total.synthetic / max(total.tokens, 1),
                       prompt_fraction_tokens=total.prompt / max(total.tokens, 1))
    return {"metrics": metrics, "rows_by_generation": by_generation}
