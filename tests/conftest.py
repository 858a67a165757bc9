"""Shared fixtures: tiny corpora and configs the project makes itself (no download)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

os.environ.setdefault("COLLAPSEBENCH_PROGRESS", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# a token cache of the test session's own: results must not depend on what earlier runs on the machine cached
if "COLLAPSEBENCH_CACHE" not in os.environ:
    os.environ["COLLAPSEBENCH_CACHE"] = tempfile.mkdtemp(prefix="collapsebench-test-tokens-")
    atexit.register(shutil.rmtree, os.environ["COLLAPSEBENCH_CACHE"], True)

REPO = Path(__file__).resolve().parents[1]
# real text (WikiText-2 valid.txt / test.txt): $COLLAPSEBENCH_DATA, else ../shared/data beside the repository
SHARED_DATA = Path(os.environ.get("COLLAPSEBENCH_DATA") or REPO.parent / "shared" / "data").resolve()
os.environ.setdefault("COLLAPSEBENCH_DATA", str(SHARED_DATA))  # for the benchmarks and subprocesses tests start


def golden_entry(path: Path, name: str, values: Any) -> Any:
    """The values recorded under ``name`` in the golden file ``path`` (JSON), or None after
    recording ``values`` there instead (``COLLAPSEBENCH_RECORD_GOLDEN=1``; say why in the commit)."""
    recorded = json.loads(path.read_text()) if path.exists() else {}
    if os.environ.get("COLLAPSEBENCH_RECORD_GOLDEN") == "1":
        recorded[name] = values
        path.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
        return None
    assert name in recorded, f"no recorded values for {name} in {path.name}: record them (COLLAPSEBENCH_RECORD_GOLDEN=1)"
    return recorded[name]


def declared_claims(sweep: Path) -> dict[str, dict[str, Any]]:
    """``compare``'s rows on the claims a sweep's config declares (``report/contrasts.json`` in the
    sweep folder), by claim name."""
    from collapsebench.analysis.compare import compare

    compare([sweep], out=sweep / "report", quiet=True)
    return {row["name"]: row for row in json.loads((sweep / "report" / "contrasts.json").read_text())}


def write_corpus(path: Path, n: int = 240, seed: int = 0) -> Path:
    """A small corpus of English-like lines from a fixed vocabulary (one document per line)."""
    rng = np.random.default_rng(seed)
    words = ["the", "cat", "dog", "sat", "on", "mat", "ran", "far", "a", "big", "small", "red", "tree", "saw",
             "bird", "sang", "song", "sun", "rose", "early", "and", "then", "slept", "under", "blue", "sky"]
    p = 1.0 / np.arange(1, len(words) + 1)
    p /= p.sum()
    lines = []
    for _ in range(n):
        k = int(rng.integers(6, 16))
        sent = " ".join(rng.choice(words, size=k, p=p))
        lines.append(sent.capitalize() + ".")
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_config(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    """A config dict for a very small, fast text run on a generated corpus."""
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        write_corpus(corpus)
    cfg: dict[str, Any] = {
        "name": "tiny",
        "seed": 3,
        "iterations": 2,
        "output_dir": str(tmp_path / "run"),
        "data": {"source": {"name": "local", "path": str(corpus), "sample_by": "line"}, "holdout": 40},
        "model": {"init": "scratch", "architecture": {"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 32},
                  "tokenizer": {"vocab_size": 300}},
        "curate": {"regime": {"name": "replace", "alpha": 0.5}},
        "train": {"trainer": {"name": "causal_lm", "block_size": 32,
                              "args": {"num_train_epochs": 1, "per_device_train_batch_size": 8, "save_steps": 4}}},
        "generate": {"generator": {"name": "transformers", "batch_size": 32, "max_new_tokens": 24}, "shard_size": 50},
        "evaluate": {"evaluations": ["perplexity", "sample_stats"]},
    }
    for key, value in sections.items():
        cfg[key] = value
    return cfg


def write_config(tmp_path: Path, cfg: dict[str, Any], name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def make_ctx(tmp_path):
    """Build a PhaseContext over a run directory under tmp_path (for plug-in unit tests)."""
    from collapsebench.api import PhaseContext
    from collapsebench.config import config_from_dict

    def make(iteration: int = 1, phase: str = "curate", seed: int = 0, **cfg: Any) -> PhaseContext:
        raw = tiny_config(tmp_path, **cfg)
        config = config_from_dict(raw)
        out = tmp_path / "run" / f"iter_{iteration:03d}" / f"{phase}.tmp"
        out.mkdir(parents=True, exist_ok=True)
        return PhaseContext(config=config, run_dir=tmp_path / "run", iteration=iteration, phase=phase,
                            seed=seed, out_dir=out)

    return make


@pytest.fixture(scope="session")
def gen_base(tmp_path_factory):
    """A run folder with real data, a trained tokenizer and a tiny random GPT-2 (generation tests)."""
    from generation_fixtures import build_base

    return build_base(tmp_path_factory.mktemp("gen_base"))


PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib"}


def pickles_in(folder: Path) -> list[Path]:
    """Files under ``folder`` that would run code when loaded: pickle streams, torch/joblib files
    (zip archives that hold a ``.pkl``), by name or by content. Work folders (``*.tmp``) are exempt."""
    import zipfile

    found = []
    for path in folder.rglob("*"):
        if not path.is_file() or any(part.endswith(".tmp") for part in path.relative_to(folder).parts):
            continue
        head = path.read_bytes()[:2]
        is_pickle = len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5
        if path.suffix in PICKLE_SUFFIXES or is_pickle:
            found.append(path)
        elif zipfile.is_zipfile(path) and path.suffix != ".npz":
            with zipfile.ZipFile(path) as archive:
                if any(name.endswith(".pkl") for name in archive.namelist()):
                    found.append(path)
    return found


def write_evaluated_run(path: Path, raw_config: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    """A run directory by hand, as the analysis reads it: its config, ``metrics.jsonl`` and each
    row's committed evaluate folder (for tests of compare, contrasts and reports)."""
    from collapsebench.analysis.runs import write_recorded_run
    from collapsebench.config import config_from_dict

    return write_recorded_run(path, config_from_dict({**raw_config, "output_dir": str(path)}), rows)
