import json

import pytest

from collapsebench.errors import UserError
from collapsebench.registry import trackers

pytest.importorskip("wandb")


def test_wandb_offline_run_holds_config_metrics_and_samples(tmp_path, monkeypatch):
    """The run's file holds everything once finish() returns (the tracker waits for the W&B service)."""
    import datasets

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wb").mkdir()
    config = {"name": "exp-a", "iterations": 2, "data": {"text_field": "text"}}
    tracker = trackers.get("wandb")(config, tmp_path / "run", project="p", mode="offline", sample_rows=2,
                                    group="sweep-x", axes={"curate.regime.alpha": 0.5, "seed": 1})
    samples = datasets.Dataset.from_dict({"id": ["a", "b", "c"], "origin": ["synthetic"] * 3,
                                          "generation": [1] * 3, "parent": [""] * 3, "text": ["x", "y", "z"]})
    tracker.log_iteration(1, {"distinct_1": 0.5, "self_bleu": 12.0, "note": "skip"}, samples)
    tracker.log_iteration(2, {"distinct_1": 0.25, "self_bleu": float("nan")}, None)
    tracker.finish()
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    # offline runs keep their records (protobuf, uncompressed) in run-<id>.wandb
    log = next(runs[0].glob("run-*.wandb")).read_bytes()
    # a sweep cell: grouped by the sweep, its axis values as top-level config keys
    for key in (b"distinct_1", b"self_bleu", b"exp-a", b"text_field", b"samples", b"sweep-x", b"curate.regime.alpha"):
        assert key in log, key
    assert b"skip" not in log  # non-numeric metrics are not logged
    tables = list((runs[0] / "files" / "media" / "table").glob("samples_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["iteration", "id", "origin", "generation", "parent", "text"]
    assert [row[-1] for row in table["data"]] == ["x", "y"]
    assert (tmp_path / "run" / "wandb_run_id").read_text() in runs[0].name


def test_wandb_bad_mode(tmp_path):
    with pytest.raises(UserError, match="mode"):
        trackers.get("wandb")({"name": "x"}, tmp_path, mode="sometimes")


def test_the_loop_sends_every_iteration_to_the_tracker(tmp_path, monkeypatch):
    """`tracking:` in the config: the driver logs each newly evaluated iteration, with its samples."""
    from collapsebench.config import config_from_dict
    from collapsebench.loop import run_experiment
    from conftest import tiny_config

    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wb").mkdir()
    cfg = tiny_config(tmp_path, iterations=2, tracking=[{"name": "wandb", "mode": "offline", "project": "t"}])
    cfg["generate"]["num_samples"] = 40
    cfg["curate"] = {"regime": {"name": "replace", "alpha": 0.2}}
    run_experiment(config_from_dict(cfg), quiet=True)
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    log = next(runs[0].glob("run-*.wandb")).read_bytes()
    for key in (b"holdout_perplexity", b"curate/synthetic_fraction", b"tiny"):
        assert key in log, key
    tables = list((runs[0] / "files" / "media" / "table").glob("samples_*.table.json"))
    assert len(tables) == 2  # one sample table per iteration


def test_sweep_cells_are_wandb_runs_grouped_by_the_sweep(tmp_path):
    from collapsebench.config import SweepConfig
    from collapsebench.sweep.runner import cell_config

    base = {"name": "b", "iterations": 1, "tracking": [{"name": "wandb", "mode": "offline"}]}
    cell = {"dir": "alpha-0.5-ab", "label": "alpha=0.5", "values": {"curate.regime.alpha": 0.5, "seed": 2}}
    config = cell_config(tmp_path / "my-sweep", base, SweepConfig(), cell)
    assert config.tracking[0].kwargs == {"mode": "offline", "group": "my-sweep",
                                         "axes": {"curate.regime.alpha": 0.5, "seed": 2}}
    assert config.name == "alpha-0.5-ab"  # the W&B run's name
    assert config.seed == 2 and config.curate.regime.kwargs["alpha"] == 0.5
