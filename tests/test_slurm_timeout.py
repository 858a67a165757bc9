"""A SLURM job that runs out of time: SLURM signals it ``signal_delay_s`` before its limit, submitit
(the job is Checkpointable) requeues it as a timeout, and the requeued job resumes the phase, so the
run finishes with what an uninterrupted run gives. The preemption path is tested in
``test_cluster.py``; this is the other way a job is requeued, through the real time limit.

Marked ``cluster`` (``.ci/run`` runs the group on the one-node SLURM cluster it starts).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from collapsebench.config import config_from_dict
from collapsebench.loop import run_experiment
from test_cluster import jobs, losses, no_dropout, slurm, train_stats  # noqa: F401 (slurm: a fixture)

pytestmark = pytest.mark.cluster

SLOW_FIRST_RUN = '''
import os
import time

from collapsebench.losses.builtin import cross_entropy
from collapsebench.registry import losses

calls = 0


@losses.register("cross_entropy_waiting_for_the_time_limit")
def cross_entropy_waiting_for_the_time_limit(logits, labels):
    """Cross-entropy. In a SLURM job's first run, from the sixth step on (a checkpoint is written at
    step 4), it waits, up to 5 minutes, for SLURM's time-limit signal, which ends the run."""
    global calls
    calls += 1
    first_run = "SLURM_JOB_ID" in os.environ and os.environ.get("SLURM_RESTART_COUNT", "0") == "0"
    deadline = time.time() + 300
    while first_run and calls >= 6 and time.time() < deadline:
        time.sleep(0.1)
    return cross_entropy(logits, labels)
'''


def test_a_slurm_job_out_of_time_is_requeued_and_resumes_the_phase(tmp_path, slurm):  # noqa: F811
    """The train job asks one minute (``resources.train.timeout_min: 1``) and waits once it has a
    checkpoint; SLURM's signal comes 5 s plus up to its 30 s check before the limit, submitit logs
    the job as timed out and requeues it, and the requeued job resumes from the checkpoint. The
    per-step losses are those of the same config run inline."""
    (tmp_path / "slow.py").write_text(SLOW_FIRST_RUN)

    def config(name: str, executor: dict | None) -> dict:
        cfg = no_dropout(tmp_path, output_dir=str(tmp_path / name), plugins=[str(tmp_path / "slow.py")])
        cfg["train"]["trainer"]["loss"] = "cross_entropy_waiting_for_the_time_limit"
        if executor:
            cfg["executor"] = {"train": executor}
            cfg["resources"] = {"train": {"timeout_min": 1}}
        return cfg

    run = tmp_path / "slurm"
    run_experiment(config_from_dict(config("slurm", {"name": "slurm", "partition": "debug", "poll_s": 0.5,
                                                     "signal_delay_s": 5, "max_requeues": 3})), quiet=True)
    train = [r for r in jobs(run) if r["key"] == "1.train"]
    done = next(r for r in train if r["state"] == "COMPLETED")
    assert done["restarts"] >= 1
    assert re.search(r"Caught signal SIGUSR2 on \S+: this job is timed-out", Path(done["log"]).read_text())  # not preempted
    stats = train_stats(run)
    assert stats["resumed_from"]  # from the checkpoint of the first run
    deadline, acct = time.time() + 60, []
    while time.time() < deadline and acct in ([], ["RUNNING"], ["COMPLETING"]):  # sacct lags the result file
        acct = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", done["job_id"]], capture_output=True,
                              text=True, check=True).stdout.split()
        time.sleep(1)
    assert acct == ["COMPLETED"], acct

    run_experiment(config_from_dict(config("inline", None)), quiet=True)
    assert losses(run) == losses(tmp_path / "inline")
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["holdout_perplexity"] == \
        json.loads((tmp_path / "inline" / "metrics.jsonl").read_text().splitlines()[0])["holdout_perplexity"]
