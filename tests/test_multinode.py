"""More than one node, on one machine: a Ray cluster of a head and two worker nodes on the loopback,
torchrun across two nodes meeting at a c10d rendezvous, and a SLURM cluster of two nodes
(``.ci/local-slurm-2nodes``), each started by the test as a cluster's operator would start it.

Marked ``cluster`` (``.ci/run`` runs the group). The nodes are processes of this machine with ports,
resources and spool folders of their own, so what the tests show is the framework's side of
several nodes (work placed on both, a node lost mid-phase, ranks on two nodes, a job of two
nodes), not the network between machines.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from collapsebench.config import config_from_dict
from collapsebench.executors.launch import free_port
from collapsebench.loop import run_experiment
from conftest import REPO, tiny_config
from test_cluster import jobs, losses, no_dropout, samples, train_stats

pytestmark = pytest.mark.cluster

NODE_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled", "COLLAPSEBENCH_PROGRESS": "0",
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
OBJECT_STORE_BYTES = 100 * 10**6  # per node; Ray otherwise takes ~30% of the RAM for each


# ------------------------------------------------------------------------------------ Ray: three nodes

@dataclass
class RayNode:
    name: str
    proc: subprocess.Popen
    ports: dict[str, int]
    node_id: str = ""


@dataclass
class RayCluster:
    """A head (no CPUs: it only coordinates) and worker nodes, each a ``ray start --block`` process
    of its own with its own ports, one CPU and the custom resources ``gen`` (what the generate
    phase's actors ask for) and its own name; ``--block`` ties the node's processes to that one,
    so a node is stopped by its pid, never by ``ray stop`` (which ends every Ray of the machine)."""

    root: Path
    nodes: dict[str, RayNode] = field(default_factory=dict)
    address: str = ""

    def start(self, name: str) -> RayNode:
        ports = {k: free_port() for k in ("node-manager", "object-manager", "dashboard-agent-listen",
                                          "dashboard-agent-grpc", "runtime-env-agent", "metrics-export")}
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--node-ip-address=127.0.0.1",
               f"--object-store-memory={OBJECT_STORE_BYTES}", "--disable-usage-stats",
               *(f"--{k}-port={v}" for k, v in ports.items())]
        if name == "head":
            port = free_port()
            self.address = f"127.0.0.1:{port}"
            cmd += ["--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false",
                    f"--temp-dir={self.root / 'ray'}"]
        else:
            cmd += [f"--address={self.address}", "--num-cpus=1", "--resources=" + json.dumps({"gen": 1, name: 1})]
        with open(self.root / f"{name}.log", "ab") as log:  # the child keeps its own copy of the descriptor
            node = RayNode(name, subprocess.Popen(cmd, env=NODE_ENV, stdout=log, stderr=subprocess.STDOUT), ports)
        self.nodes[name] = node
        return node

    def wait_alive(self, names: list[str], timeout: float = 120) -> None:
        """Until every node of ``names`` is alive in the cluster (custom resource ``name``, or the head)."""
        import ray

        deadline = time.time() + timeout
        while time.time() < deadline:
            alive = [n for n in ray.nodes() if n["Alive"]]
            for node in (self.nodes[name] for name in names):
                if node.proc.poll() is not None:
                    raise RuntimeError(f"ray node {node.name} exited: {(self.root / f'{node.name}.log').read_text()[-2000:]}")
                ours = [n["NodeID"] for n in alive if n["NodeManagerPort"] == node.ports["node-manager"]]
                node.node_id = ours[0] if ours else ""
            if all(self.nodes[name].node_id for name in names):
                return
            time.sleep(0.5)
        raise TimeoutError(f"ray nodes {names} not alive after {timeout} s")

    def join(self, name: str, attempts: int = 3) -> None:
        """Start worker node ``name`` and wait until it is in the cluster. Ray gives a node 30 s to
        register (fixed in ``ray._private.node``), which a machine busy with other work can exceed
        ("The current node timed out during startup"): the node then exits, and is started again."""
        for attempt in range(attempts):
            self.start(name)
            try:
                self.wait_alive([name])
                return
            except RuntimeError:
                if attempt == attempts - 1:
                    raise

    def kill(self, name: str) -> None:
        """The node fails at once, as a machine that goes down: every process of it (its raylet, its
        workers and the actors on them) is killed with SIGKILL."""
        import psutil

        node = self.nodes[name]
        processes = psutil.Process(node.proc.pid).children(recursive=True)
        assert any(p.name() == "raylet" for p in processes), f"no raylet under ray node {name}"
        for p in [psutil.Process(node.proc.pid), *processes]:
            p.kill()
        node.proc.wait(timeout=60)

    def stop(self) -> None:
        for node in reversed(list(self.nodes.values())):
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
                try:
                    node.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    node.proc.kill()


@pytest.fixture
def ray_cluster():
    import ray

    root = Path(tempfile.mkdtemp(prefix="cb-ray-"))  # short: Ray's socket paths must fit in 107 bytes
    cluster = RayCluster(root)
    try:
        cluster.start("head")
        deadline = time.time() + 120
        while True:  # the head takes a few seconds before it accepts a driver
            try:
                ray.init(address=cluster.address, log_to_driver=False)
                break
            except ConnectionError:
                if time.time() > deadline or cluster.nodes["head"].proc.poll() is not None:
                    raise
                time.sleep(1)
        cluster.wait_alive(["head"])
        for name in ("w1", "w2"):  # once the head answers, one at a time (see ``join``)
            cluster.join(name)
        yield cluster
    finally:
        ray.shutdown()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


GATE_PLUGIN = '''
import os
import time

from collapsebench.registry import validators

calls = 0


@validators.register("gate")
def gate(ctx, batch, path):
    """Keep every row; in each process every call after the first waits until ``path`` exists, so
    that each of the phase's workers finishes exactly one shard before the test lets them go on."""
    global calls
    calls += 1
    while calls > 1 and not os.path.exists(path):
        time.sleep(0.05)
    return [True] * len(batch["text"])
'''


def test_ray_shards_land_on_two_nodes_and_a_lost_node_resumes_to_the_same_samples(tmp_path, ray_cluster):
    """The generate phase's shards on a pool of two actors, one per worker node (each node has the
    one CPU and the ``gen`` resource an actor asks for; the head has neither). Once each node has
    finished a shard, worker node w2 dies (its raylet killed); the phase fails, w2 comes back as a
    new node, and the resume regenerates only the missing shards: the samples are those of an
    inline run of the same config."""
    import ray

    (tmp_path / "gate.py").write_text(GATE_PLUGIN)
    gate = tmp_path / "open"

    def config(name: str, executor: dict | None) -> dict:
        cfg = tiny_config(tmp_path, iterations=1, output_dir=str(tmp_path / name), plugins=[str(tmp_path / "gate.py")])
        cfg["generate"].update(shard_size=10, validators=[{"name": "gate", "path": str(gate)}])
        if executor:
            cfg["executor"] = {"generate": executor}
            cfg["resources"] = {"generate": {"cpus_per_task": 1, "extra": {"resources": {"gen": 1}}}}
        return cfg

    cluster = ray_cluster
    assert ray.get_runtime_context().get_node_id() == cluster.nodes["head"].node_id  # the driver is on the head
    workers = {cluster.nodes[n].node_id: n for n in ("w1", "w2")}
    on_ray = config("ray", {"name": "ray", "address": cluster.address, "workers": 2, "retries": 0})
    run = tmp_path / "ray"
    seen: dict[str, set[str]] = {}

    def lose_w2_once_both_nodes_have_a_shard() -> None:
        deadline = time.time() + 300
        while time.time() < deadline:
            if (run / "jobs.jsonl").exists():
                done = [r for r in jobs(run) if r["state"] == "COMPLETED" and r["key"].startswith("1.generate/")]
                seen["nodes"] = {r["node"] for r in done}
                if seen["nodes"] >= set(workers):
                    cluster.kill("w2")
                    break
            time.sleep(0.1)
        gate.touch()  # w1's actor goes on; the phase ends with the shard that was on w2

    watcher = threading.Thread(target=lose_w2_once_both_nodes_have_a_shard, daemon=True)
    watcher.start()
    with pytest.raises(RuntimeError, match="Ray worker died"):
        run_experiment(config_from_dict(on_ray), quiet=True)
    watcher.join()
    assert seen["nodes"] == set(workers)  # a shard finished on each worker node, none on the head
    lost = cluster.nodes["w2"].node_id
    assert not (run / "iter_001" / "generate").exists()  # nothing committed

    cluster.join("w2")  # the node comes back (a new node id) and the run resumes
    assert cluster.nodes["w2"].node_id != lost
    run_experiment(config_from_dict(on_ray), quiet=True)
    stats = json.loads((run / "iter_001" / "generate" / "stats.json").read_text())
    assert 2 <= stats["shards_resumed"] < stats["shards"]  # the finished shards (one per node at least) are kept
    assert stats["shards_generated"] <= stats["shards"] - stats["shards_resumed"]  # (a shard generated but not
    # validated when its node died is only validated)

    run_experiment(config_from_dict(config("inline", None)), quiet=True)  # the gate is open: no waiting
    assert samples(run) == samples(tmp_path / "inline")


# ------------------------------------------------------------------------------------ torchrun: two nodes

@pytest.fixture(scope="module")
def one_node_two_ranks(tmp_path_factory) -> Path:
    """The reference: one node of two ranks (torchrun, gloo), dropout off and no partial batch."""
    tmp = tmp_path_factory.mktemp("one-node")
    cfg = no_dropout(tmp, output_dir=str(tmp / "run"))
    cfg["train"]["launcher"] = {"name": "torchrun", "nproc_per_node": 2}
    run_experiment(config_from_dict(cfg), quiet=True)
    assert [r["local_rank"] for r in train_stats(tmp / "run")["launcher"]["ranks"]] == [0, 1]
    return tmp / "run"


def two_nodes_of_one_rank(tmp_path: Path, output_dir: Path) -> dict:
    cfg = no_dropout(tmp_path, output_dir=str(output_dir))
    cfg["train"]["launcher"] = {"name": "torchrun", "nproc_per_node": 1, "nnodes": 2,
                                "rdzv_endpoint": f"127.0.0.1:{free_port()}",
                                "args": ["--rdzv_conf=join_timeout=120"]}  # a node missing fails in 2 min, not 10
    return cfg


def same_losses(run: Path, reference: Path, tolerance: float) -> None:
    a, b = losses(reference), losses(run)
    assert len(a) == len(b) > 3
    assert max(abs(x - y) for x, y in zip(a, b)) < tolerance


def test_torchrun_two_nodes_of_one_rank_train_as_one_node_of_two(tmp_path, one_node_two_ranks):
    """``train.launcher: {name: torchrun, nnodes: 2, nproc_per_node: 1, rdzv_endpoint: 127.0.0.1:PORT}``:
    the driver starts the first node's torchrun, and the second node runs the command the launch log
    starts with, as one runs it on another machine; they meet at the c10d rendezvous. The per-step
    losses are those of one node with two ranks."""
    run = tmp_path / "two-nodes"
    second: list[subprocess.Popen] = []

    def start_the_second_node() -> None:
        log = run / "logs" / "1.train.launch.log"
        deadline = time.time() + 300
        while time.time() < deadline and not (log.exists() and "\n" in log.read_text()):
            time.sleep(0.1)
        command = shlex.split(log.read_text().splitlines()[0])
        with open(tmp_path / "node2.log", "wb") as out:
            second.append(subprocess.Popen(command, env=NODE_ENV, stdout=out, stderr=subprocess.STDOUT))

    node2 = threading.Thread(target=start_the_second_node, daemon=True)
    node2.start()
    run_experiment(config_from_dict(two_nodes_of_one_rank(tmp_path, run)), quiet=True)
    node2.join()
    assert second[0].wait(timeout=120) == 0, (tmp_path / "node2.log").read_text()[-3000:]
    assert "--nnodes=2" in second[0].args and "--rdzv_backend=c10d" in second[0].args
    ranks = train_stats(run)["launcher"]["ranks"]
    assert [(r["rank"], r["local_rank"], r["world_size"]) for r in ranks] == [(0, 0, 2), (1, 0, 2)]  # 2 nodes x 1
    same_losses(run, one_node_two_ranks, 1e-6)  # identical here


# ------------------------------------------------------------------------------------ SLURM: two nodes

def free_ports(n: int) -> int:
    """The first of ``n`` consecutive TCP ports nobody listens on now."""
    while True:
        first = free_port()
        if first + n <= 65535 and all(port_free(first + i) for i in range(1, n)):
            return first


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def slurm_two_nodes():
    """The two-node cluster of ``.ci/local-slurm-2nodes`` (it starts in about a second), stopped after
    the test; ``SLURM_CONF`` points the SLURM commands (and so submitit and the jobs) at it meanwhile."""
    script = REPO / ".ci" / "local-slurm-2nodes"
    required = os.environ.get("COLLAPSEBENCH_REQUIRE_SLURM") == "1"
    if os.geteuid() != 0 or not shutil.which("slurmd"):
        if required:
            pytest.fail("the two-node SLURM cluster needs root and slurmd (../shared/tools/local-slurm start installs it)")
        pytest.skip("the two-node SLURM cluster needs root and slurmd")
    state = Path(tempfile.mkdtemp(prefix="cb-slurm2-"))
    env = {**os.environ, "CB_SLURM2_DIR": str(state), "CB_SLURM2_PORT": str(free_ports(3))}
    started = subprocess.run([str(script), "start"], env=env, capture_output=True, text=True)
    try:
        if started.returncode != 0:
            (pytest.fail if required else pytest.skip)(f"the two-node SLURM cluster did not start: {started.stderr}")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SLURM_CONF", str(state / "etc" / "slurm.conf"))
            yield state
    finally:
        subprocess.run([str(script), "stop"], env=env, capture_output=True)
        shutil.rmtree(state, ignore_errors=True)


NODE_NOTES = """
import os
from pathlib import Path

from collapsebench.losses.builtin import cross_entropy
from collapsebench.registry import losses


@losses.register("cross_entropy_noting_the_node")
def cross_entropy_noting_the_node(logits, labels):
    \"\"\"Cross-entropy; each rank notes the SLURM node it runs on.\"\"\"
    Path({folder!r}, "rank" + os.environ["RANK"]).write_text(os.environ.get("SLURMD_NODENAME", ""))
    return cross_entropy(logits, labels)
"""


def test_slurm_runs_the_train_phase_as_one_job_of_two_nodes(tmp_path, slurm_two_nodes, one_node_two_ranks):
    """``resources.train.nodes: 2`` with ``train.launcher.nnodes: 2``: the train phase is one SLURM job
    of two nodes; its task, on the first node, starts one torchrun per node with ``srun``. Each rank
    runs on its own node (n1, n2) and the losses are those of one node with two ranks."""
    notes = tmp_path / "nodes"
    notes.mkdir()
    (tmp_path / "notes.py").write_text(NODE_NOTES.format(folder=str(notes)))
    run = tmp_path / "run"
    cfg = two_nodes_of_one_rank(tmp_path, run)
    cfg["plugins"] = [str(tmp_path / "notes.py")]
    cfg["train"]["trainer"]["loss"] = "cross_entropy_noting_the_node"
    cfg["executor"] = {"train": {"name": "slurm", "partition": "debug", "poll_s": 0.5}}
    cfg["resources"] = {"train": {"nodes": 2, "cpus_per_task": 1}}
    run_experiment(config_from_dict(cfg), quiet=True)

    assert {p.name: p.read_text() for p in notes.iterdir()} in ({"rank0": "n1", "rank1": "n2"},
                                                                {"rank0": "n2", "rank1": "n1"})
    train = {r["state"]: r for r in jobs(run) if r["key"] == "1.train"}
    assert train["SUBMITTED"]["resources"]["nodes"] == 2
    assert train["COMPLETED"]["job_id"] == train["SUBMITTED"]["job_id"]
    assert int(train["COMPLETED"]["job_id"]) >= 500000  # a job of the two-node cluster
    command = train_stats(run)["launcher"]["command"]
    assert command[:2] == ["srun", "--nodes=2"]
    same_losses(run, one_node_two_ranks, 1e-5)  # 5e-7 here: the plug-in's cross-entropy, not the Trainer's own
