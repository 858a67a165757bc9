"""The journal (state.json) read and written through typed records: the files written before the
records existed (tests/fixtures, made by the driver of b325fd2) read back to the same bytes."""

from __future__ import annotations

import json

import pytest

from collapsebench import journal
from collapsebench.errors import UserError
from collapsebench.journal import Adopted, RunState
from conftest import REPO

FIXTURES = REPO / "tests" / "fixtures"


@pytest.mark.parametrize("name", ["state_v1.json", "state_v1_batched.json"])
def test_a_version_1_journal_reads_and_writes_back_to_the_same_bytes(name):
    text = (FIXTURES / name).read_text()
    state = journal.loads(text)
    assert journal.dumps(state) == text
    assert json.loads(journal.dumps(journal.loads(journal.dumps(state)))) == json.loads(text)


def test_the_records_say_what_the_file_says():
    state = journal.loads((FIXTURES / "state_v1.json").read_text())
    raw = json.loads((FIXTURES / "state_v1.json").read_text())
    shared = state.step("0.curate")
    assert shared is not None and shared.shared and shared.done and shared.attempts is None
    assert shared.saved_s == raw["steps"]["0.curate"]["saved_s"] and (shared.shared_from or "").endswith("iter_000/curate")
    assert shared.stats is not None and shared.stats.metrics == {"holdout_size": 1000, "real_size": 100}
    failed = state.failed_steps()
    assert [r.error for r in failed] == [raw["steps"]["2.curate"]["error"]] and failed[0].traceback is None
    assert state.failure is not None and state.failure.stopped_at is None
    assert [c.rule for c in state.failure.time_to_failure] == ["fitted_var < 0.99"]
    batched = journal.loads((FIXTURES / "state_v1_batched.json").read_text())
    train = batched.step("1.train")
    assert train is not None and train.batched and train.stats is not None and train.stats.init == "previous"


def test_unknown_keys_and_explicit_nulls_are_kept():
    raw = json.loads((FIXTURES / "state_v1_batched.json").read_text())
    raw["note"] = {"by": "someone"}
    raw["steps"]["1.train"]["host"] = "node7"
    raw["steps"]["1.train"]["stats"]["resumed_from"] = None
    raw["steps"]["1.train"]["stats"]["custom"] = 3
    state = RunState.from_json(raw)
    assert json.loads(journal.dumps(state)) == raw


def test_a_step_records_what_the_driver_wrote_before():
    """start / finish / fail / adopt write the keys of the version-1 entries, nothing else."""
    raw = json.loads((FIXTURES / "state_v1.json").read_text())["steps"]
    state = RunState()
    done = state.start("1.train", seed=1, fingerprint="f", executor="inline")
    done.finish({"init": "previous", "seed": 1, "fingerprint": "f", "iteration": 1})
    assert done.to_json().keys() == raw["1.train"].keys() and done.attempts == 1
    assert done.to_json()["stats"] == {"init": "previous"}
    failed = state.start("2.curate", seed=2, fingerprint="g", executor="inline")
    failed.fail(UserError("no"))
    assert failed.to_json().keys() == raw["2.curate"].keys() and failed.error == "UserError: no"
    again = state.start("2.curate", seed=2, fingerprint="g", executor="inline")
    assert again.attempts == 2 and again.running
    adopted = state.start("0.curate", seed=3, fingerprint="h", executor="inline")
    adopted.adopt(Adopted(shared_from="/x/iter_000/curate", saved_s=0.2, linked_bytes=10), {"metrics": {"n": 1}})
    assert adopted.to_json().keys() == raw["0.curate"].keys() and adopted.duration_s == 0.0


def test_a_corrupt_journal_is_a_user_error(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(UserError, match="state.json is corrupt"):
        journal.read(path)
    assert journal.read(tmp_path / "missing.json").steps == {}
