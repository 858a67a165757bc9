"""Token counts of datasets under the run's tokenizer: the unit of token shares and budgets.

A document counts as the trainers see it: BOS + its tokens + EOS (:func:`collapsebench.models.loading.frame_ids`;
when BOS and EOS are one token, the packed stream writes it once between documents, so the stream
is one token per document shorter than the sum of the counts).

Counts travel with the rows in the column ``n_tokens``: the real training split gets it when it is
prepared (iteration 0), and generated samples when they are validated (from the token ids the
model generated), so a regime sums a column instead of tokenizing. A sample that keeps its prompt
(``keep_prompt``, the default) holds real tokens too: ``n_prompt_tokens`` says how many of its
``n_tokens`` are the prompt's (0 for real rows and for samples without their prompt). Only the
rest, the generated tokens (and the frame), is synthetic: shares (:class:`TokenTotal`) and the
regimes' token budgets (:attr:`TokenTotal.budget`, :func:`collapsebench.regimes.draw.draw`) count
``n_tokens - n_prompt_tokens``; the prompts ride on top. Rows without the column (from
a user's data source or generator) are tokenized in batches, with the run's tokenizer, when a
count is asked for; nothing is held in memory but one integer per row.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from collapsebench.api import Dataset, PhaseContext, Tokenizer
from collapsebench.data import numeric_column
from collapsebench.errors import UserError
from collapsebench.models.loading import run_tokenizer

COLUMN = "n_tokens"
PROMPT_COLUMN = "n_prompt_tokens"  # of a row's n_tokens, those of the prompt it continues (real tokens)
FRAME = 2  # BOS and EOS around every document
BATCH = 1000


class TokenTotal(NamedTuple):
    tokens: int
    longest: int  # the most tokens of one row
    synthetic: int  # the generated tokens of synthetic rows (generation != 0, less their prompts' tokens)
    prompt: int = 0  # the prompt tokens synthetic rows kept (``n_prompt_tokens``): real tokens

    @property
    def budget(self) -> int:
        """The tokens a regime's budget counts: all but the kept prompts'."""
        return self.tokens - self.prompt


def count_texts(tokenizer: Tokenizer, texts: list[str]) -> list[int]:
    """Framed token counts of texts (BOS + tokens + EOS)."""
    return [len(ids) + FRAME for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def add_token_counts(ctx: PhaseContext, ds: Dataset, tokenizer: Tokenizer) -> Dataset:
    """``ds`` with the column ``n_tokens`` (computed in batches; an existing column is replaced)."""
    field = ctx.text_field
    if COLUMN in ds.column_names:
        ds = ds.remove_columns([COLUMN])
    return ds.map(lambda batch: {COLUMN: count_texts(tokenizer, batch[field])}, batched=True, batch_size=BATCH,
                  desc="count tokens", cache_file_name=str(ctx.cache_dir / f"{COLUMN}-{ds._fingerprint}.arrow"))


def has_token_counts(ds: Dataset) -> bool:
    return COLUMN in ds.column_names


def with_counts(ctx: PhaseContext, ds: Dataset, *, what: str = "dataset") -> Dataset:
    """``ds`` with its ``n_tokens`` column: as it is, or counted with the run's tokenizer over the
    text field in batches (written as a column, so the counts stay on disk)."""
    if COLUMN in ds.column_names:
        return ds
    if ctx.text_field not in ds.column_names:
        raise UserError(f"counting tokens of the {what}: it has no text column '{ctx.text_field}' (data.text_field); "
                        "use unit: rows for data without text")
    return add_token_counts(ctx, ds, run_tokenizer(ctx))


def token_counts(ctx: PhaseContext, ds: Dataset, *, what: str = "dataset") -> np.ndarray:
    """The framed token count of every row (one integer per row in memory; for a total, see
    :func:`token_total`)."""
    return numeric_column(with_counts(ctx, ds, what=what), COLUMN).astype(np.int64)


def token_total(ctx: PhaseContext, ds: Dataset, *, what: str = "dataset") -> TokenTotal:
    """The framed tokens of ``ds``, the generated and the prompt tokens of its synthetic rows and its
    longest row, read in batches in one pass: memory does not grow with the rows."""
    from collapsebench.data import arrow_batches

    counted = with_counts(ctx, ds, what=what)
    by_generation = "generation" in counted.column_names
    with_prompts = PROMPT_COLUMN in counted.column_names
    columns = [COLUMN] + (["generation"] if by_generation else []) + ([PROMPT_COLUMN] if with_prompts else [])
    total = longest = synthetic = prompt = 0
    for batch in arrow_batches(counted, columns):
        values = batch.column(COLUMN).to_numpy(zero_copy_only=False)
        if not len(values):
            continue
        total += int(values.sum())
        longest = max(longest, int(values.max()))
        if by_generation:
            made = batch.column("generation").to_numpy(zero_copy_only=False) != 0
            kept = batch.column(PROMPT_COLUMN).to_numpy(zero_copy_only=False)[made] if with_prompts else 0
            synthetic += int((values[made] - kept).sum())
            prompt += int(np.sum(kept))
    return TokenTotal(total, longest, synthetic, prompt)
