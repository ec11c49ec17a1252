#!/usr/bin/env bash
# deformer-bench and engine_bench on the GPU machine (issue 6): CUDA build of the targets needed, BERT-base- and
# XLNet-base-shaped models with random weights, fp16, SQuAD v1.1 dev questions. BERT at k = 9 with 256, 32 and 1
# windows per upper-layer call (256 and 1 beside Hugging Face's eager fp16 SDPA model), in full mode and in deformer
# mode with the cache read from its file and held on the GPU (ResidentCache); XLNet at k = 8 with 256 and 1;
# engine_bench runs the TorchScript methods, the native layers and the native layers with CUDA graphs side by side;
# upper_layer_profile.py breaks the upper layers' time down by kernel (ATen's kernels, not the fused ones).
# Expects the data mirror at .gpu/data (laid out like shared/data); writes JSON and a log to $OUT (at most 8 files).
# PARTS picks what runs (default: all of "engine bert xlnet profile"); ROUNDS (default 3) is deformer-bench's --rounds
# at BERT batch 256.
# Run from the repository root:  OUT=/tmp/out benchmarks/run_bench_gpu.sh
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-/tmp/deformer-bench-gpu}
PARTS=${PARTS:-engine bert xlnet profile}
ROUNDS=${ROUNDS:-3}
part() { [[ " $PARTS " == *" $1 "* ]]; }
mkdir -p "$OUT"
LOG="$OUT/bench-gpu.log"
: > "$LOG"
step() { echo "== $*" | tee -a "$LOG"; }
source "$ROOT/tests/hf/gpu_env.sh"
gpu_facts 2>&1 | tee -a "$LOG"

step "configure and build: deformer-bench engine_bench"
gpu_build deformer-bench engine_bench || exit 1
rm -f "$OUT/configure.log" "$OUT/build.log"  # at most 8 files come back from the GPU machine

SQUAD=$DEFORMER_DATA/squad/dev-v1.1.json
if [ ! -f "$SQUAD" ]; then  # only the zip in the mirror: unpack it outside the tree
  python3 -c "import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$SQUAD.zip" /tmp/squad-dev
  SQUAD=/tmp/squad-dev/dev-v1.1.json
fi
BERT=/tmp/bert-base-random.pt XLNET=/tmp/xlnet-base-random.pt
step "models: BERT-base and XLNet-base shapes, random weights"
scripts/make-bench-model.sh "$BERT" "$DEFORMER_DATA" 2>&1 | tee -a "$LOG"
part xlnet && tools/deformer-export --random-init --config "$DEFORMER_DATA/configs/xlnet-base-cased-config.json" \
  --spiece "$DEFORMER_DATA/tokenizers/xlnet-base-cased-spiece.model" --seed 0 --out "$XLNET" 2>&1 | tee -a "$LOG"

part engine && step "engine_bench: engine 0 TorchScript methods, 1 native layers, 2 native layers + CUDA graphs" &&
DEFORMER_BENCH_MODEL=$BERT DEFORMER_BENCH_DEVICE=cuda DEFORMER_BENCH_DTYPE=fp16 timeout 200 build-gpu/benchmarks/engine_bench \
  --benchmark_min_time=0.3 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
  --benchmark_out="$OUT/engine-gpu-bert-base-fp16.json" --benchmark_out_format=json 2>&1 | grep -E "median|rror" | tee -a "$LOG"

bench() {  # NAME ARGS...
  local name=$1; shift
  step "deformer-bench $name: $*"
  timeout 330 build-gpu/tools/deformer-bench --squad "$SQUAD" --device cuda --dtype fp16 --cache-dtype fp16 \
    --out "$OUT/bench-gpu-$name.json" "$@" 2>&1 | tee -a "$LOG"
}
ALL=full,deformer,resident
if part bert; then
  bench bert-base-fp16-k9-batch256 --model "$BERT" --k 9 --batch 256 --limit 1024 --repeats 3 --rounds "$ROUNDS" --modes $ALL --reference hf
  bench bert-base-fp16-k9-batch32 --model "$BERT" --k 9 --batch 32 --limit 256 --repeats 3 --modes $ALL
  bench bert-base-fp16-k9-batch1 --model "$BERT" --k 9 --batch 1 --limit 200 --repeats 3 --modes $ALL --reference hf
fi
if part xlnet; then
  bench xlnet-base-fp16-k8-batch256 --model "$XLNET" --k 8 --batch 256 --limit 512 --repeats 3
  bench xlnet-base-fp16-k8-batch1 --model "$XLNET" --k 8 --batch 1 --limit 100 --repeats 3
fi
part profile && step "upper layers by kernel (ATen)" &&
timeout 120 python3 benchmarks/upper_layer_profile.py > "$OUT/upper-layer-profile.json" 2>> "$LOG"
step done
ls -la "$OUT" | tee -a "$LOG"
