"""The truncated-loss twin's stand-ins: its base model is pretrained on WikiText-2 articles that the
twin neither trains on nor evaluates on, and its configs read the sets the split makes.

The split (recipes/truncated-loss/build_standins.py, the twin's ``prepare[0]``) is built here into
a temporary folder from the shared WikiText-2 copy; the configs are then loaded with their data
paths pointed there, and their texts read as the curate phase reads them (source, blank rows
dropped, ``data.preprocess``; before any seed's sampling, so every seed is covered).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from collapsebench.config import load_config
from collapsebench.errors import UserError
from conftest import REPO, SHARED_DATA

RECIPE = REPO / "recipes" / "truncated-loss"

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "wikitext-2").exists(), reason="needs the shared WikiText-2 copy")


def split(tmp_path: Path) -> Path:
    """Run cpu.yaml's prepare[0] (the split) into tmp_path/data with its own arguments."""
    config = load_config(RECIPE / "cpu.yaml")
    step = config.prepare[0]
    assert step.output == "standins/data" and step.call == "build_standins.py:split_wikitext"
    spec = importlib.util.spec_from_file_location("tce_standins", RECIPE / "build_standins.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "data"
    out.mkdir()
    module.split_wikitext(out, RECIPE, **step.kwargs)
    return out


def texts(config_path: Path, data: Path, tmp_path: Path) -> dict[str, set[str]]:
    """The texts of data.source and data.evaluation of a config whose standins/data is ``data``."""
    from collapsebench.api import PhaseContext
    from collapsebench.phases.curate import load_real

    raw = load_config(config_path)
    overrides = [f"data.{key}.path={data / Path(spec.kwargs['path']).name}"
                 for key, spec in (("source", raw.data.source), ("evaluation", raw.data.evaluation)) if spec is not None]
    assert all("standins/data/" in str(spec.kwargs["path"]) for spec in (raw.data.source, raw.data.evaluation)
               if spec is not None)
    config = load_config(config_path, overrides)
    out = tmp_path / config_path.stem
    out.mkdir()
    ctx = PhaseContext(config=config, run_dir=out, iteration=1, phase="curate", seed=0, out_dir=out)
    found: dict[str, set[str]] = {}
    for key, spec in (("data.source", config.data.source), ("data.evaluation", config.data.evaluation)):
        if spec is not None:
            ds, _ = load_real(ctx, spec, key, "x-")
            found[key] = {str(t).strip() for t in ds[ctx.text_field]}
    return found


def test_the_base_never_saw_the_twins_articles_and_the_twin_trains_on_what_it_needs(tmp_path):
    data = split(tmp_path)
    titles: dict[str, Any] = json.loads((data / "splits.json").read_text())
    assert len(titles["train"]) > 30 and len(titles["eval"]) > 15 and len(titles["pretrain"]) > 50
    twin, base = texts(RECIPE / "cpu.yaml", data, tmp_path), texts(RECIPE / "base.yaml", data, tmp_path)
    pretrained = base["data.source"]
    assert len(pretrained) > 1000
    for key, mine in twin.items():
        shared = mine & pretrained
        assert len(mine) > 200 and not shared, f"cpu.yaml {key}: {len(shared)} texts the base saw"
    assert not twin["data.source"] & twin["data.evaluation"]
    # not even a sentence of a training paragraph (of at least 8 words) is in the base's text
    pretrain_text = (data / "pretrain.txt").read_text()
    sentences = {s.strip() for t in twin["data.source"] for s in t.split(" . ") if len(s.split()) >= 8}
    assert len(sentences) > 500 and not [s for s in sentences if s in pretrain_text]
    # the twin's paragraphs are short and whole sentences, and there are enough for its parts
    lengths = [len(t.split()) for t in twin["data.source"]]
    assert min(lengths) >= 30 and max(lengths) <= 80 and all(t.endswith(" .") for t in twin["data.source"])
    assert len(twin["data.source"]) >= load_config(RECIPE / "cpu.yaml").data.max_documents


def test_a_data_file_a_prepare_step_makes_is_checked_once_it_exists(tmp_path):
    """validate and run check the config before prepare has built the data it reads: a missing file
    inside a prepared folder passes, one outside it is still an error naming the key."""
    from collapsebench.sources.files import preflight_local

    config = load_config(RECIPE / "cpu.yaml", [f"prepare.0.output={tmp_path / 'made'}"])
    assert preflight_local(config, {"path": str(tmp_path / "made" / "train.txt")}) == []
    with pytest.raises(UserError, match="data.source.path: file not found"):
        preflight_local(config, {"path": str(tmp_path / "elsewhere" / "train.txt")})
