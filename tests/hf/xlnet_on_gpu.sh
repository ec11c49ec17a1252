#!/usr/bin/env bash
# XLNet checks on the GPU machine (see ../shared/GPU.md): CUDA build, Hugging Face XLNetForQuestionAnsweringSimple
# parity in full mode (CPU and CUDA), the XLNet tests of the suite, and the XLNet tokenizer goldens made with
# transformers. Expects the data mirror at .gpu/data; writes logs to $OUT (results to commit: $OUT/*.log).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-/tmp/deformer-gpu-out}
mkdir -p "$OUT"
source "$ROOT/tests/hf/gpu_env.sh"
gpu_facts | tee "$OUT/device.txt"
echo "== configure and build"
gpu_build || exit 1
rc=0
echo "== hf xlnet parity (full mode, fp32)"
python3 tests/hf/xlnet_hf_parity.py --data .gpu/data --work /tmp/hf-xlnet --count ${COUNT:-24} 2>&1 | tee "$OUT/xlnet-hf.log"
cases=/tmp/hf-xlnet/hf-xlnet-cases-init002.json
for dev in cpu cuda; do
  DEFORMER_TEST_DEVICE=$dev DEFORMER_PARITY_CASES=$cases build-gpu/tests/parity_test 2>&1 \
    | grep -E "^parity|PASSED|FAILED|Failure|layout differs|max" | tee -a "$OUT/xlnet-hf-parity.log"
  [ "${PIPESTATUS[0]}" = 0 ] || rc=1
done
echo "== xlnet tokenizer goldens with transformers (commit $OUT/sentencepiece-xlnet-base-cased.jsonl.gz to tests/golden/)"
python3 tests/golden/make_xlnet_tokenizer_goldens.py --data .gpu/data --out "$OUT/sentencepiece-xlnet-base-cased.jsonl.gz" \
  2>&1 | tail -3 | tee "$OUT/xlnet-tokenizer-goldens.log"
if [ -f tests/golden/sentencepiece-xlnet-base-cased.jsonl.gz ]; then
  echo "transformers $(zcat "$OUT/sentencepiece-xlnet-base-cased.jsonl.gz" | sha256sum | cut -c1-64) committed $(zcat tests/golden/sentencepiece-xlnet-base-cased.jsonl.gz | sha256sum | cut -c1-64)" \
    | tee -a "$OUT/xlnet-tokenizer-goldens.log"
else
  cp "$OUT/sentencepiece-xlnet-base-cased.jsonl.gz" tests/golden/  # this checkout only: the golden test below uses it
fi
echo "== our XLNet tokenizer against those goldens (and the SentencePiece bridge next to pip LibTorch)"
timeout 300 build-gpu/tests/tokenizer_test --gtest_filter='SentencePiece*' > "$OUT/xlnet-tokenizer-test.log" 2>&1 || rc=1
grep -E "texts match|OK|FAILED|first difference|Aborted|what\(\)" "$OUT/xlnet-tokenizer-test.log" | head -30
if ! grep -q "PASSED" "$OUT/xlnet-tokenizer-test.log"; then  # a crash: where (the bridge next to pip LibTorch?)
  dbg=$(command -v gdb || command -v cuda-gdb)
  [ -n "$dbg" ] && timeout 90 "$dbg" -batch -ex run -ex bt --args build-gpu/tests/tokenizer_test \
    --gtest_filter='SentencePiece.Xlnet*' > "$OUT/xlnet-tokenizer-crash.log" 2>&1
  grep -E "^#|signal|what\(\)" "$OUT/xlnet-tokenizer-crash.log" | head -25
fi
echo "== the bridge loaded the old way (RTLD_DEEPBIND), for comparison: exit status"
DEFORMER_SPM_DEEPBIND=1 timeout 120 build-gpu/tests/tokenizer_test --gtest_filter='SentencePiece.XlnetModel*' > "$OUT/deepbind.log" 2>&1
echo "deepbind tokenizer_test exit $?" | tee -a "$OUT/xlnet-tokenizer-test.log"
echo "== xlnet tests of the suite (CPU)"
(cd build-gpu && timeout 300 ctest --output-on-failure -R "xlnet|python_exporter" --timeout 200) > "$OUT/xlnet-ctest.log" 2>&1 || rc=1
timeout 120 build-gpu/tests/xlnet_test >> "$OUT/xlnet-ctest.log" 2>&1 || rc=1
timeout 120 build-gpu/tests/layout_test >> "$OUT/xlnet-ctest.log" 2>&1 || rc=1
grep -E "tests passed|PASSED|FAILED|Failed" "$OUT/xlnet-ctest.log" | head -20
exit $rc
