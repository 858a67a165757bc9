"""A byte-level BPE tokenizer trained on the real training split with `tokenizers`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

SPECIAL = "<|endoftext|>"


def train_tokenizer(ds: Any, field: str, vocab_size: int, out: Path, batch_size: int = 10_000) -> dict[str, Any]:
    """Train byte-level BPE on ``ds[field]`` (streamed in batches); save a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[SPECIAL],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)

    def batches() -> Iterator[list[str]]:
        for batch in ds.select_columns([field]).iter(batch_size=batch_size):
            yield batch[field]

    tok.train_from_iterator(batches(), trainer=trainer, length=len(ds))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL, eos_token=SPECIAL,
                                   pad_token=SPECIAL, unk_token=None)
    fast.save_pretrained(str(out))
    return {"vocab_size": fast.vocab_size, "type": "byte-level BPE"}
