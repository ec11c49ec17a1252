#!/usr/bin/env bash
# shards.sh DEFORMER_CACHE MODEL INPUT WORKDIR: two shards built, a finished shard skipped on re-run and rebuilt
# when asked with other settings or when its documents were edited, stale temporaries removed, the shards merged into an index that reads as one cache holding every document once.
set -eu
cache=$1 model=$2 input=$3 work=$4
mkdir -p "$work"
rm -f "$work"/sharded*
for i in 0 1; do
  "$cache" build --model "$model" --input "$input" --out "$work/sharded.h5" --shard-index $i --num-shards 2
done
"$cache" build --model "$model" --input "$input" --out "$work/sharded.h5" --shard-index 0 --num-shards 2 | grep "is complete, skipped"
# A complete shard built with other settings is rebuilt, not skipped; temporaries of dead writers are removed,
# those of live ones kept.
shard0=$work/sharded-00000-of-00002.h5
dead=$(sh -c 'echo $$')
touch "$shard0.tmp-$dead-dead" "$shard0.tmp-$$-live"
"$cache" build --model "$model" --input "$input" --out "$work/sharded.h5" --shard-index 0 --num-shards 2 --k 2 \
  | grep "was built otherwise (.*k is '3' in the cache, expected '2'.*): rebuilding"
[ ! -e "$shard0.tmp-$dead-dead" ] && [ -e "$shard0.tmp-$$-live" ] || { echo "FAIL: temporaries"; ls "$work"; exit 1; }
rm -f "$shard0.tmp-$$-live"
"$cache" build --model "$model" --input "$input" --out "$work/sharded.h5" --shard-index 0 --num-shards 2 --k 2 \
  | grep "is complete, skipped"
# Documents edited since the shard was built: it is rebuilt, not skipped (the input must be a directory of .txt).
rm -rf "$work/edited" && mkdir -p "$work/edited" && cp "$input"/*.txt "$work/edited/"
for f in "$work/edited"/*.txt; do echo " Edited since." >> "$f"; done
# (Shard 1 holds the four sample documents.)
"$cache" build --model "$model" --input "$work/edited" --out "$work/sharded.h5" --shard-index 1 --num-shards 2 \
  | grep "was built otherwise (the text of document '.*' changed): rebuilding"
"$cache" build --model "$model" --input "$work/edited" --out "$work/sharded.h5" --shard-index 1 --num-shards 2 \
  | grep "is complete, skipped"
"$cache" build --model "$model" --input "$input" --out "$work/sharded.h5" --shard-index 1 --num-shards 2 \
  | grep "was built otherwise (the text of document '.*' changed): rebuilding"
"$cache" build --model "$model" --input "$input" --out "$work/sharded.h5" --shard-index 0 --num-shards 2 --dtype fp16 \
  | grep "was built otherwise (.*k is '2' in the cache, expected '3'.*): rebuilding"
"$cache" build --model "$model" --input "$input" --out "$work/sharded.h5" --shard-index 0 --num-shards 2 \
  | grep "was built otherwise (state dtype fp16, expected fp32): rebuilding"
SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=2 "$cache" build --model "$model" --input "$input" --out "$work/sharded.h5" \
  | grep "shard 1 of 2"
"$cache" merge --out "$work/sharded.json" "$work/sharded-00000-of-00002.h5" "$work/sharded-00001-of-00002.h5" \
  | grep "wrote $work/sharded.json.bm25"
# The shards' retrieval indexes are merged into one over the four documents.
[ "$("$cache" info "$work/sharded.json" --list | wc -l)" = 4 ] || { echo "FAIL: merged index"; exit 1; }
"$cache" info "$work/sharded.json"
