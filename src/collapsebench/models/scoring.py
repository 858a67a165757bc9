"""Log-probabilities of texts under a causal language model (transformers), batched.

Convention: a document is scored as BOS + tokens + EOS (:func:`collapsebench.models.loading.frame_ids`,
the framing every trainer uses); every token after BOS is scored, EOS included, so
``exp(logprob_sum)`` is the model's probability of the whole document. Texts longer than the
model's context are scored in consecutive windows (each window conditions only on the tokens
inside it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from collapsebench.api import Model, Tokenizer
from collapsebench.models.loading import bos_id, context_length, frame_ids


def document_ids(tokenizer: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text framed as BOS + tokens + EOS."""
    return [frame_ids(tokenizer, ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def _windows(ids: list[int], size: int) -> list[tuple[list[int], int]]:
    """Split a sequence into windows of ``size`` tokens overlapping by one (the conditioning token).

    Returns (window ids, number of tokens scored in it = len - 1)."""
    out, start = [], 0
    while start < len(ids) - 1:
        window = ids[start : start + size]
        out.append((window, len(window) - 1))
        start += size - 1
    return out


def token_logprobs_batched(model: Model, sequences: list[list[int]], pad_id: int, batch_size: int) -> list[np.ndarray]:
    """Per-token log p(token_t | tokens_<t) for t >= 1 of each sequence (right padded batches)."""
    import torch

    out: list[np.ndarray] = [np.zeros(0)] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    dev = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(sequences[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, : len(sequences[i])] = torch.tensor(sequences[i])
            mask[row, : len(sequences[i])] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        picked = logp.gather(-1, ids[:, 1:].to(dev).unsqueeze(-1)).squeeze(-1).cpu().numpy()
        for row, i in enumerate(idx):
            out[i] = picked[row, : len(sequences[i]) - 1].astype(np.float64)
    return out


def sequence_logprobs(model: Model, tokenizer: Tokenizer, texts: Sequence[str], *,
                      batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """For each text: (sum of token log-probs in nats, number of scored tokens)."""
    size = context_length(model)
    windows, owner = [], []
    for doc, ids in enumerate(document_ids(tokenizer, texts)):
        for window, _ in _windows(ids, size):
            windows.append(window)
            owner.append(doc)
    scores = token_logprobs_batched(model, windows, tokenizer.pad_token_id, batch_size)
    total = np.zeros(len(texts))
    count = np.zeros(len(texts), dtype=np.int64)
    for doc, s in zip(owner, scores):
        total[doc] += s.sum()
        count[doc] += len(s)
    return total, count


def continuation_logprobs(model: Model, tokenizer: Tokenizer, contexts: Sequence[str], continuations: Sequence[str], *,
                          batch_size: int = 16) -> np.ndarray:
    """Sum of log p(continuation tokens | BOS + context) for each pair (nats).

    The context and continuation are tokenised separately and joined, so the continuation's
    tokens are exactly those of ``continuation`` (include its leading space if it needs one)."""
    return continuation_scores(model, tokenizer, contexts, continuations, batch_size=batch_size)[0]


def continuation_scores(model: Model, tokenizer: Tokenizer, contexts: Sequence[str], continuations: Sequence[str], *,
                        batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """:func:`continuation_logprobs` and the number of continuation tokens scored in each pair (for
    a per-token mean, i.e. the log of the tokens' geometric-mean probability)."""
    if len(contexts) != len(continuations):
        raise ValueError("contexts and continuations differ in length")
    bos = bos_id(tokenizer)
    ctx_ids = tokenizer(list(contexts), add_special_tokens=False)["input_ids"]
    cont_ids = tokenizer(list(continuations), add_special_tokens=False)["input_ids"]
    size = context_length(model)
    sequences, n_cont = [], []
    for c, k in zip(ctx_ids, cont_ids):
        seq = [bos, *c, *k][-size:]
        sequences.append(seq)
        n_cont.append(min(len(k), len(seq) - 1))
    scores = token_logprobs_batched(model, sequences, tokenizer.pad_token_id, batch_size)
    sums = np.array([s[len(s) - n:].sum() if n else 0.0 for s, n in zip(scores, n_cont)])
    return sums, np.asarray(n_cont, dtype=np.int64)
