#!/usr/bin/env bash
# interrupt_long_document.sh DEFORMER_CACHE MODEL WORKDIR: SIGTERM inside one long document (many forward passes
# of the default batch) stops the build within a second: exit 130 and no cache. It used to be noticed only between
# documents, after the whole document was encoded.
set -u
cache=$1 model=$2 work=$3
mkdir -p "$work"
out=$work/long.h5 input=$work/long.jsonl
rm -f "$out" "$out".tmp-*
# About 1,500 windows of made-up words: tens of seconds of encoding for the fixture model on 2 cores.
awk 'BEGIN { srand(7); printf "{\"id\":\"long\",\"text\":\""; for (i = 0; i < 200000; i++) printf "%s ", "w" int(rand() * 500); print "\"}" }' > "$input"
"$cache" build --model "$model" --input "$input" --out "$out" --max-document-tokens 0 >/dev/null 2>"$work/stderr" &
pid=$!
for _ in $(seq 1 400); do ls "$out".tmp-* >/dev/null 2>&1 && break; sleep 0.05; done
sleep 1
sent=$(date +%s.%N)
kill -s TERM $pid
wait $pid
rc=$?
took=$(awk -v a="$sent" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
echo "stopped $took s after SIGTERM, exit $rc"
[ -e "$out" ] && { echo "FAIL: the cache was written"; exit 1; }
[ $rc -eq 130 ] || { echo "FAIL: exit $rc, expected 130"; cat "$work/stderr"; exit 1; }
awk -v t="$took" 'BEGIN { exit !(t <= 1.0) }' || { echo "FAIL: took more than 1 s to stop"; exit 1; }
ls "$out".tmp-* >/dev/null 2>&1 && { echo "FAIL: temporary left"; exit 1; }
echo "stopped inside a long document"
