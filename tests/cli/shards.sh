#!/usr/bin/env bash
# shards.sh DEFORMER_CACHE MODEL INPUT WORKDIR: two shards built, a finished shard skipped on re-run, the
# shards merged into an index that reads as one cache holding every document once.
set -eu
cache=$1 model=$2 input=$3 work=$4
mkdir -p "$work"
rm -f "$work"/sharded*
for i in 0 1; do
  "$cache" build --model "$model" --input "$input" --out "$work/sharded.h5" --shard-index $i --num-shards 2
done
"$cache" build --model "$model" --input "$input" --out "$work/sharded.h5" --shard-index 0 --num-shards 2 | grep "is complete, skipped"
SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=2 "$cache" build --model "$model" --input "$input" --out "$work/sharded.h5" \
  | grep "shard 1 of 2"
"$cache" merge --out "$work/sharded.json" "$work/sharded-00000-of-00002.h5" "$work/sharded-00001-of-00002.h5"
"$cache" info "$work/sharded.json"
