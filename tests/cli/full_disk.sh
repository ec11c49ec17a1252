#!/usr/bin/env bash
# full_disk.sh DEFORMER_CACHE MODEL DOCUMENTS WORKDIR: a build that runs out of space (a file size limit, with
# SIGXFSZ ignored, so that writes fail as on a full disk) exits 1 with a clear error, leaves no temporary, and keeps
# the previous cache at the path. It used to print HDF5's error and die with SIGSEGV in HDF5's cleanup at exit.
set -u
cache=$1 model=$2 documents=$3 work=$4
rm -rf "$work" && mkdir -p "$work"
"$cache" build --model "$model" --input "$documents" --out "$work/c.h5" --no-text-index > /dev/null || exit 1
before=$(md5sum < "$work/c.h5")
for i in $(seq 1 400); do
  printf '{"id": "d%d", "text": "Document %d tells how the Vell rises in the Ossary Hills and runs to the sea past the mills of Harn, where otters returned in the 1990s."}\n' "$i" "$i"
done > "$work/many.jsonl"
out=$(bash -c "trap '' XFSZ; ulimit -f 600; exec '$cache' build --model '$model' --input '$work/many.jsonl' --out '$work/c.h5' --no-text-index" 2>&1)
rc=$?
echo "$out" | tail -3
[ $rc -eq 1 ] || { echo "FAIL: exit $rc, expected 1"; exit 1; }
echo "$out" | grep -q "cannot write cache '.*': File too large" || { echo "FAIL: the error does not say why"; exit 1; }
[ "$(md5sum < "$work/c.h5")" = "$before" ] || { echo "FAIL: the previous cache changed"; exit 1; }
if ls "$work" | grep -q tmp; then echo "FAIL: temporaries left: $(ls "$work")"; exit 1; fi
echo "full disk: ok"
