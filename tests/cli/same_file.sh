#!/usr/bin/env bash
# same_file.sh QA CACHE_TOOL MODEL SAMPLES_H5 WORK SQUAD: every tool refuses an output that is one of its inputs
# (the same file by another path or a link too), exits non-zero naming it, and leaves the input as it was.
set -u
QA=$1 CACHE=$2 MODEL=$3 SAMPLES=$4 WORK=$5 SQUAD=$6
mkdir -p "$WORK" && cd "$WORK" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
check() {  # check NAME FILE COMMAND...
  local name=$1 file=$2
  shift 2
  cp "$file" "$name.before"
  if "$@" > "$name.out" 2>&1; then cat "$name.out"; fail "$name: exit 0"; fi
  grep -q "is the input" "$name.out" || { cat "$name.out"; fail "$name: no same-file message"; }
  cmp -s "$file" "$name.before" || fail "$name: the input changed"
  echo "$name: refused, input kept ($(head -c 200 "$name.out"))"
}
cp "$SAMPLES" shard.h5
check merge shard.h5 "$CACHE" merge --out shard.h5 shard.h5
printf '{"id":"a","text":"The lamp was first lit in 1871."}\n' > docs.jsonl
check build docs.jsonl "$CACHE" build --model "$MODEL" --input docs.jsonl --out docs.jsonl
ln -sf docs.jsonl link.jsonl
check build_by_link docs.jsonl "$CACHE" build --model "$MODEL" --input docs.jsonl --out link.jsonl
cp "$MODEL" model.pt
check build_over_model model.pt "$CACHE" build --model model.pt --input docs.jsonl --out model.pt
cp "$SQUAD" squad.json
check eval squad.json "$QA" eval --model "$MODEL" --squad squad.json --out ./squad.json
echo "every input kept"
