"""The twins' verdicts *before* their redesign: each twin's declared claims (the ``contrasts:`` block
of its current config) evaluated by ``compare`` on the runs the twin recorded before it changed.

    PYTHONPATH=src python recipes/before_verdicts.py [--ref a48548b] [--out before]

The slow tests (tests/test_recipes_a.py) record every run of the sft, opt and pythia twins as its
metric rows, per iteration, in tests/golden/recipes_a.json. For each twin this script writes those
rows back as run folders (``analysis.runs.write_recorded_run``: the config the twin had at ``--ref``
with the cell's values and seed, and the recorded ``metrics.jsonl``), then runs
``collapsebench compare --contrasts <the twin's current config>`` on them: the verdicts it prints
are the "before" column of the recipe READMEs, and ``<out>/<twin>/contrasts.csv`` holds the rows.
A claim on a metric the slow test did not record reads "no run has ..." (the recorded rows hold
only the metrics the test compares). The cpt, olmo and truncated-loss twins record only their
last iteration's values (tests/golden/recipes_b.json), so their "before" verdicts come from their
kept run folders instead (``collapsebench compare RUNS --contrasts CONFIG``, in their READMEs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from collapsebench.analysis.compare import compare
from collapsebench.analysis.runs import write_recorded_run
from collapsebench.config import config_from_dict
from collapsebench.config.loading import load_raw
from collapsebench.errors import UserError

HERE = Path(__file__).resolve().parent
GOLDEN = HERE.parent / "tests" / "golden" / "recipes_a.json"

# golden entry -> (the twin's config, the cell values behind each recorded label)
TWINS: dict[str, tuple[str, dict[str, list[str]]]] = {
    "opt_wikitext": ("opt-wikitext-replication/cpu.yaml", {"opt_wikitext_cpu": []}),
    "pythia_calibration": ("pythia-mixing-calibration/cpu.yaml", {
        "0% pythia_cpu": ["curate.regime.alpha=0.0"], "50% pythia_cpu": ["curate.regime.alpha=0.5"]}),
    "sft_regimes": ("sft-regimes/cpu.yaml", {
        "accumulate": ["curate.regime={name: accumulate}"], "replace alpha=1": ["curate.regime={name: replace, alpha: 1.0}"]}),
    "sft_stage_placement": ("sft-regimes/cpu_stage_placement.yaml", {
        f"0.data.regime.alpha={a} 1.data.regime.alpha={b}": [f"train.stages.0.data.regime.alpha={a}",
                                                               f"train.stages.1.data.regime.alpha={b}"]
        for a, b in [("1", "0"), ("0", "1"), ("0.5", "0.5"), ("1", "1")]}),
}


def old_config(ref: str, relative: str, overrides: list[str], seed: int, output: Path) -> Any:
    """The twin's config as it was at ``ref``, with one cell's values and seed."""
    text = subprocess.run(["git", "show", f"{ref}:recipes/{relative}"], cwd=HERE, check=True,
                          capture_output=True, text=True).stdout
    source = output.parent / f"{output.name}.yaml"
    source.write_text(text, encoding="utf-8")
    raw = load_raw(source, overrides)
    raw.pop("contrasts", None)
    raw.update(seed=seed, output_dir=str(output), config_dir=str((HERE / relative).parent))
    return config_from_dict(raw, f"{ref}:recipes/{relative}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="a48548b", help="the commit whose twins recorded the golden values")
    parser.add_argument("--out", default="before", help="folder for each twin's compare output")
    parser.add_argument("twins", nargs="*", default=list(TWINS), help=f"of {', '.join(TWINS)}")
    args = parser.parse_args()
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    for twin in args.twins:
        relative, cells = TWINS[twin]
        with tempfile.TemporaryDirectory() as tmp:
            runs = []
            for label, rows in golden[twin].items():
                cell, seed = label.rsplit(" seed ", 1)
                run = Path(tmp) / f"{len(runs):02d}"
                write_recorded_run(run, old_config(args.ref, relative, cells[cell], int(seed), run), rows)
                runs.append(run)
            print(f"== {twin}: {len(runs)} recorded runs of recipes/{relative} at {args.ref}", flush=True)
            try:
                compare(runs, out=Path(args.out) / twin, contrasts=HERE / relative)
            except UserError as exc:
                print(f"   {exc}")


if __name__ == "__main__":
    main()
