"""Sequence classifiers (transformers) as scorers of texts, for the ``classifier`` validator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collapsebench.api import Model, PhaseContext, Tokenizer
from collapsebench.models.loading import device, load_tokenizer


def load_classifier(path: str | Path) -> tuple[Any, Any]:
    """A sequence classifier (eval mode) and its tokenizer; the model's pad token follows the tokenizer's."""
    from transformers import AutoModelForSequenceClassification

    tok = load_tokenizer(path)
    model = AutoModelForSequenceClassification.from_pretrained(str(path)).to(device()).eval()
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return model, tok


def cached_classifier(ctx: PhaseContext, path: str | Path) -> tuple[Any, Any]:
    loaded: tuple[Any, Any] = ctx.models.get(("classifier", str(path)), lambda: load_classifier(path))
    return loaded


def class_probabilities(model: Model, tokenizer: Tokenizer, texts: list[str], index: int, *, batch_size: int = 32,
                        max_length: int = 512) -> list[float]:
    """Softmax probability of class ``index`` for each text."""
    import torch

    scores: list[float] = []
    dev = next(model.parameters()).device
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(dev)
        with torch.no_grad():
            probs = torch.softmax(model(**enc).logits.float(), dim=-1)[:, index]
        scores.extend(probs.cpu().tolist())
    return scores
