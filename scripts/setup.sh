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

# Integrations. Installed so that torch is never replaced (a CUDA build would be several GB) and
# the Pillow and numpy in place stay as they are. spandrel goes in last and without its
# dependencies (it asks for torchvision, whose PyPI wheels need another torch; the package never
# needs torchvision, and the tests stand in for it): installed earlier, every later pip call would
# print its missing torchvision as an ERROR.
"${PIP[@]}" packaging einops typing_extensions "huggingface_hub>=0.23" "onnx>=1.16" "onnxscript>=0.2" "onnxruntime>=1.17" playwright
# gradio declares pillow<13: pip would downgrade the Pillow in place. Its own dependencies come
# with a constraint that holds Pillow and numpy, gradio itself without its Pillow cap.
KEEP=$(mktemp)
trap 'rm -f "$KEEP"' EXIT
"$PY" - "$KEEP" <<'PYEOF'
import sys
from importlib.metadata import version
with open(sys.argv[1], "w") as f:
    for name in ("torch", "numpy", "Pillow"):
        f.write(f"{name}=={version(name)}\n")
PYEOF
"${PIP[@]}" --no-deps "gradio>=5.0"
GRADIO_DEPS=$("$PY" - <<'PYEOF'
from importlib.metadata import requires
from packaging.requirements import Requirement
for text in requires("gradio") or []:
    req = Requirement(text)
    if req.marker is None or req.marker.evaluate({"extra": ""}):
        print(req.name if req.name.lower() == "pillow" else str(req))
PYEOF
)
# shellcheck disable=SC2086
"${PIP[@]}" --no-warn-conflicts -c "$KEEP" $GRADIO_DEPS
if "$PY" -c "import sys, torch; sys.exit(0 if torch.version.cuda and torch.cuda.is_available() else 1)" 2>/dev/null; then
  "$PY" -c "import triton" 2>/dev/null || "${PIP[@]}" --no-deps "triton>=3.0"
else
  echo "setup: no CUDA GPU here: triton (~1 GB, the GPU scan only) left out" >&2
fi
"${PIP[@]}" --no-deps "spandrel>=0.4"
echo "setup: gradio runs here with Pillow $("$PY" -c 'import PIL; print(PIL.__version__)') (it declares pillow<13; the app's tests run with it); spandrel without torchvision (the package never imports it)" >&2
# the browser test drives Debian's Chromium (Playwright's own browser download is not used)
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
    || echo "setup: chromium could not be installed; the browser test will be skipped" >&2
fi
