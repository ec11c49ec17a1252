#!/usr/bin/env bash
# deformer-bench on the GPU machine (issue 6): CUDA build of only the targets needed, a BERT-base-shaped model
# with random weights, fp16, k = 9, SQuAD v1.1 dev questions; batch 256 windows per upper-layer call and batch 1
# (one question over its windows), each with the Hugging Face eager fp16 SDPA and the project's eager PyTorch
# references and the FLOP rates. Expects the data mirror at .gpu/data (laid out like shared/data); writes JSON and
# logs to $OUT (at most 8 files). Run from the repository root:  OUT=/tmp/out benchmarks/run_bench_gpu.sh
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-/tmp/deformer-bench-gpu}
mkdir -p "$OUT"
LOG="$OUT/bench-gpu.log"
: > "$LOG"
step() { echo "== $*" | tee -a "$LOG"; }
source "$ROOT/tests/hf/gpu_env.sh"
gpu_facts 2>&1 | tee -a "$LOG"

step "configure and build: deformer-bench deformer-qa deformer-cache"
gpu_build deformer-bench deformer-qa deformer-cache || exit 1

SQUAD=$DEFORMER_DATA/squad/dev-v1.1.json
if [ ! -f "$SQUAD" ]; then  # only the zip in the mirror: unpack it outside the tree
  python3 -c "import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$SQUAD.zip" /tmp/squad-dev
  SQUAD=/tmp/squad-dev/dev-v1.1.json
fi
MODEL=/tmp/bert-base-random.pt
step "model: BERT-base shape, random weights"
scripts/make-bench-model.sh "$MODEL" "$DEFORMER_DATA" 2>&1 | tee -a "$LOG"

bench() {  # NAME ARGS...
  local name=$1; shift
  step "deformer-bench $name: $*"
  timeout 150 build-gpu/tools/deformer-bench --model "$MODEL" --squad "$SQUAD" --device cuda --dtype fp16 --k 9 \
    --cache-dtype fp16 --reference hf,eager --out "$OUT/bench-h100-$name.json" "$@" 2>&1 | tee -a "$LOG"
}
# Batch 256: about 4 groups of up to 256 (question, window) pairs; batch 1: one question at a time.
bench bert-base-fp16-k9-batch256 --batch 256 --limit 1024 --repeats 3
bench bert-base-fp16-k9-batch1 --batch 1 --limit 200 --repeats 3
step done
ls -la "$OUT" | tee -a "$LOG"
