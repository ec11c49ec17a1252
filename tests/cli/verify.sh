#!/usr/bin/env bash
# verify.sh DEFORMER_CACHE DEFORMER_QA MODEL DOCUMENTS WORKDIR: `deformer-cache verify` passes an intact cache,
# lists the damage of one whose bytes were flipped here and there (exit 1), and `ask` refuses to answer from it.
set -u
cache=$1 qa=$2 model=$3 documents=$4 work=$5
rm -rf "$work" && mkdir -p "$work"
"$cache" build --model "$model" --input "$documents" --out "$work/c.h5" --dtype fp32 --no-text-index > /dev/null || exit 1
out=$("$cache" verify "$work/c.h5" --json) || { echo "FAIL: verify of an intact cache: $out"; exit 1; }
echo "$out" | grep -q '"checksums":true' || { echo "FAIL: no checksums in a new cache: $out"; exit 1; }
echo "$out" | grep -q '"damaged":\[\]' || { echo "FAIL: damage in an intact cache: $out"; exit 1; }
# One byte in every 509 flipped over the middle third of the file, past the object headers written first, so
# that states are hit.
size=$(stat -c %s "$work/c.h5")
cp "$work/c.h5" "$work/damaged.h5"
for ((at = size / 3; at < size * 2 / 3; at += 509)); do
  byte=$(od -An -tu1 -j "$at" -N1 "$work/c.h5" | tr -d ' ')
  printf "$(printf '\\%03o' $((byte ^ 16)))" | dd of="$work/damaged.h5" bs=1 seek="$at" conv=notrunc status=none
done
out=$("$cache" verify "$work/damaged.h5" 2>&1); rc=$?
echo "$out" | tail -5
[ $rc -eq 1 ] || { echo "FAIL: verify of a damaged cache exited $rc"; exit 1; }
echo "$out" | grep -Eq "is damaged|inconsistent|cannot open" || { echo "FAIL: verify does not name the damage"; exit 1; }
if echo "$out" | grep -Eq "Segmentation fault|terminate called|Aborted"; then echo "FAIL: crashed"; exit 1; fi
out=$("$qa" ask --model "$model" --cache "$work/damaged.h5" --doc river.txt --question "Where does the Vell rise?" 2>&1)
rc=$?
[ $rc -ne 0 ] || { echo "FAIL: ask answered from a damaged cache: $out"; exit 1; }
echo "$out" | grep -Eq "is damaged|inconsistent|cannot open" || { echo "FAIL: ask does not name the damage: $out"; exit 1; }
echo "verify: ok"
