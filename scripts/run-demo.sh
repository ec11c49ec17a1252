#!/usr/bin/env bash
# The demo job on an existing build: the sample questions over the sample documents, in both modes, timed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
QA=$BUILD_DIR/tools/deformer-qa
DEMO=$BUILD_DIR/demo
MODEL=${DEFORMER_MODEL:-$DEMO/model.pt}
mkdir -p "$DEMO"

if [ -z "${DEFORMER_MODEL:-}" ]; then
  echo "NOTE: no trained model is bundled yet (issue 9): the demo model has RANDOM weights, so its answers are"
  echo "      meaningless. The demo shows the pipeline and the timing of both modes. Set DEFORMER_MODEL to use yours."
  if [ ! -f "$MODEL" ]; then
    "$ROOT/tools/deformer-export" --random-init --config "$ROOT/models/demo-shape.json" \
      --vocab "$BUILD_DIR/tests/fixtures/own-vocab.txt" --seed 1 --out "$MODEL"
  fi
fi
"$QA" info --model "$MODEL" | grep -E "layers|hidden_size|parameters"
echo
echo "Offline: caching the sample documents' layer-k states (deformer-cache build)"
"$BUILD_DIR/tools/deformer-cache" build --model "$MODEL" --input "$ROOT/samples/documents" --out "$DEMO/samples.h5"
echo
echo "Questions: deformer mode reads the cached documents; full mode (standard BERT) reads the raw text."
while IFS=$'\t' read -r doc question; do
  echo "Q: $question   [$doc.txt]"
  for mode in deformer full; do
    if [ $mode = deformer ]; then source=(--cache "$DEMO/samples.h5" --doc "$doc.txt"); else source=(--context-file "$ROOT/samples/documents/$doc.txt"); fi
    answer=$("$QA" ask --model "$MODEL" --mode "$mode" "${source[@]}" --question "$question" --timing 2>"$DEMO/timing.txt")
    printf '  %-8s %-60s %s\n' "$mode" "$(echo "$answer" | sed -E 's/.*"answer":"([^"]*)".*/\1/' | cut -c1-60)" \
      "$(sed -E 's/.*: ([0-9.]+) ms/\1 ms/' "$DEMO/timing.txt")"
  done
done < "$ROOT/samples/questions.tsv"
echo
echo "(times are per question, in one process each, model load excluded; tiny random model on CPU)"
