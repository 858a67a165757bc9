"""The machine and library build a run computed on, recorded as ``<run>/environment.json``.

A run is bit-identical when repeated on the same CPU model, with the same builds of torch, numpy
and transformers and the same number of threads (docs/reproducibility.md); across thread counts
the reductions of a matrix product are summed in another order and the last bits move. So the
run directory says which of these it had, and a run resumed under another environment keeps the
earlier ones (``previous``), so that a mix is visible.

torch is described only when this process has imported it already (a toy run does not need it,
and importing it costs a second or two); the driver of a language-model run has, after its checks.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from collapsebench.io import write_json

FILE = "environment.json"
PACKAGES = ("torch", "numpy", "transformers", "datasets", "tokenizers", "scipy", "collapsebench")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def collect() -> dict[str, Any]:
    """What decides the last bits of a run's numbers: CPU, thread count, library builds, Python."""
    env: dict[str, Any] = {
        "cpu": cpu_model(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "platform": platform.platform(),
        "packages": {p: _version(p) for p in PACKAGES},
        "thread_variables": {v: os.environ.get(v) for v in THREAD_VARIABLES},
    }
    if hasattr(os, "sched_getaffinity"):
        env["cpus_usable"] = len(os.sched_getaffinity(0))
    torch = sys.modules.get("torch")  # only when imported already: see the module docstring
    if torch is not None:
        env["torch"] = {"version": torch.__version__, "git": getattr(torch.version, "git_version", None),
                        "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
                        "interop_threads": torch.get_num_interop_threads(),
                        "libraries": [line.strip() for line in torch.__config__.parallel_info().splitlines()
                                      if line.strip() and not line.startswith("\t")
                                      and not line.startswith(("ATen/Parallel", "Environment", "std::thread"))],
                        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
                        if torch.cuda.is_available() else []}
    return env


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two environments give bit-identical runs: CPU model, thread count, builds, Python."""
    def key(env: dict[str, Any]) -> tuple[Any, ...]:
        torch = env.get("torch") or {}
        packages = env.get("packages") or {}
        return (env.get("cpu"), env.get("python"), torch.get("version"), torch.get("threads"),
                tuple(packages.get(p) for p in ("numpy", "transformers", "tokenizers", "scipy")))

    return key(a) == key(b)


def record(run_dir: str | Path) -> dict[str, Any]:
    """Write ``<run_dir>/environment.json`` (this process's environment; an earlier, different one
    of the same run moves to ``previous``) and return it."""
    path = Path(run_dir) / FILE
    env = collect()
    if path.exists():
        old = json.loads(path.read_text())
        previous = old.pop("previous", [])
        if not same(old, env):
            previous.append(old)
        if previous:
            env["previous"] = previous
    write_json(path, env)
    return env
