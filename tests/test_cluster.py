"""The scale path end to end, on real engines: Ray (a local instance), SLURM (the one-node cluster of
``../shared/tools/local-slurm``, started by ``.ci/run``) and torchrun / accelerate on the CPU.

Marked ``cluster``: ``.ci/run`` runs this group after the default suite (``python -m pytest -m
cluster``). Each of the three commands of docs/cluster.md runs from the project root as a user
runs it, and must give the samples and holdout perplexity of the inline run of the same command,
with evidence that the work ran elsewhere: SLURM job ids per phase in ``sacct``, Ray worker
process ids that are not the driver's, two ranks in the torchrun log. A phase's long-lived workers
run three tasks each in one process with their own environment on Ray and on SLURM. Without a SLURM cluster the
SLURM tests skip, unless ``COLLAPSEBENCH_REQUIRE_SLURM=1`` (set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from collapsebench.config import config_from_dict
from collapsebench.errors import UserError
from collapsebench.loop import run_experiment
from conftest import REPO, tiny_config

pytestmark = pytest.mark.cluster

TIMING = ("per_second", "seconds")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLLAPSEBENCH_PROGRESS": "0", "RAY_AUTH_MODE": "disabled",
       "PYTHONPATH": os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}


# ------------------------------------------------------------------------------------ helpers

def quickstart(out: Path, *overrides: str, watch=None) -> subprocess.Popen:
    """`collapsebench run configs/quickstart.yaml iterations=1 ...` from the project root, run to its end."""
    cmd = [sys.executable, "-m", "collapsebench", "run", "configs/quickstart.yaml", "iterations=1",
           f"output_dir={out}", *overrides]
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if watch is not None:
        threading.Thread(target=watch, args=(out,), daemon=True).start()
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output[-3000:]
    return proc


def samples(run: Path, iteration: int = 1) -> list[str]:
    import datasets

    return datasets.load_from_disk(str(run / f"iter_{iteration:03d}" / "generate" / "samples"))["text"]


def metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not any(t in k for t in TIMING)} for r in rows]


def jobs(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "jobs.jsonl").read_text().splitlines()]


def train_stats(run: Path) -> dict:
    return json.loads((run / "iter_001" / "train" / "stats.json").read_text())


@pytest.fixture(scope="module")
def inline(tmp_path_factory):
    """The inline run of the quickstart command: the reference every executor must reproduce."""
    out = tmp_path_factory.mktemp("inline") / "run"
    quickstart(out)
    return out


@pytest.fixture(scope="module")
def slurm():
    """A reachable SLURM controller (``.ci/run`` starts one with ``local-slurm start``)."""
    ok = shutil.which("sbatch") and subprocess.run(["squeue"], capture_output=True).returncode == 0
    if not ok:
        if os.environ.get("COLLAPSEBENCH_REQUIRE_SLURM") == "1":
            pytest.fail("no SLURM cluster: start one with eval \"$(../shared/tools/local-slurm start)\"")
        pytest.skip("no SLURM cluster (start one with ../shared/tools/local-slurm start)")


# ------------------------------------------------------------------------------------ the three commands

def test_ray_quickstart_gives_the_inline_samples(tmp_path, inline):
    out = tmp_path / "run"
    proc = quickstart(out, "executor={name: ray, address: local}")
    assert samples(out) == samples(inline)
    assert metrics(out) == metrics(inline)
    done = [r for r in jobs(out) if r["state"] == "COMPLETED"]
    assert {r["key"].split("/")[0] for r in done} == {"0.curate", "1.curate", "1.train", "1.generate", "1.evaluate"}
    assert all(r["executor"] == "ray" and r["pid"] != proc.pid for r in done)  # workers, not the driver
    assert any(r["key"].startswith("1.generate/") and r["actor"] for r in done)  # shards on the actor pool


def test_slurm_quickstart_gives_the_inline_samples_after_a_preemption(tmp_path, inline, slurm):
    """Every phase is a SLURM job (the shards a job array); the train job is preempted (SIGUSR2,
    as SLURM signals it) once it has a checkpoint, requeued by submitit, and resumes from it."""
    preempted: list[str] = []
    status: list[str] = []

    def preempt(run: Path) -> None:
        deadline = time.time() + 600
        while time.time() < deadline and not preempted:
            ckpt = list((run / "iter_001" / "train.tmp" / "checkpoints").glob("checkpoint-*"))
            if ckpt and (run / "jobs.jsonl").exists():
                job = next(r["job_id"] for r in jobs(run) if r["key"] == "1.train")
                shown = subprocess.run([sys.executable, "-m", "collapsebench", "status", str(run)], env=ENV,
                                       capture_output=True, text=True)
                status.append(shown.stdout + shown.stderr)
                subprocess.run(["scancel", "--signal=USR2", job], check=True)
                preempted.append(job)
            time.sleep(0.2)

    out = tmp_path / "run"
    quickstart(out, "executor={name: slurm, partition: debug}", watch=preempt)
    assert samples(out) == samples(inline)
    assert metrics(out) == metrics(inline)
    assert preempted and train_stats(out)["resumed_from"]  # the requeued job resumed from the checkpoint
    assert "jobs queued or running" in status[0] and preempted[0] in status[0]  # status showed the running job
    final = {r["key"]: r for r in jobs(out) if r["state"] == "COMPLETED"}
    assert final["1.train"]["restarts"] >= 1
    assert {k.split("/")[0] for k in final} == {"0.curate", "1.curate", "1.train", "1.generate", "1.evaluate"}
    assert "_" in final["1.generate/r000-s00000"]["job_id"]  # the shards were one job array
    ids = sorted({r["job_id"] for r in final.values()})
    acct = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(ids)], capture_output=True,
                          text=True, check=True).stdout
    states = dict(line.split("|") for line in acct.split())
    assert all(states[j] == "COMPLETED" for j in ids), states


def test_torchrun_quickstart_trains_as_two_ranks(tmp_path, inline):
    out = tmp_path / "run"
    proc = quickstart(out, "train.launcher={name: torchrun, nproc_per_node: 2}")
    one, two = train_stats(inline), train_stats(out)
    assert two["steps"] == one["steps"] and two["blocks"] == one["blocks"]
    assert two["global_batch"] == one["global_batch"] == 16  # tokens per step: 16 blocks of 64
    assert two["launcher"]["world_size"] == 2
    assert len({r["pid"] for r in two["launcher"]["ranks"]} - {proc.pid}) == 2
    log = Path(two["launcher"]["log"]).read_text()
    assert "rank 0 of 2" in log and "rank 1 of 2" in log
    ppl_one, ppl_two = metrics(inline)[0]["holdout_perplexity"], metrics(out)[0]["holdout_perplexity"]
    assert abs(ppl_two / ppl_one - 1) < 0.05


# ------------------------------------------------------------------------------------ launchers

def no_dropout(tmp_path, **sections):
    cfg = tiny_config(tmp_path, iterations=1, **sections)
    cfg["model"]["architecture"].update(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    # the last, partial batch is evened out across ranks by repeating rows: drop it on both sides
    cfg["train"]["trainer"]["args"].update(logging_steps=1, per_device_train_batch_size=8, dataloader_drop_last=True)
    return cfg


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in train_stats(run)["log_history"] if "loss" in r]


@pytest.mark.parametrize("launcher", [{"name": "torchrun", "nproc_per_node": 2},
                                      {"name": "accelerate", "num_processes": 2}])
def test_two_ranks_give_the_loss_curve_of_one_process(tmp_path, launcher):
    """Same global batch, dropout off, no partial batch: the per-step losses of 2 ranks (gloo) and of
    1 process agree to 1e-5 (float reductions in another order)."""
    one = no_dropout(tmp_path, output_dir=str(tmp_path / "one" / "run"))
    run_experiment(config_from_dict(one), quiet=True)
    two = no_dropout(tmp_path, output_dir=str(tmp_path / "two" / "run"))
    two["train"]["launcher"] = launcher
    run_experiment(config_from_dict(two), quiet=True)
    a, b = losses(tmp_path / "one" / "run"), losses(tmp_path / "two" / "run")
    assert len(a) == len(b) > 3
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5
    assert train_stats(tmp_path / "two" / "run")["launcher"]["world_size"] == 2


def test_a_failing_rank_ends_the_phase_with_its_message(tmp_path):
    plugin = tmp_path / "rank_loss.py"
    plugin.write_text(
        "import os\nfrom collapsebench.registry import losses\n\n"
        "@losses.register('fails_on_rank_1')\n"
        "def fails_on_rank_1(logits, labels):\n"
        "    if os.environ.get('RANK') == '1':\n"
        "        raise RuntimeError('rank one gives up')\n"
        "    from collapsebench.losses.builtin import cross_entropy\n"
        "    return cross_entropy(logits, labels)\n")
    cfg = no_dropout(tmp_path, plugins=[str(plugin)], output_dir=str(tmp_path / "run"))
    cfg["train"]["trainer"]["loss"] = "fails_on_rank_1"
    cfg["train"]["launcher"] = {"name": "torchrun", "nproc_per_node": 2}
    with pytest.raises(RuntimeError, match="rank 1 of 2 failed: RuntimeError: rank one gives up"):
        run_experiment(config_from_dict(cfg), quiet=True)
    assert not (tmp_path / "run" / "iter_001" / "train").exists()  # nothing committed


def test_a_killed_rank_fails_the_phase_and_the_resume_continues_from_the_checkpoint(tmp_path):
    cfg = no_dropout(tmp_path, output_dir=str(tmp_path / "run"))
    cfg["train"]["trainer"]["args"].update(num_train_epochs=6, save_steps=4)
    cfg["train"]["launcher"] = {"name": "torchrun", "nproc_per_node": 2}
    run = tmp_path / "run"
    killed: list[int] = []

    def kill_rank_1() -> None:
        work = run / "iter_001" / "train.tmp"
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            if list(work.glob("checkpoints/checkpoint-*/trainer_state.json")) and (work / ".launch" / "rank1.json").exists():
                pid = json.loads((work / ".launch" / "rank1.json").read_text())["pid"]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.01)

    threading.Thread(target=kill_rank_1, daemon=True).start()
    with pytest.raises(RuntimeError) as failure:
        run_experiment(config_from_dict(cfg), quiet=True)
    assert killed and not (run / "iter_001" / "train").exists()
    assert re.search(r"rank\s*: 1 \(local_rank: 1\)\s*exitcode\s*: -9", str(failure.value))  # torchrun's account
    run_experiment(config_from_dict(cfg), quiet=True)  # the resume, under the launcher again
    stats = train_stats(run)
    assert stats["resumed_from"] and stats["launcher"]["world_size"] == 2
    assert stats["steps"] == 6 * (stats["blocks"] // 8)  # every step of the 6 epochs (global batch 8, last dropped)


# ------------------------------------------------------------------------------------ Ray: shards and resume

@pytest.fixture
def local_ray():
    import ray

    yield
    ray.shutdown()


def test_ray_resume_after_a_killed_worker_recomputes_only_the_missing_shards(tmp_path, local_ray):
    def config(name, workers, retries=0):
        cfg = tiny_config(tmp_path, iterations=1, output_dir=str(tmp_path / name / "run"))
        cfg["generate"]["shard_size"] = 10
        cfg["executor"] = {"name": "ray", "address": "local", "workers": workers, "retries": retries,
                           "init": {"num_cpus": 2}}
        return config_from_dict(cfg)

    killed: list[int] = []

    def kill_first_worker(run: Path) -> None:
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            if (run / "jobs.jsonl").exists():
                done = [r for r in jobs(run) if r["state"] == "COMPLETED" and r["key"].startswith("1.generate/")]
                if done:
                    os.kill(done[0]["pid"], signal.SIGKILL)
                    killed.append(done[0]["pid"])
            time.sleep(0.02)

    run = tmp_path / "one" / "run"
    threading.Thread(target=kill_first_worker, args=(run,), daemon=True).start()
    with pytest.raises(RuntimeError, match="Ray worker died"):
        run_experiment(config("one", workers=1), quiet=True)
    assert killed
    run_experiment(config("one", workers=1), quiet=True)  # the resume
    stats = json.loads((run / "iter_001" / "generate" / "stats.json").read_text())
    assert 1 <= stats["shards_resumed"] < stats["shards"]
    assert stats["shards_generated"] == stats["shards"] - stats["shards_resumed"]

    run_experiment(config("two", workers=2), quiet=True)  # 2 workers, no kill
    inline_cfg = tiny_config(tmp_path, iterations=1, output_dir=str(tmp_path / "inline" / "run"))
    inline_cfg["generate"]["shard_size"] = 10
    run_experiment(config_from_dict(inline_cfg), quiet=True)
    reference = samples(tmp_path / "inline" / "run")
    assert samples(run) == samples(tmp_path / "two" / "run") == reference
    assert metrics(run) == metrics(tmp_path / "inline" / "run")


def test_ray_workers_keep_their_actor_and_environment_across_tasks(tmp_path, local_ray):
    from collapsebench.executors.ray import RayExecutor
    from test_workers import check_probes, run_ctx, specs, three_each

    ctx = run_ctx(tmp_path, RayExecutor(address="local", init={"num_cpus": 2}))
    with ctx.workers(specs(2, devices=False), name="probe") as pool:
        results = three_each(pool)
    check_probes(results, 2, devices=False)
    done = [r for r in jobs(ctx.run_dir) if r["state"] == "COMPLETED"]
    assert len(done) == 6 and len({r["actor"] for r in done}) == 2  # six tasks on two actors


# ------------------------------------------------------------------------------------ SLURM: workers, errors

def test_slurm_workers_keep_their_job_and_environment_across_tasks(tmp_path, slurm):
    from collapsebench.executors.slurm import SlurmExecutor
    from test_workers import check_probes, run_ctx, specs, three_each

    ctx = run_ctx(tmp_path, SlurmExecutor(partition="debug", poll_s=0.2))
    with ctx.workers(specs(2, devices=False), name="probe") as pool:
        results = three_each(pool)
    check_probes(results, 2, devices=False)
    final = {r["key"]: r for r in jobs(ctx.run_dir) if r["state"] == "COMPLETED"}
    assert set(final) == {"1.generate.probe.w0", "1.generate.probe.w1"}  # one job per worker
    assert all(r["tasks"] == 3 for r in final.values())
    assert {r["pid"] for r in final.values()} == {r["pid"] for _, r in results}

def test_a_user_error_in_a_slurm_job_is_a_user_error_in_the_driver(tmp_path, slurm):
    cfg = tiny_config(tmp_path, iterations=1, output_dir=str(tmp_path / "run"),
                      executor={"name": "slurm", "partition": "debug"})
    (tmp_path / "blank.txt").write_text("\n   \n\n")  # passes validate (the file is there); the job finds no text
    cfg["data"]["source"]["path"] = str(tmp_path / "blank.txt")
    with pytest.raises(UserError, match="data.source .*blank"):
        run_experiment(config_from_dict(cfg), quiet=True)
    record = [r for r in jobs(tmp_path / "run") if r["state"] == "COMPLETED"]
    assert record and Path(record[0]["log"]).parent.exists()  # the job ran, and its log is named


def test_a_detached_sweep_runs_its_driver_as_a_slurm_job(tmp_path, slurm):
    """`sweep --detach` with a SLURM executor: the command returns at once, the driver is a SLURM job
    of its own (it outlives the shell), and it runs the cells as SLURM jobs to the end."""
    out = tmp_path / "grid"
    cmd = [sys.executable, "-m", "collapsebench", "sweep", "configs/sweeps/gaussian_grid.yaml", f"output_dir={out}",
           "iterations=3", "sweep.grid={seed: [0, 1]}", "sweep.executor={name: slurm, partition: debug}", "--detach"]
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    match = re.search(r"slurm job (\d+)", proc.stdout + proc.stderr)
    assert match, proc.stdout + proc.stderr
    driver = match.group(1)
    cells = [out / c["dir"] for c in json.loads((out / "sweep.json").read_text())["cells"]]
    assert len(cells) == 2
    deadline = time.time() + 600
    while time.time() < deadline and not all((c / "metrics.jsonl").exists() and
                                             len((c / "metrics.jsonl").read_text().splitlines()) == 3 for c in cells):
        time.sleep(2)
    state = ""
    while time.time() < deadline:  # the driver ends once it has written the sweep's report
        state = subprocess.run(["sacct", "-j", driver, "-X", "-n", "-o", "State"], capture_output=True,
                               text=True).stdout.strip()
        if state in ("COMPLETED", "FAILED", "CANCELLED"):
            break
        time.sleep(2)
    assert state == "COMPLETED", (state, list((out / "logs" / "driver").glob("*/*")))
    for cell in cells:
        assert len((cell / "metrics.jsonl").read_text().splitlines()) == 3
        assert any(r["executor"] == "slurm" and r["state"] == "COMPLETED" for r in jobs(cell))  # the cell was a job
    assert (out / "logs" / "driver" / driver).is_dir()
