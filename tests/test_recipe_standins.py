"""The twins' stand-in bases never saw the text their twin trains on or is evaluated on.

A twin measures what training on generated text does to a model; if the stand-in "pretrained"
base was pretrained on the twin's own documents, continued training adds nothing new and the
effect cannot show (the CPT twin's base once saw all 80 of its documents). Each pair below loads
both configs' real data exactly as the curate phase does (source, blank rows dropped,
data.preprocess; before any seed's sampling, so every seed is covered) and asserts that no text is
shared. The CPT twin's domain is the ground-truth language, drawn anew for every seed: its test
loads each seed's documents and also checks that the language's words are new to the base.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO, SHARED_DATA

RECIPES = REPO / "recipes"

# (twin config, its stand-in base's config)
PAIRS = [("opt-wikitext-replication/cpu.yaml", "opt-wikitext-replication/base.yaml"),
         ("pythia-mixing-calibration/cpu.yaml", "cpt-mixing-ratio/base.yaml")]

pytestmark = pytest.mark.skipif(not SHARED_DATA.exists(), reason="needs the shared WikiText-2 copy")


def texts(config_path: Path, tmp_path: Path, seed: int = 0) -> dict[str, set[str]]:
    """The texts of data.source and data.evaluation (when set) of a config, as curate loads them
    for ``seed`` (a seeded source such as the ground-truth language draws other texts per seed)."""
    from collapsebench.api import PhaseContext
    from collapsebench.config import load_config
    from collapsebench.phases.curate import load_real

    config = load_config(config_path)
    out = tmp_path / f"{config_path.stem}-{seed}"
    out.mkdir()
    ctx = PhaseContext(config=config, run_dir=out, iteration=1, phase="curate", seed=seed, out_dir=out)
    found = {}
    for key, spec in (("data.source", config.data.source), ("data.evaluation", config.data.evaluation)):
        if spec is not None:
            ds, _ = load_real(ctx, spec, key, "x-")
            found[key] = {t.strip() for t in ds[ctx.text_field]}
    return found


@pytest.mark.parametrize("twin, base", PAIRS)
def test_a_stand_in_base_never_saw_its_twins_text(twin, base, tmp_path):
    twin_texts, base_texts = texts(RECIPES / twin, tmp_path), texts(RECIPES / base, tmp_path)
    seen = set().union(*base_texts.values())
    for key, mine in twin_texts.items():
        shared = mine & seen
        assert len(mine) > 100 and not shared, f"{twin} {key}: {len(shared)} texts the base saw, e.g. {sorted(shared)[:2]}"


def test_the_cpt_base_never_read_the_language_its_twin_continues_on(tmp_path):
    """The CPT twin continues its base on documents of the ground-truth language (every seed of its
    sweep): none is among the base's WikiText paragraphs, and few of the language's words are words
    of them (21 of its 300: "no", "so", "bare", "rosa" and the like)."""
    import yaml

    from collapsebench.config import load_config
    from collapsebench.evaluations.language import spec_from_config
    from collapsebench.sources.language import build_language

    twin = RECIPES / "cpt-mixing-ratio/cpu.yaml"
    seen = set().union(*texts(RECIPES / "cpt-mixing-ratio/base.yaml", tmp_path).values())
    for seed in yaml.safe_load(twin.read_text())["sweep"]["grid"]["seed"]:
        docs = texts(twin, tmp_path, seed)["data.source"]
        assert len(docs) > 1000 and not docs & seen, f"seed {seed}: {len(docs & seen)} documents the base saw"
    vocabulary = {w.lower() for w in build_language(spec_from_config(load_config(twin))).words}
    base_words = {w.strip(".,;:").lower() for text in seen for w in text.split()}
    known = vocabulary & base_words
    assert len(known) < 0.1 * len(vocabulary), f"{len(known)} of {len(vocabulary)} words: {sorted(known)[:10]}"
