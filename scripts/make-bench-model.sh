#!/usr/bin/env bash
# Writes a BERT-base-shaped model with random weights (speed work only: its answers are meaningless).
# Usage: scripts/make-bench-model.sh OUT.pt [DATA_DIR]   (DATA_DIR defaults to ../shared/data)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${2:-${DEFORMER_DATA:-$ROOT/../shared/data}}
exec "$ROOT/tools/deformer-export" --random-init --config "$DATA/configs/bert-base-uncased-config.json" \
  --vocab "$DATA/tokenizers/bert-base-uncased-vocab.txt" --seed 0 --out "$1"
