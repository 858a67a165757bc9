"""Helpers shared by the evaluations: the word tokenisation, item files, earlier metrics.

Tokenisation (used by every sample statistic: distinct-n, type-token ratio, self-BLEU, unigram KL):
text is lower-cased and split with the regular expression ``\\w+|[^\\w\\s]``: runs of word
characters (letters, digits, underscore, any script) are words, and every other non-space
character is a token of its own; whitespace only separates. The same rule applies to the
synthetic and the real text, so counts are comparable across iterations and experiments.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from collapsebench.api import Dataset
from collapsebench.config import Config
from collapsebench.errors import UserError

TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lower-case ``text`` and split it into word and punctuation tokens."""
    return TOKEN_PATTERN.findall(text.lower())


def require_column(dataset: Dataset, field: str, *, what: str = "dataset") -> None:
    """Raise a UserError if ``dataset`` has no column ``field``."""
    if field not in dataset.column_names:
        raise UserError(f"{what} has no column '{field}' (data.text_field); columns: {', '.join(dataset.column_names)}")


def read_jsonl(path: Path, required: dict[str, type | tuple[type, ...]]) -> list[dict[str, Any]]:
    """Read a JSON-lines item file, checking that every row has the ``required`` keys and types."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"item file not found: {path}")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}, line {lineno}: not valid JSON: {exc}") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}, line {lineno}: expected a JSON object")
            for key, kind in required.items():
                if key not in row:
                    raise UserError(f"{path}, line {lineno}: missing key '{key}'")
                if not isinstance(row[key], kind):
                    raise UserError(f"{path}, line {lineno}: '{key}' has the wrong type ({type(row[key]).__name__})")
            rows.append(row)
    if not rows:
        raise UserError(f"{path}: no items")
    return rows


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSON lines (NaN becomes null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            fh.write(json.dumps(clean, ensure_ascii=False) + "\n")
    return path


def earlier_metrics(run_dir: Path, before_iteration: int) -> list[dict[str, Any]]:
    """Rows of ``run_dir/metrics.jsonl`` of iterations before ``before_iteration``, in order.

    Rows without an ``iteration`` key (per-stage rows) are skipped; for an iteration written more
    than once (a re-run), the last row wins. An iteration missing from the file but with a committed
    ``evaluate/metrics.json`` is read from there.
    """
    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    by_iteration: dict[int, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            it = row.get("iteration")
            if isinstance(it, int) and it < before_iteration:
                by_iteration[it] = row
    for it in range(1, before_iteration):  # committed evaluations not (yet) in metrics.jsonl
        committed = run_dir / f"iter_{it:03d}" / "evaluate" / "metrics.json"
        if it not in by_iteration and committed.is_file():
            by_iteration[it] = {"iteration": it, **json.loads(committed.read_text(encoding="utf-8"))}
    return [by_iteration[k] for k in sorted(by_iteration)]


def preflight_item_file(config: Config, kwargs: dict[str, Any]) -> list[str]:
    """An evaluation's item file exists (when it reads one: ``knowledge`` may build its items
    instead); its optional ``model`` is local or cached."""
    from collapsebench.sources.files import local_or_hub

    file = config.resolve_path(kwargs["path"]) if kwargs.get("path") is not None else None
    if file is not None and not file.is_file():
        raise UserError(f"item file not found: {file}")
    return local_or_hub(config, kwargs["model"], "model") if kwargs.get("model") else []
