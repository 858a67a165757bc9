"""`plan` with the data's published size (``data.size``), and without any: an unknown figure reads
as unknown (``?`` in the table, null in JSON), never as 0, and the totals say what they leave out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from collapsebench.analysis.plan import make_plan, plan_totals
from collapsebench.config import load_config
from collapsebench.errors import UserError
from collapsebench.registry import fingerprints

REPO = Path(__file__).resolve().parents[1]
CPT = REPO / "recipes" / "cpt-mixing-ratio" / "paper.yaml"


def _plan_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "collapsebench", "plan", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)


def test_the_declared_size_gives_hours_without_flags() -> None:
    config = load_config(CPT)
    assert config.data.size is not None and config.data.size.per_document == pytest.approx(9.6e9 / 6.7e6)
    plan = make_plan(config, gpu="h100", gpus=8)
    assert plan.data["documents"] == 6_700_000 and plan.data["estimated_by"].startswith("data.size: the paper")
    train = {p.name: p for p in plan.phases}["train"]
    real = 6_700_000 - 10_000  # data.holdout: 10000
    assert train.tokens is not None and train.tokens[0] == pytest.approx(real * 9.6e9 / 6.7e6)
    totals, left_out = plan_totals(plan)
    assert left_out == [] and totals["hours"] is not None and totals["hours"] > 0
    assert totals["gpu_hours"] == pytest.approx(8 * totals["hours"], rel=0.05)  # curate runs on no GPU


def test_an_unknown_size_reads_as_unknown_in_table_and_json(tmp_path: Path) -> None:
    plan = make_plan(load_config(CPT, ["data.size=null"]), gpu="h100", gpus=8)
    assert all(p.tokens is None and p.flops is None and p.seconds is None and p.disk_gb is None for p in plan.phases)
    assert plan_totals(plan)[1] == ["curate", "train", "generate", "evaluate"]
    shown = _plan_cli(str(CPT), "data.size=null", "--gpu", "h100", "--gpus", "8")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout + shown.stderr  # the table goes to the console (stderr)
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert len(rows) == 5 and all(" 0 " not in row for row in rows)
    assert all(row.count("?") >= 4 for row in rows)
    assert "the totals leave out: curate, train, generate, evaluate" in text and "declare data.size" in text
    as_json = _plan_cli(str(CPT), "data.size=null", "--json")
    data = json.loads(as_json.stdout)
    assert data["phases"][1]["tokens"] is None and data["phases"][1]["seconds"] is None
    assert data["totals"]["hours"] is None and data["totals"]["leaves_out"] == ["curate", "train", "generate",
                                                                                   "evaluate"]


def test_flags_override_the_declared_size() -> None:
    plan = make_plan(load_config(CPT), documents=1_000_000, tokens_per_document=100.0)
    assert plan.data["documents"] == 1_000_000 and plan.data["tokens_per_document"] == 100.0


def test_a_size_with_two_token_figures_is_refused() -> None:
    with pytest.raises(UserError, match="data.size"):
        load_config(CPT, ["data.size={documents: 10, tokens: 100, tokens_per_document: 10}"])


def test_the_declared_size_changes_no_fingerprint() -> None:
    """data.size is read by plan alone: runs planned before it was declared keep their steps."""
    with_size, without = load_config(CPT), load_config(CPT, ["data.size=null"])
    assert fingerprints(with_size) == fingerprints(without)
