"""Real data from files and the hub: the ``local`` and ``hub`` data sources."""

from __future__ import annotations

from typing import Any

from collapsebench.api import Dataset, PhaseContext
from collapsebench.errors import UserError

BUILDERS = {".txt": "text", ".text": "text", ".jsonl": "json", ".json": "json", ".csv": "csv",
            ".parquet": "parquet", ".arrow": "arrow"}


def local_source(ctx: PhaseContext, path: str | list[str], sample_by: str = "paragraph",
                 split: str = "train") -> Dataset:
    """A local file (txt, jsonl/json, csv, parquet), a list of them, or a ``save_to_disk`` folder.

    ``sample_by`` (txt only): one document per ``line``, per blank-line separated ``paragraph``,
    or per whole ``document`` (file)."""
    import datasets

    paths = [ctx.config.resolve_path(p) for p in ([path] if isinstance(path, str) else path)]
    for p in paths:
        if not p.exists():
            raise UserError(f"data.source.path: file not found: {p}")
    if len(paths) == 1 and paths[0].is_dir():
        try:
            loaded = datasets.load_from_disk(str(paths[0]))
        except FileNotFoundError:
            raise UserError(f"data.source.path: {paths[0]} is not a dataset saved with save_to_disk") from None
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise UserError(f"data.source.split: '{split}' not in {paths[0]} (splits: {list(loaded)})")
            loaded = loaded[split]
        return loaded
    suffixes = {p.suffix.lower() for p in paths}
    if len(suffixes) != 1 or next(iter(suffixes)) not in BUILDERS:
        raise UserError(f"data.source.path: cannot read {[str(p) for p in paths]}: "
                        f"expected one kind of file among {', '.join(sorted(BUILDERS))}")
    if all(p.stat().st_size == 0 for p in paths):
        raise UserError(f"data.source.path: {', '.join(map(str, paths))}: the dataset is empty")
    builder = BUILDERS[suffixes.pop()]
    kwargs: dict[str, Any] = {"sample_by": sample_by} if builder == "text" else {}
    try:
        return datasets.load_dataset(builder, data_files=[str(p) for p in paths], split="train",
                                     cache_dir=str(ctx.cache_dir), **kwargs)
    except (ValueError, TypeError, StopIteration, datasets.exceptions.DatasetGenerationError) as exc:
        cause = exc.__cause__ or exc
        raise UserError(f"data.source.path: cannot parse {', '.join(map(str, paths))}: {cause}") from None


def hub_source(ctx: PhaseContext, path: str, config_name: str | None = None, split: str = "train",
               revision: str | None = None) -> Dataset:
    """A dataset from the Hugging Face hub by name (needs network access)."""
    import datasets

    return datasets.load_dataset(path, config_name, split=split, revision=revision, cache_dir=str(ctx.cache_dir))
