"""The CPU twin's quality rater, built by the ``prepare:`` block of cpu.yaml (once, then kept):

* standins/base (``prepare[0]``, base.yaml, no code here): the "pretrained base model", a tiny
  GPT-2 trained from scratch on WikiText-2 paragraphs by the ordinary loop (one iteration; its run
  directory is standins/base.run). English text: the twin's continued pretraining is on a domain the
  base never read, the project's ground-truth language (made-up words, topics), as the paper's
  Llama-3.2-3B meets finemath. The olmo and pythia twins start from the same base.
* standins/rater (``prepare[1]``, :func:`build_rater`): the stand-in for
  HuggingFaceTB/finemath-classifier, a two-layer GPT-2 with a one-output regression head
  (``problem_type: regression``) trained from scratch (mean squared error) to rate text on the
  finemath scale 0..5. Its training texts are documents of the same language, drawn with a seed no
  run uses, each with a random share ``c`` of its words corrupted (half of them replaced by a word of
  the vocabulary drawn uniformly, which breaks the word frequencies and the topic; half by a made-up
  word the language does not have), labelled ``5 (1 - c)``. It rates how intact a text is; it never
  sees a model's output, so unlike a real-vs-generated detector it has no notion of "synthetic".

``collapsebench validate`` lists both as ``prepare[i]: ... (to build)`` until the first ``run`` or
``sweep`` of a config that declares them has built them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RATER_SEED = 10_000  # the rater's documents: a seed stream no run of the twin draws from (seeds 0..4)


def corrupt(words: list[str], share: float, vocabulary: list[str], rng: Any) -> tuple[list[str], float]:
    """``words`` with each word corrupted with probability ``share`` (half of those replaced by a
    uniformly drawn vocabulary word, half by a made-up one of one to three syllables), and the share
    actually corrupted. Capitals and full stops stay where they were."""
    from collapsebench.sources.language import CONSONANTS, VOWELS

    out, hit = [], 0
    for word in words:
        if rng.random() >= share:
            out.append(word)
            continue
        hit += 1
        if rng.random() < 0.5:
            new = vocabulary[int(rng.integers(len(vocabulary)))]
        else:
            new = "".join(CONSONANTS[int(rng.integers(len(CONSONANTS)))] + VOWELS[int(rng.integers(len(VOWELS)))]
                          for _ in range(int(rng.integers(1, 4))))
        new = new.capitalize() if word[0].isupper() else new
        out.append(new + "." if word.endswith(".") else new)
    return out, hit / max(len(words), 1)


def build_rater(output: Path, config_dir: Path, base: str, language: dict[str, Any], n_texts: int = 3000,
                epochs: int = 3, max_length: int = 96, seed: int = 0) -> None:
    """Train the stand-in rater (module docstring) on ``n_texts`` corrupted documents of ``language``
    (cpu.yaml's ``data.source`` knobs) and save it with the base model's tokenizer to ``output``."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, GPT2Config

    from collapsebench.evaluations.language import SOURCE_ONLY_KWARGS
    from collapsebench.models.loading import load_tokenizer
    from collapsebench.sources.language import build_language, language_spec, sample

    spec = language_spec({k: v for k, v in language.items() if k != "name" and k not in SOURCE_ONLY_KWARGS})
    vocabulary = build_language(spec).words
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    texts, labels = [], []
    for doc in sample(spec, n_texts, RATER_SEED):
        words, share = corrupt(doc.split(), float(rng.uniform(0.0, 1.0)), vocabulary, rng)
        texts.append(" ".join(words))
        labels.append(5.0 * (1.0 - share))
    y = torch.tensor(labels)
    tok = load_tokenizer(config_dir / base)
    cfg = GPT2Config(vocab_size=len(tok), n_layer=2, n_head=2, n_embd=64, n_positions=512, num_labels=1,
                     problem_type="regression", pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                     eos_token_id=tok.eos_token_id)
    model = AutoModelForSequenceClassification.from_config(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(texts))
        for start in range(0, len(order), 32):
            idx = order[start:start + 32]
            enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
            loss = model(**enc, labels=y[idx]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    model.save_pretrained(str(output))
    tok.save_pretrained(str(output))
