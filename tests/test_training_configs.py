"""Every shipped regime and training config runs end to end (shrunk to a tiny model and corpus)."""

import json

import pytest

from collapsebench.config import load_config
from collapsebench.loop import run_experiment
from conftest import REPO, pickles_in

CONFIGS = sorted(str(p.relative_to(REPO)) for d in ("regimes", "training") for p in (REPO / "configs" / d).glob("*.yaml"))
FAST = {"configs/regimes/replace.yaml", "configs/training/stage_placement_stage0.yaml"}

SHRINK = ["data.source.n_documents=130", "data.holdout=30", "model.architecture.n_layer=1",
          "model.architecture.n_embd=32", "model.tokenizer.vocab_size=300", "generate.generator.max_new_tokens=16",
          "evaluate.evaluations=[perplexity]", "iterations=2"]


def run_shrunk(path, tmp_path, monkeypatch, extra=()):
    monkeypatch.setenv("COLLAPSEBENCH_CACHE", str(tmp_path / "cache"))
    config = load_config(REPO / path, SHRINK + [f"output_dir={tmp_path / 'run'}", *extra])
    return run_experiment(config, quiet=True)


def test_every_shipped_config_is_listed():
    assert len(CONFIGS) >= 13
    for c in CONFIGS:
        assert (REPO / c).read_text().startswith(f"# collapsebench run {c}")


@pytest.mark.parametrize("path", [pytest.param(c, marks=() if c in FAST else pytest.mark.slow) for c in CONFIGS])
def test_config_runs_end_to_end(path, tmp_path, monkeypatch):
    run = run_shrunk(path, tmp_path, monkeypatch)
    rows = run.read_metrics()
    assert [r["iteration"] for r in rows] == [1, 2]
    assert all(1 < r["holdout_perplexity"] < 1000 for r in rows)
    state = json.loads(run.state_file.read_text())
    train = state["steps"]["2.train"]["stats"]
    assert train["init"] == "scratch" and train["init_from"] == "scratch"  # recorded in the journal
    assert pickles_in(run.path) == []  # a finished run holds nothing that runs code when loaded


def test_stage_placement_feeds_synthetic_data_to_one_stage_only(tmp_path, monkeypatch):
    run = run_shrunk("configs/training/stage_placement_stage0.yaml", tmp_path, monkeypatch)
    stats = run.committed_stats(2, "train")
    s0, s1 = stats["stages"]
    assert (s0["stage"], s1["stage"]) == ("stage0", "stage1")
    # stage0 trains on samples only, stage1 on its half of the real data (halves equal in tokens)
    assert set(s0["rows_by_generation"]) == {"1"} and set(s1["rows_by_generation"]) == {"0"}
    assert s1["init_from"].endswith("stages/stage0/model")  # the model passes from stage to stage
    assert stats["metrics"]["stage1/loss"] == stats["metrics"]["loss"] and "stage0/loss" in stats["metrics"]
    first = run.committed_stats(1, "train")["stages"]
    assert first[0]["rows_by_generation"] == {"0": first[0]["rows"]} and first[1]["rows_by_generation"] == {"0": s1["rows"]}
    assert first[0]["rows"] + first[1]["rows"] == 100
    assert (run.phase_dir(2, "train") / "model" / "config.json").exists()
    assert not (run.phase_dir(2, "train") / "stages" / "stage0" / "model").exists()
    # fixed halves: stage1 at iteration 2 trains on the same real rows as at iteration 1
    assert s1["rows"] == first[1]["rows"]


def test_fresh_real_trains_on_fresh_and_regenerated_parts_and_groups_holdout_perplexity(tmp_path, monkeypatch):
    """fresh_real end to end; `perplexity.group_by` reports the holdout per value of one of its
    columns (here the ground-truth language's topic), token-weighted so the groups recombine."""
    import math

    import pyarrow.parquet as pq

    run = run_shrunk("configs/regimes/fresh_real.yaml", tmp_path, monkeypatch,
                     ["evaluate.evaluations=[{name: perplexity, group_by: topic}, sample_stats]"])
    for row in run.read_metrics():
        k = row["iteration"]
        parts = pq.read_table(run.phase_dir(k, "curate") / "parts.parquet").to_pydict()
        assert parts["role"].count("fresh") > 0 and set(parts["part"]) == set(range(k))
        groups = {key.split("=")[1]: v for key, v in row.items() if key.startswith("holdout_perplexity/topic=")}
        docs = pq.read_table(run.phase_dir(k, "evaluate") / "per_document.parquet").to_pydict()
        holdout = run_holdout_topics(run)
        tokens: dict[str, int] = {}
        for doc_id, n in zip(docs["id"], docs["tokens"]):
            tokens[holdout[doc_id]] = tokens.get(holdout[doc_id], 0) + n
        assert sorted(groups) == sorted(tokens) and len(groups) > 1
        total = sum(tokens[t] * math.log(groups[t]) for t in tokens)
        assert total / sum(tokens.values()) == pytest.approx(row["holdout_cross_entropy"], rel=1e-9)


def run_holdout_topics(run):
    import datasets

    holdout = datasets.load_from_disk(str(run.phase_dir(0, "curate") / "holdout"))
    return {i: str(t) for i, t in zip(holdout["id"], holdout["topic"])}


def test_the_terminal_progress_bar_prints_no_log_dicts(capsys):
    from transformers import ProgressCallback, TrainerControl, TrainerState, TrainingArguments

    from collapsebench.trainers.common import quiet_progress

    args = TrainingArguments(output_dir="unused", report_to=[])
    state = TrainerState(is_world_process_zero=True)
    loud, quiet = ProgressCallback(), quiet_progress(ProgressCallback)()
    for callback in (loud, quiet):
        callback.on_train_begin(args, state, TrainerControl())
    loud.on_log(args, state, TrainerControl(), logs={"loss": 4.2})
    printed = capsys.readouterr()
    quiet.on_log(args, state, TrainerControl(), logs={"loss": 4.2})
    assert "4.2" in printed.out + printed.err  # transformers' own bar writes every log dict
    after = capsys.readouterr()
    assert "4.2" not in after.out + after.err and isinstance(quiet, ProgressCallback)
