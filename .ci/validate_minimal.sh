#!/usr/bin/env bash
# CI: a fresh virtual environment with only the `cpu` extra (no trl, vllm, lm-eval, ray, submitit,
# wandb, httpx) validates every shipped config and recipe. Each must end in "valid" (exit 0) or in
# one message (exit 2: e.g. the backend to install, a stand-in model not built yet), never in a
# traceback. Runs from a clean checkout: `bash .ci/validate_minimal.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${CI_MINIMAL_VENV:-.venv-ci-minimal}"
rm -rf "$VENV"
python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip
FIND=()
if [ -d /opt/wheels ]; then FIND=(--find-links /opt/wheels); fi   # a local wheel of the CPU torch, where present
"$PY" -m pip install --quiet "${FIND[@]}" -e ".[cpu]"

failed=0
shopt -s globstar nullglob
for config in configs/**/*.yaml recipes/**/*.yaml; do
  set +e
  out="$(OMP_NUM_THREADS=1 "$VENV/bin/collapsebench" validate "$config" 2>&1)"
  code=$?
  set -e
  if grep -q "Traceback" <<<"$out" || { [ "$code" -ne 0 ] && [ "$code" -ne 2 ]; }; then
    echo "FAIL ($code) $config"; echo "$out" | tail -20; failed=1
  else
    echo "ok ($code) $config: $(grep -E '^(error|valid)' <<<"$out" | head -1)"
  fi
done
exit "$failed"
