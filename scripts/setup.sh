#!/usr/bin/env bash
# One-command set-up: installs torch first when it is absent (a pinned CPU build where the
# machine keeps one on disk), then this package with its test extras, in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install "torch==${TORCH_VERSION:-2.13.0}"
fi
"$PY" -m pip install -e ".[test]"
