"""Sentence embeddings from a `transformers` encoder (mean-pooled, L2-normalised), for diversity."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from collapsebench.errors import UserError
from collapsebench.models.loading import device


def resolve_embedding_model(name: str) -> str:
    """A model folder or hub name; an installed package name maps to the package's ``model/`` folder."""
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    module = name.replace("-", "_")
    if module.isidentifier():
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations:
            folder = Path(list(spec.submodule_search_locations)[0]) / "model"
            if (folder / "config.json").is_file():
                return str(folder)
    return name


def embed_texts(texts: Sequence[str], model_name: str, *, batch_size: int = 32, max_length: int = 256) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence embeddings from a ``transformers`` encoder."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = resolve_embedding_model(model_name)
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path).eval()
    except OSError as exc:
        raise UserError(f"embedding_model '{model_name}': cannot load it ({exc})") from None
    dev = device()
    model.to(dev)
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            enc = tok(list(texts[start:start + batch_size]), padding=True, truncation=True,
                      max_length=max_length, return_tensors="pt").to(dev)
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))
