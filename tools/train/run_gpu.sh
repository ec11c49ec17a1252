#!/usr/bin/env bash
# The training runs of tools/train/README.md on the GPU machine, in stages that each fit one 10-minute command.
# Expects $T (default .train/minilm, made here by the commands of tools/train/README.md): base/ (the pretrained encoder),
# squad-train.pt.xz, squad-dev.pt.xz, dev-v1.1.json.zip. Checkpoints and predictions go to $CK (kept on the
# machine while it stays warm); logs and predictions come back packed under $OUT.
#   STAGE=finetune tools/train/run_gpu.sh   # full-layout baseline, the k=0 teacher, plain decomposed at each k,
#                                           # zero-shot rows (the baseline split at k, no training)
#   STAGE=distil KSTAR=4 tools/train/run_gpu.sh   # KD + LRS at each k from the k=0 teacher; loss-weight search at KSTAR
#   STAGE=student NAME=N K=7 tools/train/run_gpu.sh   # one KD + LRS student alone on the GPU (INIT, default the
#                                           # teacher; ALPHA, BETA, GAMMA, ALSO_FULL), scored in both layouts; INIT
#                                           # and TEACHER may be model files (models/squad-minilm.pt)
# Runs are seeded (SEED, default 1) and resumable: a run whose predictions exist is skipped. Runs of a stage go
# side by side on the one GPU (a 6-layer, 384-wide model leaves most of an H200 idle at batch 128).
# CK (default $T) takes the checkpoints, predictions and logs: a path that is not carried survives the next call on
# a warm machine, where a carried one is replaced.
# LAYERS=8 grows the base to 8 layers first (train.base_model --layers, the way GROW says: top, the default, or
# lower) and trains from that; FULL=0 leaves out the full-layout baseline; SEARCH lists the loss-weight variants at
# KSTAR (default all; "" none); ZS_KS lists the k of the zero-shot rows (default KS); BRING names checkpoints to
# bring back, "best" the distilled one with the best dev F1.
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${T:-.train/minilm}
CK=${CK:-$T}
OUT=${OUT:-$CK/out}
SEED=${SEED:-1}
KS=${KS:-"2 3 4 5"}
mkdir -p "$OUT" "$CK/predictions" "$CK/logs"
export PYTHONPATH=$PWD/tools PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
BASE=$T/base
if [ -n "${LAYERS:-}" ]; then
  GROW=${GROW:-top}
  BASE=$CK/base$LAYERS-$GROW
  [ -d "$BASE" ] || { cp -r "$T/base" "$BASE.tmp" && python3 -m train.base_model --out "$BASE.tmp" --layers "$LAYERS" \
                      --grow "$GROW" \
                      && mv "$BASE.tmp" "$BASE"; }
fi
# The paper's recipe (StonyBrookNLP/deformer config/ebert_qa.ini): 3 epochs, lr 5e-5, batch 32, warm-up 0.15.
# BATCH and LR change it where the device time is short (batch 32 keeps an H200 mostly idle).
recipe=(--train $T/squad-train.pt.xz --dev $T/squad-dev.pt.xz --dev-json $T/dev-v1.1.json.zip --seed "$SEED"
        --epochs "${EPOCHS:-3}" --batch-size "${BATCH:-32}" --lr "${LR:-5e-5}" --warmup-fraction 0.15
        --minutes "${MINUTES:-0}")
nvidia-smi --query-gpu=name --format=csv,noheader

run() {  # run NAME ARGS...: one fine-tuning in the background, skipped when its predictions exist
  local name=$1; shift
  if [ -f "$CK/predictions/$name.json" ]; then echo "$name: done before"; return; fi
  python3 -m train.finetune "${recipe[@]}" "$@" --predictions "$CK/predictions/$name.json" \
    --log "$CK/logs/$name.log" > "$CK/logs/$name.stdout" 2>&1 &
  pids+=("$!:$name")
}

finish() {  # waits for the runs started by `run`; fails naming the runs that failed
  local failed=() entry
  for entry in "${pids[@]}"; do
    wait "${entry%%:*}" || failed+=("${entry#*:}")
  done
  pids=()
  grep -h "dev: EM" "$CK"/logs/*.log | sort -u || true
  if [ ${#failed[@]} -gt 0 ]; then
    for name in "${failed[@]}"; do echo "== $name failed"; tail -5 "$CK/logs/$name.stdout"; done
    return 1
  fi
}

checkpoint_of() {  # checkpoint_of PATH: PATH, or for a model file (*.pt) the checkpoint made from it under $CK
  case $1 in
    *.pt) local dir=$CK/from-$(basename "$1" .pt)
          [ -d "$dir" ] || python3 -m train.checkpoint "$1" --out "$dir" >&2
          echo "$dir" ;;
    *) echo "$1" ;;
  esac
}

pack() {
  tar -C "$CK" -czf "$OUT/$STAGE-results.tar.gz" predictions logs
}
trap pack EXIT

bring_back() {  # bring_back NAME: a checkpoint in fp16, in parts of at most 15 MB under $OUT (the limit on files back)
  local tmp=$CK/.bring-$1
  rm -rf "$tmp"; cp -r "$CK/$1" "$tmp"
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
  [ "${FULL:-1}" = 0 ] || run prepare-full --init $BASE --layout full --prepare-only
  run prepare-deformer --init $BASE --layout deformer --prepare-only
  finish
  rm -f $CK/predictions/prepare-*.json
  [ "${FULL:-1}" = 0 ] || run full --init $BASE --layout full --out $CK/full
  run teacher-k0 --init $BASE --layout deformer --k 0 --out $CK/teacher-k0
  for k in $KS; do
    run plain-k$k --init $BASE --layout deformer --k $k --out $CK/plain-k$k
  done
  finish
  for k in ${ZS_KS:-$KS}; do
    [ "${FULL:-1}" = 0 ] || run zero-shot-k$k --init $CK/full --layout deformer --k $k --epochs 0
    run zero-shot-teacher-k$k --init $CK/teacher-k0 --layout deformer --k $k --epochs 0
  done
  finish
  for name in ${BRING:-}; do bring_back "$name"; done ;;
distil)
  kd=(--teacher $CK/teacher-k0 --teacher-layout deformer --temperature 2)
  [ -d $CK/teacher-k0 ] || { echo "no $CK/teacher-k0: run STAGE=finetune first" >&2; exit 2; }
  run prepare-distil --init $CK/teacher-k0 --layout deformer "${kd[@]}" --prepare-only; finish  # shared rows, built once
  rm -f $CK/predictions/prepare-distil.json
  for k in $KS; do
    run kd-k$k --init $CK/teacher-k0 --layout deformer --k $k "${kd[@]}" --alpha 1 --beta 1 --gamma 1 --out $CK/kd-k$k
  done
  K=${KSTAR:?set KSTAR, the chosen k}
  # A small search over the loss weights (the paper tunes them over [0.1, 2]) and the two student inits.
  variants=${SEARCH-a2 a0.5 b0.1 b2 lower both}
  if [[ " $variants " == *" both "* ]]; then
    run prepare-both --init $BASE --layout deformer --also-full 1 --prepare-only; finish
    rm -f $CK/predictions/prepare-both.json
  fi
  for variant in $variants; do
    case $variant in
      a2|a0.5) weights=(--alpha "${variant#a}" --beta 1 --gamma 1) ;;
      b2|b0.1) weights=(--alpha 1 --beta "${variant#b}" --gamma 1) ;;
      lower) weights=(--alpha 1 --beta 1 --gamma 1 --lower-from $BASE) ;;
      both) weights=(--alpha 1 --beta 1 --gamma 1 --also-full 1) ;;
      *) echo "unknown SEARCH variant $variant" >&2; exit 2 ;;
    esac
    run kd-k$K-$variant --init $CK/teacher-k0 --layout deformer --k $K "${kd[@]}" "${weights[@]}" --out $CK/kd-k$K-$variant
  done
  finish
  for name in ${BRING:-}; do
    if [ "$name" = best ]; then  # the distilled run with the best dev F1
      name=$(python3 -c 'import glob, json, os, sys
runs = {os.path.basename(p)[:-len(".json.meta.json")]: json.load(open(p))["quick_f1"]
        for p in glob.glob(sys.argv[1] + "/kd-*.json.meta.json")}
print(max(runs, key=runs.get))' "$CK/predictions")
      echo "best distilled run: $name"
    fi
    bring_back "$name"
  done ;;
student)
  # Alone, because runs side by side time-slice the one GPU: each gets about 1/n of the steps. TEACHER defaults to
  # $CK/teacher-k0; INIT (default the teacher) may be an earlier student, to go on training it.
  # A model file (a bundled model, say) as INIT or TEACHER is made a checkpoint directory first.
  name=${NAME:?set NAME}; teacher=$(checkpoint_of "${TEACHER:-$CK/teacher-k0}"); init=$(checkpoint_of "${INIT:-$teacher}")
  [ -d "$teacher" ] || { echo "no teacher $teacher" >&2; exit 2; }
  run "$name" --init "$init" --layout deformer --k "${K:?set K}" --teacher "$teacher" \
    --teacher-layout "${TEACHER_LAYOUT:-deformer}" --temperature 2 --alpha "${ALPHA:-1}" --beta "${BETA:-1}" --gamma "${GAMMA:-1}" \
    --also-full "${ALSO_FULL:-0}" --out "$CK/$name"
  finish
  # The same student in the full layout: what full mode answers with this one model file.
  python3 -m pydeformer.export "$CK/$name" --out "$CK/$name.pt"
  python3 -m train.evaluate_model "$CK/$name.pt" --dev $T/squad-dev.pt.xz --dev-json $T/dev-v1.1.json.zip \
    --layout full --predictions "$CK/predictions/$name-full.json" 2>&1 | tee "$CK/logs/$name-full.log"
  for name in ${BRING:-}; do bring_back "$name"; done ;;
*) echo "unknown STAGE $STAGE" >&2; exit 2 ;;
esac
