"""The CPU twin's quality classifier, built by the ``prepare:`` block of cpu.yaml (once, then kept):

* standins/base (``prepare[0]``, no code here): the "pretrained base model", a tiny GPT-2 trained
  from scratch on WikiText-2 by the ordinary loop (base.yaml, one iteration; its run directory is
  standins/base.run);
* standins/classifier (``prepare[1]``, :func:`build_classifier`): the stand-in for
  HuggingFaceTB/finemath-classifier, a two-layer GPT-2 with a one-output regression head
  (``problem_type: regression``), trained from scratch (mean squared error) to rate text on the
  finemath scale 0..5: real WikiText-2 paragraphs 5, texts the base model generates from BOS 0. It
  shares the base model's tokenizer. Being trained to tell real text from the base's samples, it is
  a detector of generated text more than a rater of quality.

``collapsebench validate`` lists both as ``prepare[i]: ... (to build)`` until the first ``run`` or
``sweep`` of a config that declares them has built them (about a minute on 2 cores).
"""

from __future__ import annotations

from pathlib import Path


def base_samples(base: Path, n: int, seed: int) -> list[str]:
    """``n`` texts the base model generates from BOS alone (temperature 1, 64 new tokens)."""
    import torch

    from collapsebench.models.loading import bos_id, load_causal_lm

    lm, tok = load_causal_lm(str(base))
    torch.manual_seed(seed)
    out: list[str] = []
    while len(out) < n:
        start = torch.full((min(128, n - len(out)), 1), bos_id(tok))
        with torch.no_grad():
            ids = lm.generate(start, attention_mask=torch.ones_like(start), do_sample=True, top_k=0, temperature=1.0,
                              max_new_tokens=64, pad_token_id=tok.pad_token_id)
        out += tok.batch_decode(ids[:, 1:], skip_special_tokens=True)
    return out


def build_classifier(output: Path, config_dir: Path, base: str, corpus: str, n_texts: int = 600, epochs: int = 4,
                     seed: int = 0) -> None:
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, GPT2Config

    from collapsebench.models.loading import load_tokenizer

    base_dir, corpus_file = config_dir / base, config_dir / corpus
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    real = [" ".join(line.split()[:64]) for line in corpus_file.read_text(encoding="utf-8").splitlines()
            if len(line.split()) >= 20 and not line.strip().startswith("=")][:n_texts]
    generated = base_samples(base_dir, len(real), seed)
    texts = real + generated
    y = torch.tensor([5.0] * len(real) + [0.0] * len(generated))
    tok = load_tokenizer(base_dir)
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
            enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=96, return_tensors="pt")
            loss = model(**enc, labels=y[idx]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    model.save_pretrained(str(output))
    tok.save_pretrained(str(output))
