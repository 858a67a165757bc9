"""Sequence classifiers (transformers) as scorers of texts, for the ``classifier`` validator: what a
head's outputs mean (a raw score, or class probabilities) is read from its config or given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collapsebench.api import Model, PhaseContext, Tokenizer
from collapsebench.errors import UserError
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


HEADS = ("regression", "binary", "multi_class", "multi_label")


def head_kind(model: Model, head: str | None = None) -> str:
    """What a classifier's outputs mean: ``head`` when given, else read from its config:
    ``problem_type: regression`` or a single output is a regression head (a raw score, e.g. a
    quality rating), ``multi_label_classification`` independent labels (a sigmoid each), two
    outputs a binary head (two-class softmax), more a multi-class head (softmax)."""
    if head is not None:
        if head not in HEADS:
            raise UserError(f"generate.validators (classifier): head must be one of {', '.join(HEADS)}, got {head!r}")
        return head
    problem = getattr(model.config, "problem_type", None)
    n = int(model.config.num_labels or 1)
    if problem == "regression" or n == 1:
        return "regression"
    if problem == "multi_label_classification":
        return "multi_label"
    return "binary" if n == 2 else "multi_class"


def class_scores(model: Model, tokenizer: Tokenizer, texts: list[str], head: str, index: int, *,
                 batch_size: int = 32, max_length: int = 512) -> tuple[list[float], list[int]]:
    """Per text: the score of output ``index`` as the head defines it (regression: the raw output;
    binary: the probability of class ``index``, a sigmoid for a single output and a two-class
    softmax otherwise; multi-class: the softmax probability; multi-label: the sigmoid), and the
    predicted class (the most probable one; for one output, whether the sigmoid passes 0.5)."""
    import torch

    scores: list[float] = []
    predicted: list[int] = []
    dev = next(model.parameters()).device
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(dev)
        with torch.no_grad():
            logits = model(**enc).logits.float()
        if head == "regression":
            values = logits[:, index]
        elif head == "multi_label" or (head == "binary" and logits.shape[-1] == 1):
            values = torch.sigmoid(logits[:, 0 if logits.shape[-1] == 1 else index])
            if logits.shape[-1] == 1 and index == 0:  # one output: the probability of class 1
                values = 1 - values
        else:
            values = torch.softmax(logits, dim=-1)[:, index]
        top = (logits[:, 0] > 0).long() if logits.shape[-1] == 1 else logits.argmax(-1)
        scores.extend(values.cpu().tolist())
        predicted.extend(top.cpu().tolist())
    return scores, predicted
