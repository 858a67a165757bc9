"""The truncated-loss twin's stand-ins, built by the ``prepare:`` block of cpu.yaml (once, then kept).

* standins/data (``prepare[0]``, :func:`split_wikitext`): WikiText-2's validation and test files cut
  into three sets of whole articles that share no article: ``pretrain.txt`` (the text the stand-in
  base model is pretrained on), ``train.txt`` (the paragraphs the twin's stages train on and its
  knowledge items ask about) and ``eval.txt`` (the held-out text of its perplexity). Whole articles,
  not paragraphs, go to one set, so the base never reads another paragraph of an article whose facts
  the twin later asks about: a fact the twin "knows" at stage 1 was learned in stage 1.
  ``splits.json`` lists the titles of each set.
* standins/base (``prepare[1]``, base.yaml, no code here): the "pretrained base model", a tiny GPT-2
  trained from scratch on ``pretrain.txt`` alone by the ordinary loop.

The articles go to the sets by their position in the two files (every ``every``-th to train, every
``2 every``-th after the first to eval, the rest to pretrain), so the cut is the same on every machine and needs no seed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

TITLE = re.compile(r"^ = [^=].* = $")  # an article's title line; section headings have "= =" instead


def articles(text: str) -> list[tuple[str, list[str]]]:
    """(title, its lines without blank ones and without the title) of every article of a WikiText file."""
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if TITLE.match(line):
            out.append((line.strip(" ="), []))
        elif line.strip() and out:
            out[-1][1].append(line.strip())
    return out


def shorten(line: str, min_words: int, max_words: int) -> str | None:
    """A line of running text (not a section heading) cut after its last sentence that ends within
    ``max_words`` words; None for a heading or where that leaves fewer than ``min_words`` words."""
    if line.startswith("="):
        return None
    words = line.split()
    ends = [i + 1 for i, w in enumerate(words[:max_words]) if w == "."]
    return " ".join(words[:ends[-1]]) if ends and ends[-1] >= min_words else None


def split_wikitext(output: Path, config_dir: Path, files: list[str], every: int = 3, min_words: int = 30,
                   max_words: int = 80, eval_min_words: int = 20) -> None:
    """Write pretrain.txt, train.txt, eval.txt and splits.json to ``output`` (see the module docstring).
    ``train.txt``: every paragraph of its articles cut after its last sentence within ``max_words``
    words (:func:`shorten`; short paragraphs, so a tiny model can learn their facts in a few epochs),
    where that keeps at least ``min_words``; ``eval.txt``: the paragraphs of at least
    ``eval_min_words`` words, whole; ``pretrain.txt``: every line of its articles, headings included."""
    found = [a for name in files for a in articles((config_dir / name).read_text(encoding="utf-8"))]
    sets: dict[str, list[tuple[str, list[str]]]] = {"pretrain": [], "train": [], "eval": []}
    for i, article in enumerate(found):
        sets["train" if i % every == 0 else "eval" if i % (2 * every) == 1 else "pretrain"].append(article)
    for name, chosen in sets.items():
        body = [line for _, lines in chosen for line in lines]
        if name == "train":
            body = [s for s in (shorten(line, min_words, max_words) for line in body) if s is not None]
        elif name == "eval":
            body = [line for line in body if not line.startswith("=") and len(line.split()) >= eval_min_words]
        (output / f"{name}.txt").write_text("\n".join(body) + "\n", encoding="utf-8")
    (output / "splits.json").write_text(json.dumps({name: [t for t, _ in chosen] for name, chosen in sets.items()},
                                                   indent=1), encoding="utf-8")
