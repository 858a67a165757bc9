"""Long-lived workers of a phase (``PhaseContext.workers``) on the local executors, and tasks built
from function objects. The workers are real child processes (``python -m collapsebench worker``)
that import this module by name to run its functions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collapsebench.api import PhaseContext, Task, WorkerSpec, context_for, target_of
from collapsebench.config import config_from_dict
from collapsebench.errors import UserError
from collapsebench.executors.local import InlineExecutor, SubprocessExecutor
from collapsebench.run import RunDir
from conftest import REPO, tiny_config

TESTS = Path(__file__).resolve().parent
PYTHONPATH = os.pathsep.join([str(REPO / "src"), str(TESTS)])  # the workers import this module as test_workers


def probe(ctx: PhaseContext, n: int) -> dict:
    """A worker's task: where it ran, with which environment, and how many tasks this process ran
    before it (kept in the context's model cache, as an engine would be)."""
    state = ctx.models.get(("probe",), dict)
    state["calls"] = state.get("calls", 0) + 1
    return {"n": n, "pid": os.getpid(), "calls": state["calls"], "probe": os.environ.get("CB_PROBE"),
            "executor_env": os.environ.get("CB_EXECUTOR"), "devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "phase": f"{ctx.iteration}.{ctx.phase}"}


def fail(ctx: PhaseContext, user: bool) -> None:
    if user:
        raise UserError("generate.generator: a mistake in the config")
    raise ValueError("a bug")


def die(ctx: PhaseContext) -> None:
    os._exit(3)


def run_ctx(tmp_path: Path, executor=None) -> PhaseContext:
    """The context of 1.generate of a run directory with a saved config."""
    run = RunDir(tmp_path / "run")
    run.save_config(config_from_dict(tiny_config(tmp_path)))
    ctx = context_for(run.path, 1, "generate")
    return ctx.replace(executor=executor, worker_host=executor or InlineExecutor())


def specs(n: int, devices: bool = True) -> list[WorkerSpec]:
    """``n`` workers that can import this module, each with a variable (and GPU numbers) of its own."""
    return [WorkerSpec(env={"PYTHONPATH": PYTHONPATH, "CB_PROBE": f"w{i}"}, devices=str(i) if devices else None)
            for i in range(n)]


def check_probes(results: list[tuple[int, dict]], workers: int, devices: bool = True) -> None:
    """Each worker ran its three tasks in one process of its own, with its own environment."""
    for w in range(workers):
        mine = [r for v, r in results if v == w]
        assert [r["n"] for r in mine] == [0, 1, 2]
        assert [r["calls"] for r in mine] == [1, 2, 3]  # one process ran the three, keeping its state
        assert len({r["pid"] for r in mine}) == 1 and mine[0]["pid"] != os.getpid()
        assert {(r["probe"], r["phase"]) for r in mine} == {(f"w{w}", "1.generate")}
        if devices:
            assert {r["devices"] for r in mine} == {str(w)}
    assert len({r["pid"] for _, r in results}) == workers


def three_each(pool) -> list[tuple[int, dict]]:
    futures = [(w, pool.submit(w, probe, n=k)) for k in range(3) for w in range(len(pool))]
    return [(w, f.result()) for w, f in futures]


@pytest.mark.parametrize("executor", [None, InlineExecutor(), SubprocessExecutor(env={"CB_EXECUTOR": "yes"})],
                         ids=["no executor", "inline", "subprocess"])
def test_a_worker_keeps_its_process_and_environment_across_tasks(tmp_path, executor):
    ctx = run_ctx(tmp_path, executor)
    with ctx.workers(specs(2), name="probe") as pool:
        results = three_each(pool)
    check_probes(results, 2)
    assert {r["executor_env"] for _, r in results} == {"yes" if isinstance(executor, SubprocessExecutor) else None}
    assert not (ctx.run_dir / ".workers" / "1.generate.probe").exists() or \
        not any((ctx.run_dir / ".workers" / "1.generate.probe").iterdir())  # the queues are removed
    assert (ctx.run_dir / "logs" / "1.generate.probe.w0.log").exists()


def test_a_failing_task_fails_alone_and_a_dead_worker_fails_its_tasks(tmp_path):
    ctx = run_ctx(tmp_path)
    with ctx.workers(specs(1), name="errors") as pool:
        with pytest.raises(UserError, match="a mistake in the config"):
            pool.submit(0, fail, user=True).result()
        with pytest.raises(RuntimeError, match="ValueError: a bug"):
            pool.submit(0, fail, user=False).result()
        first = pool.submit(0, probe, n=0).result()
        assert first["calls"] == 1  # the worker went on after its failed tasks
        gone = pool.submit(0, die)
        after = pool.submit(0, probe, n=1)
        with pytest.raises(RuntimeError, match=r"errors\.w0 .* exited with status 3"):
            gone.result()
        with pytest.raises(RuntimeError, match="exited with status 3"):
            after.result()


def test_a_task_of_a_phase_cannot_start_workers(tmp_path):
    ctx = run_ctx(tmp_path).replace(worker_host=None)  # what a worker rebuilds for a task
    with pytest.raises(RuntimeError, match="started by a phase"), ctx.workers(specs(1)):
        pass


def test_task_targets_are_derived_from_functions(tmp_path):
    ctx = run_ctx(tmp_path)
    task = ctx.task("probe", probe, n=1)
    assert task.target_name == f"{probe.__module__}:probe" and task.spec()["target"] == task.target_name
    assert target_of(run_ctx) == f"{__name__}:run_ctx"

    def nested(ctx):
        return None

    for bad in (nested, lambda ctx: None, print.__self__):
        with pytest.raises(TypeError, match="module-level function"):
            ctx.task("bad", bad)
    copy = type(probe)(probe.__code__, probe.__globals__, "probe_copy")  # named probe, but not this module's probe
    with pytest.raises(TypeError, match="does not import back"):
        Task(key="k", target=copy, kwargs={}, run_dir=str(tmp_path))
