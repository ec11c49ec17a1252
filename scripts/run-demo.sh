#!/usr/bin/env bash
# The demo job on an existing build: export the default model and run the sample questions.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
echo "NOTE: the default model has random weights until a trained model is bundled (issue 9): its answers are meaningless."
"$ROOT/tools/deformer-export" --random-init --config "$ROOT/tests/fixtures/tiny-bert.json" \
  --vocab "$BUILD_DIR/tests/fixtures/own-vocab.txt" --seed 1 --out "$BUILD_DIR/demo-model.pt"
