"""Keep the checkpoint with the lowest loss on the held-out data (``best_by_holdout``).

Fine-tuning recipes of the literature (the OPT-125m / WikiText-2 replication, among others) train
for several epochs and keep the epoch whose validation loss is lowest, not the last one. Here the
validation data is the run's held-out split (``iter_000/curate/holdout``, or ``data.evaluation``),
framed and packed into blocks exactly as the training documents are, so ``eval_loss`` is the
training loss's own quantity on documents the model never trains on. The Trainer evaluates and
saves once an epoch and loads the best checkpoint at the end; every ``eval_loss`` stays in the log
history of the train stats, and the choice in ``best_checkpoint`` / ``best_eval_loss``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from collapsebench.api import PhaseContext
from collapsebench.errors import UserError

# Training arguments that make the Trainer keep the best epoch by held-out loss; the config's own
# ``args`` still win (e.g. ``eval_strategy: steps`` with ``eval_steps``/``save_steps``).
BEST_ARGS: dict[str, Any] = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "load_best_model_at_end": True,
    "metric_for_best_model": "eval_loss",
    "greater_is_better": False,
}


def holdout_blocks(ctx: PhaseContext, pack: Callable[[list[str]], tuple[list[list[int]], list[list[int]]]],
                   block_size: int) -> Any:
    """The held-out documents as training blocks: ``pack`` frames and packs a batch of texts as the
    trainer packs its own documents (``causal_lm``'s BOS + tokens + EOS blocks)."""
    from datasets import Dataset

    holdout = ctx.holdout()
    blocks: list[list[int]] = []
    labels: list[list[int]] = []
    for start in range(0, len(holdout), 1000):
        b, lab = pack(holdout[start:start + 1000][ctx.text_field])
        blocks += b
        labels += lab
    if not blocks:
        raise UserError(f"train.trainer.best_by_holdout: the held-out data holds fewer than {block_size} tokens "
                        "(train.trainer.block_size)")
    return Dataset.from_dict({"input_ids": blocks, "labels": labels})


def best_stats(trainer: Any) -> dict[str, Any]:
    """Which checkpoint the Trainer kept and its held-out loss (for the train stats)."""
    state = trainer.state
    checkpoint = state.best_model_checkpoint
    return {"best_checkpoint": checkpoint.rsplit("/", 1)[-1] if checkpoint else None,
            "metrics": {"best_eval_loss": state.best_metric}}
