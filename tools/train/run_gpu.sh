#!/usr/bin/env bash
# The training runs of tools/train/README.md on the GPU machine, in stages that each fit one 10-minute command.
# Expects .train/ (made here by `tools/train/prepare.sh`): vocab.txt, corpus.pt.xz, squad-train.pt.xz,
# squad-dev.pt.xz, dev-v1.1.json.zip. Results go to .train/ (kept while the machine stays warm) and to $OUT.
#   STAGE=pretrain MINUTES=8 tools/train/run_gpu.sh
#   STAGE=teacher tools/train/run_gpu.sh        # full-layout fine-tuning, zero-shot and plain deformer rows
#   STAGE=distil tools/train/run_gpu.sh         # deformer fine-tuning with KD + LRS
set -euo pipefail
cd "$(dirname "$0")/../.."
T=.train
OUT=${OUT:-$T/out}
mkdir -p "$OUT" "$T/predictions"
export PYTHONPATH=$PWD/tools PYTHONUNBUFFERED=1
LAYERS=$(python3 -c "import json;print(json.load(open('tools/train/configs/small-bert.json'))['num_hidden_layers'])")
KS=${KS:-"$((LAYERS - 1)) $((LAYERS - 2)) $((LAYERS / 2))"}
common=(--train $T/squad-train.pt.xz --dev $T/squad-dev.pt.xz --dev-json $T/dev-v1.1.json.zip --seed 1 --log "$OUT/train.log")
nvidia-smi --query-gpu=name --format=csv,noheader | tee -a "$OUT/train.log"

pack() {  # a checkpoint directory into <=15 MB parts under $OUT
  tar -C "$T" -cf - "$1" | split -b 15000000 -d - "$OUT/$1.tar.part"
}

case "${STAGE:?set STAGE}" in
pretrain)
  python3 -m train.pretrain --corpus $T/corpus.pt.xz --vocab $T/vocab.txt --config tools/train/configs/small-bert.json \
    --out $T/mlm --work $T/pretrain-work --minutes "${MINUTES:-8}" --steps 60000 --batch-size 256 --seq-len 128 \
    --lr 1e-3 --warmup 1500 --seed 1 2>&1 | tee -a "$OUT/train.log" | grep -E "step [0-9]*000/|held-out|wrote|schedule|resumed"
  pack mlm ;;
teacher)
  python3 -m train.finetune "${common[@]}" --init $T/mlm --layout full --epochs "${EPOCHS:-2}" --batch-size 64 --lr 3e-4 \
    --out $T/teacher --predictions $T/predictions/full.json
  for k in $KS; do
    python3 -m train.finetune "${common[@]}" --init $T/teacher --layout deformer --k $k --epochs 0 \
      --predictions $T/predictions/zero-shot-k$k.json
    python3 -m train.finetune "${common[@]}" --init $T/teacher --layout deformer --k $k --epochs "${STUDENT_EPOCHS:-1}" \
      --batch-size 64 --lr 1e-4 --out $T/plain-k$k --predictions $T/predictions/plain-k$k.json
  done
  tar -C $T -czf "$OUT/predictions-teacher.tar.gz" predictions
  pack teacher ;;
distil)
  for k in $KS; do
    python3 -m train.finetune "${common[@]}" --init $T/teacher --teacher $T/teacher --layout deformer --k $k \
      --epochs "${STUDENT_EPOCHS:-1}" --batch-size 64 --lr 1e-4 --alpha 1 --beta 1 --gamma 1 --temperature 2 \
      --out $T/kd-k$k --predictions $T/predictions/kd-k$k.json
  done
  tar -C $T -czf "$OUT/predictions-distil.tar.gz" predictions
  pack "kd-k$((LAYERS - 2))" ;;
*) echo "unknown STAGE $STAGE" >&2; exit 2 ;;
esac
