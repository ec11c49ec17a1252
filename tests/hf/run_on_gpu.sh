#!/usr/bin/env bash
# The GPU-machine checks (see ../shared/GPU.md): CUDA build, the full CPU+CUDA test suite, and Hugging Face
# parity. Expects the data mirror at .gpu/data (laid out like shared/data) and writes logs to $OUT.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-/tmp/deformer-gpu-out}
mkdir -p "$OUT"
export CMAKE_PREFIX_PATH=$(python3 -c "import torch;print(torch.utils.cmake_prefix_path)")
export DEFORMER_DATA=$ROOT/.gpu/data CI=true
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/device.txt"
step() { echo "== $*"; }
step configure
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDEFORMER_PYTHON=$(command -v python3) > "$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; exit 1; }
step build
cmake --build build-gpu -j 16 > "$OUT/build.log" 2>&1 || { grep -E "error|FAILED" "$OUT/build.log" | head -40; exit 1; }
step ctest
(cd build-gpu && ctest --output-on-failure -j 8 --timeout 600) > "$OUT/ctest.log" 2>&1; rc_ctest=$?
tail -15 "$OUT/ctest.log"
step "model exported by Debian torch 1.13, loaded by LibTorch $(python3 -c 'import torch;print(torch.__version__)')"
if [ -f .gpu/exported-by-torch-1.13.pt ]; then
  cp build-gpu/tests/fixtures/tiny-own-vocab.pt /tmp/own-2x.pt
  cp .gpu/exported-by-torch-1.13.pt build-gpu/tests/fixtures/tiny-own-vocab.pt
  build-gpu/tests/engine_test 2>&1 | tail -3 | tee "$OUT/load-1.13.log"
  cp /tmp/own-2x.pt build-gpu/tests/fixtures/tiny-own-vocab.pt
fi
step "hf parity"
python3 tests/hf/bert_hf_parity.py --data .gpu/data --work /tmp/hf 2>&1 | tee "$OUT/hf.log"
cases=/tmp/hf/hf-cases-safetensors.json:/tmp/hf/hf-cases-bin.json
for dev in cpu cuda; do
  DEFORMER_TEST_DEVICE=$dev DEFORMER_PARITY_CASES=$cases build-gpu/tests/parity_test 2>&1 | grep -E "^parity|PASSED|FAILED|Failure|max" | tee -a "$OUT/hf-parity.log"
done
step "hf question-answering semantics (full mode)"
work=/tmp/hf-pipeline
python3 tests/hf/bert_hf_pipeline_parity.py reference --checkpoint /tmp/hf/hf-safetensors \
  --squad .gpu/data/squad/dev-v1.1.json.zip --work $work --count 500 2>&1 | tail -2 | tee "$OUT/hf-pipeline.log"
for setting in "top1:--top-k 1" "top3:--top-k 3" "impossible:--top-k 1 --handle-impossible-answer"; do
  build-gpu/tools/deformer-qa ask --model /tmp/hf/exported-safetensors.pt --mode full --device cuda \
    --questions $work/questions.jsonl ${setting#*:} > $work/got-${setting%%:*}.jsonl 2>> "$OUT/hf-pipeline.log"
done
python3 tests/hf/bert_hf_pipeline_parity.py compare --work $work 2>&1 | tee -a "$OUT/hf-pipeline.log"
exit $rc_ctest
