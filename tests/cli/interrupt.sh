#!/usr/bin/env bash
# interrupt.sh DEFORMER_CACHE MODEL INPUT WORKDIR: a cache build killed midway leaves either no file or the
# previous complete one under the output name (docs/design.md, 'Writing'), for SIGTERM, SIGINT and SIGKILL.
set -u
cache=$1 model=$2 input=$3 work=$4
mkdir -p "$work"
out=$work/interrupted.h5
rm -f "$out" "$out".tmp-*
fail() { echo "FAIL: $*"; exit 1; }
started() { for _ in $(seq 1 200); do ls "$out".tmp-* >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }

for signal in TERM INT KILL; do
  "$cache" build --model "$model" --input "$input" --out "$out" >/dev/null 2>"$work/stderr" &
  pid=$!
  started || fail "no temporary file appeared"
  sleep 1
  kill -s $signal $pid
  wait $pid
  rc=$?
  echo "SIG$signal: exit $rc"
  [ -e "$out" ] && fail "SIG$signal left a file under the final name"
  if [ $signal != KILL ]; then
    [ $rc -eq 130 ] || fail "SIG$signal: expected exit 130, got $rc"
    grep -q "interrupted: no cache was written" "$work/stderr" || fail "SIG$signal: no message"
    ls "$out".tmp-* >/dev/null 2>&1 && fail "SIG$signal left its temporary file"
  fi
  rm -f "$out".tmp-*
done

# A previous complete cache survives an interrupted rebuild byte for byte.
printf '{"id": "a", "text": "The lamp was lit in 1871."}\n' > "$work/one.jsonl"
"$cache" build --model "$model" --input "$work/one.jsonl" --out "$out" >/dev/null || fail "small build failed"
before=$(sha256sum < "$out")
"$cache" build --model "$model" --input "$input" --out "$out" >/dev/null 2>&1 &
pid=$!
started || fail "no temporary file appeared"
sleep 1
kill -TERM $pid
wait $pid
[ "$(sha256sum < "$out")" = "$before" ] || fail "the previous cache changed"
"$cache" info "$out" | grep -q "documents: 1" || fail "the previous cache is not readable"
echo "PASS"
