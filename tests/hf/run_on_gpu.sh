#!/usr/bin/env bash
# The GPU-machine checks (see ../shared/GPU.md): CUDA build, the full CPU+CUDA test suite, and Hugging Face
# parity. Expects the data mirror at .gpu/data (laid out like shared/data) and writes logs to $OUT.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-/tmp/deformer-gpu-out}
mkdir -p "$OUT"
source "$ROOT/tests/hf/gpu_env.sh"
gpu_facts | tee "$OUT/device.txt"
step() { echo "== $*"; }
step "configure and build"
gpu_build || exit 1
phase() { [ "${PHASE:-all}" = all ] || [ "${PHASE}" = "$1" ]; }
rc_ctest=0
if phase checks; then
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
python3 tests/hf/bert_hf_pipeline_parity.py reference --checkpoint /tmp/hf/hf-sharp \
  --squad .gpu/data/squad/dev-v1.1.json.zip --work $work --count 500 2>&1 | tail -2 | tee "$OUT/hf-pipeline.log"
for setting in "top1:--top-k 1" "top3:--top-k 3" "impossible:--top-k 1 --handle-impossible-answer"; do
  build-gpu/tools/deformer-qa ask --model /tmp/hf/exported-sharp.pt --mode full --device cuda \
    --questions $work/questions.jsonl ${setting#*:} > $work/got-${setting%%:*}.jsonl 2>> "$OUT/hf-pipeline.log"
done
python3 tests/hf/bert_hf_pipeline_parity.py compare --work $work 2>&1 | tee -a "$OUT/hf-pipeline.log"
step "tokenizer goldens with transformers (sha256 of the uncompressed lines vs the committed npm-made goldens)"
for case in uncased cased; do
  python3 tests/golden/make_tokenizer_goldens_hf.py .gpu/data/squad/dev-v1.1.json .gpu/data/tokenizers/bert-base-$case-vocab.txt \
    $case /tmp/hf-$case.jsonl.gz > /tmp/tok-$case.log 2>&1 || tail -5 /tmp/tok-$case.log
  echo "$case transformers $(zcat /tmp/hf-$case.jsonl.gz | sha256sum | cut -c1-64) committed $(zcat tests/golden/wordpiece-bert-base-$case.jsonl.gz | sha256sum | cut -c1-64)" | tee -a "$OUT/tokenizer-goldens.log"
done

fi
if phase speed; then
step "speed: BERT-base shape, random weights"
scripts/make-bench-model.sh /tmp/bert-base.pt .gpu/data > /dev/null
for dtype in fp16 fp32; do
  DEFORMER_BENCH_MODEL=/tmp/bert-base.pt DEFORMER_BENCH_DEVICE=cuda DEFORMER_BENCH_DTYPE=$dtype build-gpu/benchmarks/engine_bench \
    --benchmark_min_time=1 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
    --benchmark_out="$OUT/engine-h100-bert-base-$dtype.json" --benchmark_out_format=json 2>&1 | grep -E "median" | tee -a "$OUT/speed.log"
done

step "cache build on the GPU: the SQuAD dev set (2,067 contexts) per storage dtype, BERT-base k=9"
for dtype in fp32 fp16 bf16 int8; do
  build-gpu/tools/deformer-cache build --model /tmp/bert-base.pt --k 9 --device cuda --compute-dtype fp16 --batch-size 256 \
    --input .gpu/data/squad/dev-v1.1.json --out /tmp/dev-$dtype.h5 --dtype $dtype 2>&1 | tail -1 | tee -a "$OUT/cache-gpu.log"
  rm -f /tmp/dev-$dtype.h5
done
fi
if phase checks || phase suite; then
step "debug: crashes seen on this machine"
for t in "squad_test SquadErrors.MissingFileIsARuntimeErrorNamingThePath" "cache_test CacheTest.Fp32RoundTripIsExact" "tokenizer_test SentencePiece.*"; do
  set -- $t
  timeout 60 cuda-gdb -batch -ex run -ex bt --args build-gpu/tests/$1 --gtest_filter=$2 > "$OUT/debug-$1.log" 2>&1
  grep -E "^#|signal|what\(\)|error" "$OUT/debug-$1.log" | head -12
done
step "ctest (CPU and CUDA tests; the whole-dev-set CLI runs are CPU work that CI covers)"
(cd build-gpu && OMP_NUM_THREADS=2 timeout ${CTEST_SECONDS:-240} ctest --output-on-failure -j 8 --timeout 200 \
   -E "cli_eval_dev_v11|cli_eval_cached_equals_raw|tokenizer_fuzz") > "$OUT/ctest.log" 2>&1; rc_ctest=$?
tail -15 "$OUT/ctest.log"
fi
exit $rc_ctest
