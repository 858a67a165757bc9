"""The scale path without a cluster: per-phase resources, how SLURM jobs and launcher commands are
built, the DeepSpeed/FSDP checks, the ranks' error reports, the job records ``status`` shows, and
``plan``. The executors and launchers themselves run in ``tests/test_cluster.py`` (marked ``cluster``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from collapsebench.api import phase_resources
from collapsebench.config import config_from_dict
from collapsebench.errors import UserError
from collapsebench.registry import fingerprints
from conftest import REPO, tiny_config

# ------------------------------------------------------------------------------------ the config


def test_resources_per_phase_and_an_executor_spec_of_strings(tmp_path):
    cfg = tiny_config(tmp_path, executor={"name": "slurm", "partition": "debug"},
                      resources={"train": {"gpus_per_node": 8, "nodes": 2, "timeout_min": 600, "account": "lab",
                                           "extra": {"qos": "high"}}})
    config = config_from_dict(cfg)
    assert config.executor_for("train").name == "slurm"  # one spec, not a phase -> spec mapping
    assert config.executor_for("train").kwargs == {"partition": "debug"}
    train = phase_resources(config, "train")
    assert (train.gpus, train.nodes, train.timeout_min, train.cpus) == (8, 2, 600, None)
    assert dict(train.extra) == {"account": "lab", "qos": "high"}
    assert phase_resources(config, "generate").as_dict() == {}
    with pytest.raises(UserError, match="resources keys must be phases"):
        config_from_dict(tiny_config(tmp_path, resources={"trian": {"nodes": 1}}))


def test_the_launcher_is_in_no_fingerprint(tmp_path):
    plain = config_from_dict(tiny_config(tmp_path))
    launched = tiny_config(tmp_path)
    launched["train"]["launcher"] = {"name": "torchrun", "nproc_per_node": 2}
    assert fingerprints(config_from_dict(launched)) == fingerprints(plain)


def test_slurm_jobs_take_the_executor_settings_under_the_phase_resources(tmp_path):
    pytest.importorskip("submitit")
    from collapsebench.executors.slurm import SlurmExecutor

    config = config_from_dict(tiny_config(tmp_path, resources={"train": {"gpus_per_node": 4, "mem_gb": 64,
                                                                         "nodes": 2, "partition": "gpu"}}))
    ex = SlurmExecutor(partition="cpu", cpus_per_task=8, timeout_min=120, extra={"qos": "normal"})
    train = ex.parameters(phase_resources(config, "train"))
    assert train == {"partition": "gpu", "nodes": 2, "gpus_per_node": 4, "cpus_per_task": 8, "mem_gb": 64,
                     "timeout_min": 120, "qos": "normal"}
    sbatch = ex._submitit_parameters(train, "cb-1.train")
    assert sbatch["time"] == 120 and sbatch["mem"] == "65536M" and sbatch["gpus_per_node"] == 4
    assert sbatch["srun_args"] == ["--nodes=1", "--ntasks=1"]  # the task runs once; torchrun spans the nodes
    generate = ex._submitit_parameters(ex.parameters(phase_resources(config, "generate")), "cb-1.generate")
    assert generate["partition"] == "cpu" and "gpus_per_node" not in generate and "srun_args" not in generate


def test_a_slurm_job_runs_its_tasks_in_order_and_a_requeue_goes_on_from_the_next(tmp_path):
    pytest.importorskip("submitit")
    from collapsebench.api import Task
    from collapsebench.executors import run_task_file
    from collapsebench.executors.slurm import TaskJob
    from collapsebench.io import atomic_write

    def write(name: str) -> str:
        return str(Task(key=name, target=atomic_write, run_dir=str(tmp_path),
                        kwargs={"path": str(tmp_path / name), "data": name}).write_spec())

    missing = str(Task(key="bad", target=run_task_file, run_dir=str(tmp_path),
                       kwargs={"path": str(tmp_path / "nowhere.json")}).write_spec())
    job = TaskJob([write("a"), write("b"), missing, write("c")])
    results = job()
    assert [r.get("user_error") for r in results] == [None, None, f"task spec not found: {tmp_path / 'nowhere.json'}"]
    assert (tmp_path / "b").read_text() == "b" and not (tmp_path / "c").exists()  # stopped at the user error
    (tmp_path / "a").unlink()
    done = TaskJob([write("a"), write("c")])
    done.results = [{"pid": 1}]  # as pickled by the checkpoint before a requeue: "a" had finished
    assert len(done()) == 2 and not (tmp_path / "a").exists() and (tmp_path / "c").exists()


# ------------------------------------------------------------------------------------ launchers


def test_launcher_commands(make_ctx, monkeypatch):
    from collapsebench.executors.launch import accelerate, torchrun

    ctx = make_ctx(phase="train")
    one = torchrun(ctx, nproc_per_node=2)
    assert one.command[1:3] == ["-m", "torch.distributed.run"]
    assert "--nproc_per_node=2" in one.command and "--standalone" in one.command and one.keep_global_batch
    monkeypatch.delenv("SLURM_JOB_NODELIST", raising=False)
    with pytest.raises(UserError, match="inside a SLURM allocation"):
        torchrun(ctx, nproc_per_node=4, nnodes=2)
    two = torchrun(ctx, nproc_per_node=4, nnodes=2, rdzv_endpoint="node1:29400")
    assert "--rdzv_endpoint=node1:29400" in two.command and "--nnodes=2" in two.command
    acc = accelerate(ctx, num_processes=2)
    assert "--multi_gpu" in acc.command and acc.command[acc.command.index("--num_processes") + 1] == "2"
    assert "--main_process_port" in acc.command
    with pytest.raises(UserError, match="config_file: file not found"):
        accelerate(ctx, config_file="missing.yaml")


def test_deepspeed_and_fsdp_files_are_checked(tmp_path):
    from collapsebench.trainers.distributed import backend_files

    good = tmp_path / "ds.json"
    good.write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    assert backend_files({"deepspeed": "ds.json"}, tmp_path)["deepspeed"] == str(good)
    assert backend_files({"deepspeed": {"zero_optimization": {"stage": 3}}}, tmp_path)["deepspeed"]["zero_optimization"]
    assert backend_files({"fsdp": "full_shard auto_wrap"}, tmp_path) == {"fsdp": "full_shard auto_wrap"}
    with pytest.raises(UserError, match="args.deepspeed: file not found"):
        backend_files({"deepspeed": "missing.json"}, tmp_path)
    (tmp_path / "bad.json").write_text("{zero: 2")
    with pytest.raises(UserError, match="args.fsdp_config: .*bad.json is not valid JSON"):
        backend_files({"fsdp_config": "bad.json"}, tmp_path)


def test_validate_builds_the_training_arguments_with_a_deepspeed_file(tmp_path):
    from collapsebench.validate import check_backends

    cfg = tiny_config(tmp_path)
    cfg["train"]["trainer"]["args"]["deepspeed"] = "ds.json"
    cfg["train"]["launcher"] = {"name": "torchrun", "nproc_per_node": 2}
    cfg["config_dir"] = str(tmp_path)
    with pytest.raises(UserError, match="deepspeed: file not found"):
        check_backends(config_from_dict(cfg))
    (tmp_path / "ds.json").write_text(json.dumps({"train_micro_batch_size_per_gpu": "auto"}))
    with pytest.warns(UserWarning, match="deepspeed is not installed") if _no_deepspeed() else _nothing():
        assert any("train.trainer" in line for line in check_backends(config_from_dict(cfg)))


def _no_deepspeed() -> bool:
    import importlib.util

    return importlib.util.find_spec("deepspeed") is None


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_each_rank_trains_on_its_share_of_the_global_batch(monkeypatch):
    from collapsebench.trainers.distributed import KEEP_GLOBAL_BATCH, per_rank_batch

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert per_rank_batch({"per_device_train_batch_size": 16}) == {"per_device_train_batch_size": 16}
    monkeypatch.setenv(KEEP_GLOBAL_BATCH, "1")
    assert per_rank_batch({"per_device_train_batch_size": 16}) == {"per_device_train_batch_size": 8}
    with pytest.raises(UserError, match="not divisible by the 2 ranks"):
        per_rank_batch({"per_device_train_batch_size": 15})


def test_the_first_failing_rank_names_the_error(tmp_path):
    from collapsebench.executors.launch import rank_failure

    log = tmp_path / "launch.log"
    log.write_text("rank 0 of 2\nrank 1 of 2\nTraceback ...\n")
    assert "no rank reported an error" in str(rank_failure(tmp_path, log, 1))
    for rank, t, user in ((0, 2.0, False), (1, 1.0, True)):
        (tmp_path / f"error-rank{rank}.json").write_text(json.dumps(
            {"rank": rank, "world_size": 2, "type": "ValueError", "message": f"m{rank}", "user_error": user,
             "traceback": "tb", "time": t}))
    first = rank_failure(tmp_path, log, 1)
    assert isinstance(first, UserError) and str(first) == "train: rank 1 of 2: m1"
    (tmp_path / "error-rank1.json").unlink()
    assert "rank 0 of 2 failed: ValueError: m0" in str(rank_failure(tmp_path, log, 1))


def test_a_checkpoint_cut_short_by_a_preemption_is_not_resumed_from(tmp_path):
    from collapsebench.trainers.common import last_complete_checkpoint

    assert last_complete_checkpoint(tmp_path / "none") is None
    for step, state in ((50, '{"global_step": 50}'), (100, None), (150, '{"global_st')):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if state is not None:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-50")


# ------------------------------------------------------------------------------------ job records


def test_status_shows_the_jobs_still_queued_or_running(tmp_path, capfd):
    from collapsebench.executors.records import live_jobs, record_job
    from collapsebench.run import RunDir
    from collapsebench.status import print_status

    run = RunDir(tmp_path / "run")
    run.save_config(config_from_dict(tiny_config(tmp_path, output_dir=str(run.path))))
    record_job(run.path, executor="ray", key="1.generate/r000-s00000", state="RUNNING", actor="a1")
    record_job(run.path, executor="ray", key="1.generate/r000-s00001", state="RUNNING", actor="a2")
    record_job(run.path, executor="ray", key="1.generate/r000-s00000", state="COMPLETED", pid=7)
    assert [r["key"] for r in live_jobs(run.read_jobs())] == ["1.generate/r000-s00001"]
    capfd.readouterr()
    print_status(run.path)
    out = capfd.readouterr().err  # the console writes to stderr
    assert "r000-s00001" in out and "driver has stopped" in out and "r000-s00000" not in out


# ------------------------------------------------------------------------------------ plan


def test_model_sizes_match_the_models_transformers_builds():
    from transformers import AutoConfig, AutoModelForCausalLM

    from collapsebench.analysis.plan import model_size

    for arch in ({"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64, "vocab_size": 1024},
                 {"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                  "hidden_size": 64, "intermediate_size": 128, "vocab_size": 500}):
        built = AutoModelForCausalLM.from_config(AutoConfig.for_model(**arch))
        assert model_size(arch, arch["vocab_size"]).params == sum(p.numel() for p in built.parameters())


def test_plan_answers_for_every_shipped_config_without_torch():
    """Every config of configs/ plans (GPU-hours included for the language models) in one process
    that never imports torch."""
    script = (
        "import json, sys, pathlib\n"
        "from collapsebench.config import load_config\n"
        "from collapsebench.analysis.plan import make_plan\n"
        "out = {}\n"
        "for path in sorted(pathlib.Path('configs').rglob('*.yaml')):\n"
        "    plan = make_plan(load_config(path), gpu='h100', gpus=8)\n"
        "    out[str(path)] = [plan.model is not None, sum(p.seconds or 0 for p in plan.phases)]\n"
        "assert 'torch' not in sys.modules\n"
        "print(json.dumps(out))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    plans = json.loads(done.stdout)
    assert len(plans) == len(list((REPO / "configs").rglob("*.yaml")))
    assert all(seconds > 0 for is_lm, seconds in plans.values() if is_lm)
    assert sum(is_lm for is_lm, _ in plans.values()) >= 10


def test_plan_of_the_quickstart(tmp_path):
    from collapsebench.analysis.plan import make_plan
    from collapsebench.config import load_config

    config = load_config(REPO / "configs" / "quickstart.yaml")
    one, eight = make_plan(config, gpus=1), make_plan(config, gpus=8)
    train = {p.name: p for p in one.phases}["train"]
    assert len(train.tokens) == 5 and train.flops[0] == pytest.approx(6 * one.model["params"] * train.tokens[0], rel=0.2)
    assert {p.name: p.seconds for p in eight.phases}["train"] == pytest.approx(train.seconds / 8)
    with pytest.raises(UserError, match="give --params"):
        make_plan(load_config(REPO / "configs" / "quickstart.yaml", ["model.base=some/model"]))


# ------------------------------------------------------------------------------------ vLLM on Ray


def test_vllm_on_ray_requests_and_shards_round_trip(gen_base, tmp_path):
    """The requests the Ray Data vLLM processor gets (one per sample, seeded per sample) and the raw
    shards written back from its outputs, whatever order they return in (vLLM itself needs a GPU)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from collapsebench.generators.quota import Job, _read
    from collapsebench.generators.vllm_ray import requests, write_shards
    from collapsebench.models.loading import load_tokenizer

    tok = load_tokenizer(gen_base / "iter_000" / "curate" / "tokenizer")
    prompts = tmp_path / "prompts.parquet"
    pq.write_table(pa.table({"prompt": ["The cat", "A dog", "The sun"], "parent": ["p0", "p1", "p2"]}), prompts)
    jobs = [Job(0, 0, 0, 2, 11, str(tmp_path / "raw0.parquet")), Job(0, 1, 2, 3, 12, str(tmp_path / "raw1.parquet"))]
    rows = requests(jobs, str(prompts), tok, {"temperature": 1.0, "max_tokens": 4}, per_prompt=2)
    assert [(r["shard"], r["row"]) for r in rows] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]
    assert len({r["sampling_params"]["seed"] for r in rows}) == 6 and all(r["sampling_params"]["n"] == 1 for r in rows)
    assert rows[0]["tokenized_prompt"][0] == tok.bos_token_id
    eos = tok.eos_token_id
    outputs = [{"shard": r["shard"], "row": r["row"], "generated_tokens": r["tokenized_prompt"][1:] + [eos]}
               for r in reversed(rows)]  # the engines may answer in any order
    write_shards(jobs, str(prompts), tok, outputs, per_prompt=2)
    first = _read(tmp_path / "raw0.parquet")
    assert first["prompt"] == ["The cat", "The cat", "A dog", "A dog"] and first["parent"][2] == "p1"
    assert first["continuation"][0].strip() == "The cat" and first["new_tokens"][0] == len(rows[0]["tokenized_prompt"]) - 1
    with pytest.raises(RuntimeError, match="came back with 1 of 2 samples"):
        write_shards(jobs[1:], str(prompts), tok, outputs[:1], per_prompt=2)
    ray_llm = pytest.importorskip("ray.data.llm", exc_type=ImportError)
    from collapsebench.generators.vllm_ray import processor_config

    config = processor_config("model", {"tensor_parallel_size": 2}, replicas=4, batch_size=32)
    assert isinstance(config, ray_llm.vLLMEngineProcessorConfig)
    assert config.concurrency == 4 and config.engine_kwargs["tensor_parallel_size"] == 2


def test_the_config_blocks_of_the_cluster_page_validate():
    """Each YAML block of docs/cluster.md, laid over the quickstart, passes `validate` (schema,
    registry names, and every plug-in's arguments: executors, launchers, generators)."""
    import re

    import yaml

    from collapsebench.validate import validate_config

    pytest.importorskip("submitit")
    pytest.importorskip("ray")

    def merge(base: dict, over: dict) -> dict:
        out = dict(base)
        for key, value in over.items():
            nested = isinstance(value, dict) and isinstance(base.get(key), dict) and "name" not in value
            out[key] = merge(base[key], value) if nested else value  # a plug-in choice replaces the one below
        return out

    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "docs" / "cluster.md").read_text(), flags=re.S)
    assert len(blocks) == 4
    quickstart = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    for block in blocks:
        config = config_from_dict(merge(quickstart, yaml.safe_load(block)))
        checked = validate_config(config).checked
        assert any(line.startswith(("executor", "train.launcher")) for line in checked)
