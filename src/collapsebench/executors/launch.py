"""Launchers: the train phase as a distributed job, started by the launchers people already run
(``torchrun``, ``accelerate launch``), never by a launcher of our own.

``train.launcher: {name: torchrun, nproc_per_node: N}`` makes the train phase (wherever its
executor runs it) start ``N`` ranks with ``python -m torch.distributed.run ... -m collapsebench
task SPEC``; every rank re-reads the run directory and trains
(:func:`collapsebench.phases.train.run_rank`), rank 0 writes the model and the phase's stats, and
the process that launched them commits the phase once the launcher has exited with status 0. A
rank that fails writes its error into ``<phase>.tmp/.launch/``; the launcher then ends the other
ranks, and the phase fails with the first failing rank's message, committing nothing. The ranks'
output goes to ``<run>/logs/<iteration>.train.launch.log``. A killed phase resumes from the
Trainer's latest checkpoint under the launcher too.

Multi-node (``nnodes`` > 1) runs inside a SLURM allocation of that many nodes (``executor: slurm``
with ``resources.train.nodes``): one ``torchrun`` per node through ``srun``, meeting at a c10d
rendezvous on the allocation's first node. Outside SLURM, with ``rdzv_endpoint``, this process
starts its node's ``torchrun`` and the other nodes run the command the launch log starts with.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess as sp
import sys
from pathlib import Path
from typing import Any, Literal

from collapsebench.api import Launch, NonNegativeInt, PhaseContext, PositiveFloat, PositiveInt, Task
from collapsebench.errors import UserError
from collapsebench.executors.local import LOG_TAIL

RDZV_PORT = 29400  # torchrun's default c10d rendezvous port, on the allocation's first node


def free_port() -> int:
    """A TCP port nobody listens on now (for the rendezvous of one machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def slurm_first_node() -> str:
    """The first host of the SLURM allocation this process runs in."""
    nodelist = os.environ.get("SLURM_JOB_NODELIST")
    if not nodelist:
        raise UserError("train.launcher.nnodes > 1 runs inside a SLURM allocation of that many nodes (executor: slurm "
                        "with resources.train.nodes), or give train.launcher.rdzv_endpoint and start it yourself")
    out = sp.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def torchrun(ctx: PhaseContext, nproc_per_node: PositiveInt | Literal["gpu", "auto"] = 1,
             nnodes: PositiveInt = 1, rdzv_endpoint: str | None = None,
             max_restarts: NonNegativeInt = 0, args: list[str] | None = None,
             keep_global_batch: bool = True, timeout_min: PositiveFloat = 30.0) -> Launch:
    """torchrun (``torch.distributed.run``): ``nproc_per_node`` ranks on each of ``nnodes`` nodes.

    One node: a standalone rendezvous on a free port. Several: one torchrun per node of the SLURM
    allocation (``srun``), meeting at ``rdzv_endpoint`` (default: the first node). ``args``: more
    torchrun flags, passed as written."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc_per_node}",
               f"--max_restarts={max_restarts}"]
    if nnodes == 1 and rdzv_endpoint is None:
        command += ["--standalone", "--nnodes=1"]
    else:
        endpoint = rdzv_endpoint or f"{slurm_first_node()}:{RDZV_PORT}"
        rdzv_id = os.environ.get("SLURM_JOB_ID") or f"{ctx.iteration}-train"
        command += [f"--nnodes={nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}", f"--rdzv_id={rdzv_id}"]
        if nnodes > 1 and "SLURM_JOB_ID" in os.environ:
            # the task's own step has one task, and its SLURM_NTASKS=1 would make srun start one torchrun
            command = ["srun", f"--nodes={nnodes}", f"--ntasks={nnodes}", "--ntasks-per-node=1", "--overlap", *command]
    return Launch(command=[*command, *(args or [])], keep_global_batch=keep_global_batch, timeout_min=timeout_min)


def accelerate(ctx: PhaseContext, config_file: str | None = None, num_processes: PositiveInt | None = None,
               num_machines: PositiveInt = 1, args: list[str] | None = None,
               keep_global_batch: bool = True, timeout_min: PositiveFloat = 30.0) -> Launch:
    """``accelerate launch`` with an accelerate ``config_file`` (DeepSpeed, FSDP, mixed precision
    and the machines come from it, as ``accelerate config`` writes it) and/or ``num_processes``.

    Without a config file and with several processes, it runs them as one machine's data-parallel
    group (``--multi_gpu``, which also works on the CPU over gloo: ``--cpu`` would start one).
    ``args``: more ``accelerate launch`` flags, passed as written."""
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    if config_file is not None:
        path = ctx.config.resolve_path(config_file)
        if not path.is_file():
            raise UserError(f"train.launcher.config_file: file not found: {path}")
        command += ["--config_file", str(path)]
    elif (num_processes or 1) > 1:
        command += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if num_processes is not None:
        command += ["--num_processes", str(num_processes)]
    command += ["--num_machines", str(num_machines)]
    if num_machines == 1 and "--main_process_port" not in (args or []):
        command += ["--main_process_port", str(free_port())]  # the fixed default would collide between runs
    return Launch(command=[*command, *(args or [])], keep_global_batch=keep_global_batch, timeout_min=timeout_min)


# ------------------------------------------------------------------------------------ running it

def launch_dir(ctx: PhaseContext) -> Path:
    """Where the ranks leave their records (errors, rank 0's stats) inside the phase's work folder."""
    return ctx.out_dir / ".launch"


def log_file(ctx: PhaseContext) -> Path:
    return ctx.run_dir / "logs" / f"{ctx.iteration}.{ctx.phase}.launch.log"


def run_launched(ctx: PhaseContext, name: str, launch: Launch, task: Task) -> dict[str, Any]:
    """Start the ranks of ``task`` with ``launch``; wait; return rank 0's stats, or raise the first
    failing rank's error (a UserError stays one)."""
    records = launch_dir(ctx)
    shutil.rmtree(records, ignore_errors=True)
    records.mkdir(parents=True)
    log = log_file(ctx)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **launch.env}
    command = [*launch.command, *task.command()[1:]]  # the launcher starts `-m collapsebench task SPEC`
    with open(log, "wb") as out:
        out.write((" ".join(command) + "\n").encode())
        out.flush()
        code = sp.call(command, env=env, stdout=out, stderr=sp.STDOUT)
    if code != 0:
        raise rank_failure(records, log, code)
    stats_file = records / "stats.json"
    if not stats_file.exists():
        raise RuntimeError(f"train.launcher {name} exited with status 0 but rank 0 left no stats; see {log}")
    stats: dict[str, Any] = json.loads(stats_file.read_text())
    ranks = sorted((json.loads(p.read_text()) for p in records.glob("rank*.json")), key=lambda r: r["rank"])
    stats["launcher"] = {"name": name, "world_size": len(ranks), "ranks": ranks, "log": str(log),
                         "command": command}
    shutil.rmtree(records)
    return stats


def rank_failure(records: Path, log: Path, code: int) -> Exception:
    """The error of the first rank that failed (by time), or the launcher's status and log tail.
    torchrun's own account of a rank that died without a word (killed, out of memory) is quoted."""
    errors = sorted((json.loads(p.read_text()) for p in records.glob("error-rank*.json")), key=lambda e: e["time"])
    text = log.read_text(errors="replace") if log.exists() else ""
    tail = text[-LOG_TAIL:]
    cause = text[text.rindex("Root Cause"):][:LOG_TAIL] if "Root Cause" in text else ""
    if not errors:
        return RuntimeError(f"train: the launcher exited with status {code} and no rank reported an error; "
                            f"the end of {log}:\n{cause or tail}")
    first = errors[0]
    where = f"train: rank {first['rank']} of {first['world_size']}"
    if first["user_error"]:
        return UserError(f"{where}: {first['message']}")
    died = f"\nthe launcher's account: {cause}" if cause and f"rank      : {first['rank']} " not in cause else ""
    return RuntimeError(f"{where} failed: {first['type']}: {first['message']}{died}\n(all ranks' output: {log})\n"
                        f"{first['traceback']}")
