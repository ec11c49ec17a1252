#!/usr/bin/env bash
# interrupt_last_batch.sh DEFORMER_CACHE MODEL WORKDIR: SIGTERM while the last batch is encoded (one long
# document, a batch larger than its windows, so that all the work is in that batch) stops the build: exit 130
# and no cache (it used to finish the batch, write the cache and exit 0).
set -u
cache=$1 model=$2 work=$3
mkdir -p "$work"
out=$work/last-batch.h5 input=$work/long.jsonl
rm -f "$out" "$out".tmp-*
# About 190 windows of made-up words (a few seconds of encoding for the fixture model on 2 cores).
awk 'BEGIN { srand(7); printf "{\"id\":\"long\",\"text\":\""; for (i = 0; i < 25000; i++) printf "%s ", "w" int(rand() * 500); print "\"}" }' > "$input"
"$cache" build --model "$model" --input "$input" --out "$out" --batch-size 100000 >/dev/null 2>"$work/stderr" &
pid=$!
for _ in $(seq 1 200); do ls "$out".tmp-* >/dev/null 2>&1 && break; sleep 0.05; done
sleep 0.5
kill -s TERM $pid
wait $pid
rc=$?
[ -e "$out" ] && { echo "FAIL: the cache was written (exit $rc)"; exit 1; }
[ $rc -eq 130 ] || { echo "FAIL: exit $rc, expected 130"; cat "$work/stderr"; exit 1; }
ls "$out".tmp-* >/dev/null 2>&1 && { echo "FAIL: temporary left"; exit 1; }
echo "stopped in the last batch: exit 130, no cache"
