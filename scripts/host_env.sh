#!/usr/bin/env bash
# A ComfyUI-like environment for the integration tests: a second virtual environment where
# torchvision is real (torch 2.14.1 + torchvision 0.29.1, installed together from the package
# index) and spandrel comes with its own declared dependencies. It lives in a cache folder
# outside the clone, keyed by its pins, so later runs on the same machine reuse it.
#   bash scripts/host_env.sh          build (or reuse) it; prints its folder on stdout
#   bash scripts/host_env.sh --path   print its folder only (built or not)
# The package itself is not installed in it: the tests import it from the clone's src/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PINS=(
  "torch==2.14.1"
  "torchvision==0.29.1"
  "spandrel==0.4.2"
  "pytest>=7"
  # the package's own runtime dependencies (pyproject.toml [project].dependencies, less torch)
  "numpy>=1.22" "Pillow>=9.0" "opencv-python-headless>=4.6" "PyYAML>=6.0" "tqdm>=4.60"
  "safetensors>=0.4"
)
KEY=$( { "$PY" -c 'import sys; print(sys.version_info[:2])'; printf '%s\n' "${PINS[@]}"; } \
       | sha256sum | cut -c1-12)
ROOT=${MAMBAIRV2_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mambairv2-ci}
ENV="$ROOT/hostenv-$KEY"
if [ "${1:-}" = "--path" ]; then echo "$ENV"; exit 0; fi
if [ -f "$ENV/.complete" ]; then echo "$ENV"; exit 0; fi

mkdir -p "$ROOT"
# built beside its final name and moved into place, so an interrupted build is never reused
TMP=$(mktemp -d "$ROOT/.building-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
"$PY" -m venv "$TMP/env" >&2
"$TMP/env/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}" >&2
"$TMP/env/bin/python" -c "import torch, torchvision, spandrel; print('host env: torch', torch.__version__, 'torchvision', torchvision.__version__, 'spandrel', spandrel.__version__)" >&2
rm -rf "$ENV"
mv "$TMP/env" "$ENV"
# a venv's scripts name its folder: rewrite them for the final place
grep -rlF "$TMP/env" "$ENV/bin" 2>/dev/null | xargs -r sed -i "s#$TMP/env#$ENV#g"
touch "$ENV/.complete"
echo "$ENV"
