"""Build the CPU twin's stand-ins in standins/ (beside this file), once, before cpu.yaml runs:

* standins/base: the "pretrained base model", a tiny GPT-2 trained from scratch on WikiText-2 by
  the ordinary loop (base.yaml, one iteration; its run directory is standins/base_run);
* standins/classifier: the stand-in for HuggingFaceTB/finemath-classifier, a two-layer GPT-2 with a
  one-output regression head (``problem_type: regression``), trained from scratch (mean squared
  error) to rate text on the finemath scale 0..5: real WikiText-2 paragraphs 5, texts the base
  model generates from BOS 0. It shares the base model's tokenizer.

    PYTHONPATH=src python recipes/cpt-mixing-ratio/build_standins.py      (about a minute on 2 cores)

Both folders are skipped when they exist. The twin then reads them as model.base and as the
classifier validator's / classifier_score evaluation's model.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "standins"
CORPUS = HERE / "../../../shared/data/wikitext-2/valid.txt"


def build_base() -> Path:
    from collapsebench.config import load_config
    from collapsebench.loop import run_experiment

    target = OUT / "base"
    if not target.exists():
        config = load_config(HERE / "base.yaml", [f"output_dir={OUT / 'base_run'}"])
        run_experiment(config, yes=True)
        shutil.copytree(OUT / "base_run" / "iter_001" / "train" / "model", target)
    return target


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


def build_classifier(base: Path, n_texts: int = 600, epochs: int = 4, seed: int = 0) -> Path:
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, GPT2Config

    from collapsebench.models.loading import load_tokenizer

    target = OUT / "classifier"
    if target.exists():
        return target
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    real = [" ".join(line.split()[:64]) for line in CORPUS.read_text(encoding="utf-8").splitlines()
            if len(line.split()) >= 20 and not line.strip().startswith("=")][:n_texts]
    generated = base_samples(base, len(real), seed)
    texts = real + generated
    y = torch.tensor([5.0] * len(real) + [0.0] * len(generated))
    tok = load_tokenizer(base)
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
    tmp = OUT / "classifier.tmp"
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    tmp.rename(target)
    return target


def main() -> int:
    if not CORPUS.exists():
        print(f"needs WikiText-2 at {CORPUS.resolve()}", file=sys.stderr)
        return 2
    OUT.mkdir(exist_ok=True)
    base = build_base()
    print(f"base model: {base}")
    print(f"classifier: {build_classifier(base)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
