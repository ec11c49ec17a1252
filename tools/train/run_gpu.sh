#!/usr/bin/env bash
# The training runs of tools/train/README.md on the GPU machine, in stages that each fit one 10-minute command.
# Expects $T (default .train/minilm, made here by tools/train/prepare.sh): base/ (the pretrained encoder),
# squad-train.pt.xz, squad-dev.pt.xz, dev-v1.1.json.zip. Checkpoints and predictions go to $T (kept on the
# machine while it stays warm); logs and predictions come back packed under $OUT.
#   STAGE=finetune tools/train/run_gpu.sh   # full-layout baseline, the k=0 teacher, plain decomposed at each k,
#                                           # zero-shot rows (the baseline split at k, no training)
#   STAGE=distil KSTAR=4 tools/train/run_gpu.sh   # KD + LRS at each k from the k=0 teacher; loss-weight search at KSTAR
# Runs are seeded (SEED, default 1) and resumable: a run whose predictions exist is skipped. Runs of a stage go
# side by side on the one GPU (a 6-layer, 384-wide model leaves most of an H200 idle).
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${T:-.train/minilm}
OUT=${OUT:-$T/out}
SEED=${SEED:-1}
KS=${KS:-"2 3 4 5"}
mkdir -p "$OUT" "$T/predictions" "$T/logs"
export PYTHONPATH=$PWD/tools PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
# The paper's recipe (StonyBrookNLP/deformer config/ebert_qa.ini): 3 epochs, lr 5e-5, batch 32, warm-up 0.15.
# BATCH and LR change it where the device time is short (batch 32 keeps an H200 mostly idle).
recipe=(--train $T/squad-train.pt.xz --dev $T/squad-dev.pt.xz --dev-json $T/dev-v1.1.json.zip --seed "$SEED"
        --epochs "${EPOCHS:-3}" --batch-size "${BATCH:-32}" --lr "${LR:-5e-5}" --warmup-fraction 0.15
        --minutes "${MINUTES:-0}")
nvidia-smi --query-gpu=name --format=csv,noheader

run() {  # run NAME ARGS...: one fine-tuning in the background, skipped when its predictions exist
  local name=$1; shift
  if [ -f "$T/predictions/$name.json" ]; then echo "$name: done before"; return; fi
  python3 -m train.finetune "${recipe[@]}" "$@" --predictions "$T/predictions/$name.json" \
    --log "$T/logs/$name.log" > "$T/logs/$name.stdout" 2>&1 &
  pids+=("$!:$name")
}

finish() {  # waits for the runs started by `run`; fails naming the runs that failed
  local failed=() entry
  for entry in "${pids[@]}"; do
    wait "${entry%%:*}" || failed+=("${entry#*:}")
  done
  pids=()
  grep -h "dev: EM" "$T"/logs/*.log | sort -u || true
  if [ ${#failed[@]} -gt 0 ]; then
    for name in "${failed[@]}"; do echo "== $name failed"; tail -5 "$T/logs/$name.stdout"; done
    return 1
  fi
}

pack() {
  tar -C "$T" -czf "$OUT/$STAGE-results.tar.gz" predictions logs
}
trap pack EXIT

bring_back() {  # bring_back NAME: a checkpoint in fp16, in parts of at most 15 MB under $OUT (the limit on files back)
  local tmp=$T/.bring-$1
  rm -rf "$tmp"; cp -r "$T/$1" "$tmp"
  python3 - "$tmp/model.safetensors" <<'PY'
import sys
from pydeformer.modelfile import read_safetensors, write_safetensors
t = read_safetensors(sys.argv[1])
write_safetensors({k: v.half() if v.is_floating_point() else v for k, v in t.items()}, sys.argv[1])
PY
  tar -C "$tmp/.." -cf - "$(basename "$tmp")" | split -b 15000000 -d - "$OUT/$1.fp16.tar.part"
  rm -rf "$tmp"
}
pids=()

case "${STAGE:?set STAGE}" in
finetune)
  # Training rows are built once per layout, before the runs that share them start.
  run prepare-full --init $T/base --layout full --prepare-only
  run prepare-deformer --init $T/base --layout deformer --prepare-only
  finish
  rm -f $T/predictions/prepare-*.json
  run full --init $T/base --layout full --out $T/full
  run teacher-k0 --init $T/base --layout deformer --k 0 --out $T/teacher-k0
  for k in $KS; do
    run plain-k$k --init $T/base --layout deformer --k $k --out $T/plain-k$k
  done
  finish
  for k in $KS; do
    run zero-shot-k$k --init $T/full --layout deformer --k $k --epochs 0
    run zero-shot-teacher-k$k --init $T/teacher-k0 --layout deformer --k $k --epochs 0
  done
  finish
  for name in ${BRING:-}; do bring_back "$name"; done ;;
distil)
  kd=(--teacher $T/teacher-k0 --teacher-layout deformer --temperature 2)
  [ -d $T/teacher-k0 ] || { echo "no $T/teacher-k0: run STAGE=finetune first" >&2; exit 2; }
  for k in $KS; do
    run kd-k$k --init $T/teacher-k0 --layout deformer --k $k "${kd[@]}" --alpha 1 --beta 1 --gamma 1 --out $T/kd-k$k
  done
  K=${KSTAR:?set KSTAR, the chosen k}
  if [ "${SEARCH:-1}" = 0 ]; then finish; for name in ${BRING:-}; do bring_back "$name"; done; exit 0; fi
  run prepare-both --init $T/base --layout deformer --also-full 1 --prepare-only
  # A small search over the loss weights (the paper tunes them over [0.1, 2]) and the two student inits.
  run kd-k$K-a2 --init $T/teacher-k0 --layout deformer --k $K "${kd[@]}" --alpha 2 --beta 1 --gamma 1 --out $T/kd-k$K-a2
  run kd-k$K-a0.5 --init $T/teacher-k0 --layout deformer --k $K "${kd[@]}" --alpha 0.5 --beta 1 --gamma 1 --out $T/kd-k$K-a0.5
  run kd-k$K-b0.1 --init $T/teacher-k0 --layout deformer --k $K "${kd[@]}" --alpha 1 --beta 0.1 --gamma 1 --out $T/kd-k$K-b0.1
  run kd-k$K-b2 --init $T/teacher-k0 --layout deformer --k $K "${kd[@]}" --alpha 1 --beta 2 --gamma 1 --out $T/kd-k$K-b2
  run kd-k$K-lower --init $T/teacher-k0 --lower-from $T/base --layout deformer --k $K "${kd[@]}" --alpha 1 --beta 1 \
    --gamma 1 --out $T/kd-k$K-lower
  run kd-k$K-both --init $T/teacher-k0 --layout deformer --k $K "${kd[@]}" --alpha 1 --beta 1 --gamma 1 --also-full 1 \
    --out $T/kd-k$K-both
  finish ;;
*) echo "unknown STAGE $STAGE" >&2; exit 2 ;;
esac
