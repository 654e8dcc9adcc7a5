#!/usr/bin/env bash
# One-command set-up: installs torch first when it is absent (a pinned CPU build where the
# machine keeps one on disk), then this package with its test extras, in editable mode.
#   bash scripts/setup.sh          core + tests
#   bash scripts/setup.sh --all    also every optional integration and what its tests need
#                                  (spandrel, huggingface_hub, onnx/onnxscript/onnxruntime, gradio, triton,
#                                  Playwright with Debian's Chromium); .ci/run uses this
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP=("$PY" -m pip install -q)
if ! "$PY" -c "import torch" 2>/dev/null; then
  "${PIP[@]}" "torch==${TORCH_VERSION:-2.13.0}"
fi
"${PIP[@]}" -e ".[test]"
[ "${1:-}" = "--all" ] || exit 0

# Integrations. Installed so that torch is never replaced (a CUDA build would be several GB):
# spandrel and triton without their dependencies (spandrel asks for torchvision, whose PyPI
# wheels need another torch; the package never needs torchvision, and the tests stand in for it).
"${PIP[@]}" --no-deps "spandrel>=0.4" "triton>=3.0"
"${PIP[@]}" einops typing_extensions "huggingface_hub>=0.23" "onnx>=1.16" "onnxscript>=0.2" "onnxruntime>=1.17" \
  "gradio>=5.0" playwright
# gradio declares pillow<13 and downgrades it; it runs with the Pillow the core tests use
"${PIP[@]}" "pillow>=13" 2>/dev/null || true
# the browser test drives Debian's Chromium (Playwright's own browser download is not used)
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
    || echo "setup: chromium could not be installed; the browser test will be skipped" >&2
fi
