"""Sweeps: grid expansion (ids, zip, exclude, whole blocks, list indices, baselines), running cells
through an executor with shared steps, reruns that do only what is missing, failures that stay in
their cell, and the status of a sweep."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from collapsebench.config import SweepConfig, config_from_dict, load_config
from collapsebench.errors import UserError
from collapsebench.layout import SweepLayout
from collapsebench.loop import run_experiment
from collapsebench.sweep.grid import expand, label_of, parse_exclude, short_names, spec_from_options
from collapsebench.sweep.runner import cell_config, create, run_sweep, schedule, shared_summary
from conftest import REPO

TOY = REPO / "configs" / "toy" / "gaussian_replace.yaml"
REGIMES = "curate.regime=[{name: replace, alpha: 0}, {name: replace, alpha: 0.5}, {name: replace, alpha: 1}, {name: accumulate}]"


def base(**extra):
    raw = yaml.safe_load(TOY.read_text())
    raw["config_dir"] = str(TOY.parent)
    raw.update(extra)
    return raw


def spec(grid=(), zips=(), exclude=(), baselines=None):
    return spec_from_options(None, list(grid), list(zips), list(exclude), baselines, None)


# ------------------------------------------------------------------------------------ expansion


def test_the_done_when_grid_has_twelve_distinct_cells():
    cells, notes = expand(base(), spec([REGIMES, "seed=[0, 1, 2]"]))
    assert len(cells) == 12 and not notes
    assert len({c.id for c in cells}) == 12 and len({c.dir for c in cells}) == 12
    assert [c.label for c in cells[:3]] == ["replace alpha=0"] * 3 and cells[-1].label == "accumulate"
    assert [c.seed for c in cells[:3]] == [0, 1, 2]
    # accumulate has no alpha: its cells carry none (no duplicate per alpha)
    assert all("alpha" not in c.values["curate.regime"] for c in cells if c.label == "accumulate")


def test_ids_follow_the_config_not_the_grid():
    small, _ = expand(base(), spec(["curate.regime.alpha=[0.5, 1.0]", "seed=[0]"]))
    large, _ = expand(base(), spec(["seed=[0, 1]", "curate.regime.alpha=[1.0, 0.25, 0.5]"]))
    assert {c.id for c in small} < {c.id for c in large}  # adding values adds cells, never renames them
    # iterations, name, output_dir, executor and failure rules are not part of a cell's identity
    longer, _ = expand(base(iterations=7, name="other", stop_when=[{"metric": "fitted_var", "below": 0.1}]),
                       spec(["curate.regime.alpha=[0.5, 1.0]", "seed=[0]"]))
    assert [c.id for c in longer] == [c.id for c in small]


def test_values_that_resolve_to_one_config_are_one_cell():
    # the same block written in another order
    cells, notes = expand(base(), spec(["curate.regime=[{name: replace, alpha: 0.5}, {alpha: 0.5, name: replace}]"]))
    assert len(cells) == 1 and "same config" in notes[0]


def test_zip_exclude_and_list_index_axes():
    raw = base(train={"trainer": {"name": "gaussian_mle"}, "stages": [{"args": {"ddof": 0}}]})
    s = spec(["seed=[0, 1]"], zips=["curate.regime.alpha=[0.5, 1.0]", "train.stages.0.args.ddof=[0, 1]"],
             exclude=["seed=1,curate.regime.alpha=1.0"])
    cells, _ = expand(raw, s)
    combos = [(c.seed, c.values["curate.regime.alpha"], c.values["train.stages.0.args.ddof"]) for c in cells]
    assert combos == [(0, 0.5, 0), (0, 1.0, 1), (1, 0.5, 0)]  # zipped, not crossed; one excluded
    config = cell_config(REPO, raw, s, cells[1])
    assert config.train.stages[0].args == {"ddof": 1}
    with pytest.raises(UserError, match="one length"):
        expand(raw, spec(zips=["seed=[0, 1]", "curate.regime.alpha=[1.0]"]))
    with pytest.raises(UserError, match="index 3 is out of range"):
        expand(raw, spec(["train.stages.3.args.ddof=[0]"]))


def test_exclude_parses_several_pairs_and_lists():
    assert parse_exclude("a.b=1,c=[1, 2],d={name: x}") == {"a.b": 1, "c": [1, 2], "d": {"name": "x"}}


def test_clean_baselines_for_replace_alpha():
    cells, notes = expand(base(), spec(["curate.regime.alpha=[0, 0.5, 1.0]", "seed=[0]"], baselines="clean"))
    labels = [c.label for c in cells]
    # alpha=0 is real data already; alpha=1 has no real rows left; 0.5 gets its (1 - alpha) real-only run
    assert labels == ["alpha=0", "alpha=0.5", "alpha=0.5 [clean]", "alpha=1"]
    clean = cells[2]
    assert clean.baseline_of == "alpha=0.5" and clean.values["curate.regime.name"] == "clean_fraction"
    assert any("alpha=1" in n for n in notes)


def test_labels_and_names():
    names = short_names(["train.trainer.args.lr", "train.stages.0.args.lr", "seed"])
    assert names == {"train.trainer.args.lr": "trainer.args.lr", "train.stages.0.args.lr": "0.args.lr", "seed": "seed"}
    assert label_of({"curate.regime": {"name": "replace", "alpha": 0.5}, "seed": 3}, {}, "x") == "replace alpha=0.5"
    assert label_of({"seed": 3}, {"seed": "seed"}, "base") == "base"


def test_the_sweep_block_and_the_command_line_combine(tmp_path):
    raw = base(sweep={"name": "blocky", "grid": {"seed": [0, 1]}, "exclude": [{"seed": 1}]})
    s = spec_from_options(config_from_dict(raw).sweep, ["curate.regime.alpha=[0.5]"], [], [], None, None)
    assert s.name == "blocky" and list(s.grid) == ["seed", "curate.regime.alpha"]
    cells, _ = expand(raw, s)
    assert [(c.seed, c.label) for c in cells] == [(0, "alpha=0.5")]
    with pytest.raises(UserError, match="no axes"):
        expand(base(), SweepConfig())


def test_cells_run_shared_steps_first_in_the_schedule():
    s = spec(["curate.regime.alpha=[0, 0.5]", "seed=[0, 1]"])
    cells, _ = expand(base(), s)
    configs = {c.id: cell_config(REPO, base(), s, c) for c in cells}
    order = schedule(configs)
    by_id = {c.id: c for c in cells}
    # the first two cells share nothing (different seeds); each seed's second alpha comes after
    assert [by_id[i].seed for i in order[:2]] == [0, 1]


# ------------------------------------------------------------------------------------ running


def write(tmp_path, raw, name="grid.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def toy_sweep(tmp_path_factory):
    """alpha {0, 0.5} x seeds {0, 1} plus a cell that fails at iteration 2, 3 iterations, inline."""
    tmp = tmp_path_factory.mktemp("sweep")
    raw = base(iterations=3, output_dir=str(tmp / "grid"))
    raw["sweep"] = {"executor": "inline"}
    path = write(tmp, raw)
    sweep = create(path, grid=["curate.regime=[{name: replace, alpha: 0}, {name: replace, alpha: 0.5}, "
                               "{name: replace, alpha: 0.5, size: 1000}]", "seed=[0, 1]"],
                   exclude=["curate.regime.size=1000,seed=1"])
    statuses = run_sweep(sweep.path, poll=0.2, report=False)
    return tmp, path, sweep, statuses


def test_a_failed_cell_does_not_stop_the_others(toy_sweep):
    _, _, sweep, statuses = toy_sweep
    states = {c["label"]: statuses[c["id"]].state for c in sweep.cells()}
    assert sorted(s.state for s in statuses.values()) == ["done"] * 4 + ["failed"]
    failed = next(statuses[c["id"]] for c in sweep.cells() if "size=1000" in c["label"])
    assert "replace with alpha=0.5 needs 500 synthetic rows" in failed.error
    assert failed.steps_done == 5 and states["replace alpha=0"] == "done"  # it failed at 2.curate
    manifest = sweep.manifest()  # each cell's state as the session ended, and what was shared
    assert sorted(c["state"] for c in manifest["cells"]) == ["done"] * 4 + ["failed"]
    assert manifest["history"][-1]["cells"]["failed"] == 1 and manifest["history"][-1]["shared_steps"] == 11


def test_shared_steps_are_hard_links_and_change_no_result(toy_sweep, tmp_path):
    _, _, sweep, _ = toy_sweep
    cells = {(c["label"], c["seed"]): sweep.run(c) for c in sweep.cells()}
    a, b = cells[("replace alpha=0", 0)], cells[("replace alpha=0.5", 0)]
    for phase in ("train", "generate", "evaluate"):
        fa = next(p for p in sorted(a.phase_dir(1, phase).rglob("*"))  # not the cards: each cell's report writes its own
                  if p.is_file() and p.name not in ("stats.json", "README.md"))
        fb = b.phase_dir(1, phase) / fa.relative_to(a.phase_dir(1, phase))
        assert os.stat(fa).st_ino == os.stat(fb).st_ino  # the same file, not a copy
        assert not fb.is_symlink() and not b.phase_dir(1, phase).is_symlink()
    # iteration 2 depends on alpha: computed by each cell
    assert os.stat(a.phase_dir(2, "train") / "model" / "toy.json").st_ino != \
        os.stat(b.phase_dir(2, "train") / "model" / "toy.json").st_ino
    # which cell adopted which step is in its journal, with the seconds the step took where it ran
    records = [b.read_state().step("1.train"), a.read_state().step("1.train")]
    adopted = [r for r in records if r is not None and r.shared]
    assert len(adopted) == 1 and (adopted[0].shared_from or "").endswith("iter_001/train")
    # vector-world cells run batched; adopting a shared step is one more way a batched step completes
    assert all(r.batched for state in (a.read_state(), b.read_state()) for _, r in state.records() if not r.shared)
    summary = shared_summary(sweep)
    # seed 0: 0.curate adopted by 2 of its 3 cells, 1.curate-1.evaluate by 1 of the 2 alphas (6 steps);
    # seed 1: the same for its 2 cells (5 steps)
    assert summary["steps"] == 11
    # a cell's metrics are exactly those of the same config run on its own
    config = load_config(REPO / "configs" / "toy" / "gaussian_replace.yaml",
                         ["iterations=3", "curate.regime.alpha=0.5", f"output_dir={tmp_path / 'alone'}"])
    alone = run_experiment(config, quiet=True)
    assert alone.read_metrics() == b.read_metrics()


def test_status_shows_the_grid_and_the_error_line(toy_sweep, capsys):
    from collapsebench.cli import main

    _, _, sweep, _ = toy_sweep
    assert main(["status", str(sweep.path)]) == 0
    out = capsys.readouterr().err
    assert "replace alpha=0.5 size=1000" in out and "failed" in out and "needs 500 synthetic" in out
    assert "4 done" in out and "1 failed" in out and "shared steps saved" in out


def test_rerunning_runs_only_failed_or_missing_cells(toy_sweep):
    tmp, path, sweep, _ = toy_sweep
    before = {c["id"]: sweep.run(c).state_file.stat().st_mtime_ns for c in sweep.cells()}
    # one value more on an axis: only its cells run; the failed cell is retried (and fails again)
    create(path, grid=["curate.regime=[{name: replace, alpha: 0}, {name: replace, alpha: 0.5}, "
                       "{name: replace, alpha: 0.5, size: 1000}, {name: replace, alpha: 1}]", "seed=[0, 1]"],
           exclude=["curate.regime.size=1000,seed=1"])
    statuses = run_sweep(sweep.path, poll=0.2, report=False)
    cells = SweepLayout(sweep.path).cells()
    assert len(cells) == 7
    new = {c["id"] for c in cells if "alpha=1" in c["label"]}
    assert all(statuses[i].state == "done" for i in new)
    touched = {c["id"] for c in cells if c["id"] in before and sweep.run(c).state_file.stat().st_mtime_ns != before[c["id"]]}
    assert touched == {c["id"] for c in cells if "size=1000" in c["label"]}  # only the failed one was retried
    # the new cells adopted iteration 1 from the alpha=0 cells of their seed (alpha is not in it)
    for c in cells:
        if c["id"] in new:
            record = sweep.run(c).read_state().step("1.generate")
            assert record is not None and record.shared


@pytest.mark.slow
def test_a_killed_sweep_resumes_to_the_same_results(tmp_path):
    """The CLI in a subprocess, 2 local workers; SIGKILL to the whole process group mid-way, then the
    same command again: every cell ends with the metrics of an uninterrupted sweep."""
    raw = base(iterations=8, output_dir=str(tmp_path / "killed"))
    path = write(tmp_path, raw)
    argv = [sys.executable, "-m", "collapsebench", "sweep", str(path), "--grid", REGIMES, "--grid", "seed=[0, 1]",
            "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(argv, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sweep = SweepLayout(tmp_path / "killed")
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once some cells are done and others are not
        if sweep.exists() and any(sweep.cell_status(c).state == "done" for c in sweep.cells()):
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert any(sweep.cell_status(c).state != "done" for c in sweep.cells())
    assert subprocess.run(argv, env=env, capture_output=True).returncode == 0
    assert all(sweep.cell_status(c).state == "done" for c in sweep.cells())
    reference = base(iterations=8, output_dir=str(tmp_path / "uninterrupted"))
    assert subprocess.run([*argv[:4], str(write(tmp_path, reference, "ref.yaml")), *argv[5:]], env=env,
                          capture_output=True).returncode == 0
    again = SweepLayout(tmp_path / "uninterrupted")
    for c in sweep.cells():
        assert json.loads(json.dumps(sweep.run(c).read_metrics())) == again.run(c).read_metrics()


def test_a_cell_folder_holding_only_its_executors_files_is_a_run_folder(tmp_path):
    """A sweep's subprocess executor writes the cell's task specs (.tasks/) and logs/ into the cell
    folder before the cell's run starts; the run must not refuse that folder as someone else's."""
    from collapsebench.redo import check_run_dir

    config = config_from_dict(base(output_dir=str(tmp_path / "cell")))
    (tmp_path / "cell" / ".tasks").mkdir(parents=True)
    (tmp_path / "cell" / "logs").mkdir()
    check_run_dir(config)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a collapsebench run"):
        check_run_dir(config_from_dict(base(output_dir=str(tmp_path / "other"))))
