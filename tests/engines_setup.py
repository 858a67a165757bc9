"""What the `engines` tests share: the interpreter of vLLM's own environment (named by
COLLAPSEBENCH_VLLM_PYTHON; ``bash .ci/vllm_venv.sh`` builds it and prints it), the marks that put a
module in the group and skip it without that interpreter, and the engine arguments that run vLLM
on a CPU."""

import os

import pytest

VLLM_PYTHON = os.environ.get("COLLAPSEBENCH_VLLM_PYTHON")
ENGINES = [pytest.mark.engines,
           pytest.mark.skipif(not VLLM_PYTHON, reason="COLLAPSEBENCH_VLLM_PYTHON (bash .ci/vllm_venv.sh) is not set")]

# vLLM on the CPU: the share of RAM it reserves (the default 0.92 fails at start), no CUDA graphs
CPU_ENGINE = {"gpu_memory_utilization": 0.1, "enforce_eager": True, "dtype": "float32", "max_model_len": 256}
