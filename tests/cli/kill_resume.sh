#!/usr/bin/env bash
# kill_resume.sh DEFORMER_CACHE MODEL WORKDIR: a corpus built in 8 shards, the build killed with SIGKILL at 20 random
# moments and started again each time. A shard finished before a kill is never lost or rebuilt (its file is the
# same), every run goes on where the last stopped, and after the last run every document is in the merged cache
# once, with no temporary file left behind.
set -u
cache=$1 model=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
for i in $(seq 1 240); do
  printf '{"id": "d%d", "text": "Document %d: the Vell rises in the Ossary Hills, passes the mills of Harn and reaches the sea after %d miles. Otters came back in the 1990s."}\n' "$i" "$i" "$i"
done > "$work/corpus.jsonl"
build_all() {
  for s in 0 1 2 3 4 5 6 7; do
    "$cache" build --model "$model" --input "$work/corpus.jsonl" --out "$work/c.h5" --shard-index $s --num-shards 8 \
      --batch-size 4 || return 1
  done
}
finished() {  # "shard:inode.mtime" of every finished shard
  for f in "$work"/c-0000?-of-00008.h5; do [ -e "$f" ] && echo "$f:$(stat -c %i.%.9Y "$f")"; done
}
RANDOM=24
for kill in $(seq 1 20); do
  before=$(finished)
  build_all > "$work/run-$kill.log" 2>&1 &
  driver=$!
  sleep "$((RANDOM % 4)).$((RANDOM % 10))"  # 0 to 3.9 s: during a model load, a batch or a commit
  pkill -KILL -f "deformer-cache build --model $model --input $work/corpus.jsonl" 2>/dev/null
  kill -KILL $driver 2>/dev/null
  wait $driver 2>/dev/null
  for entry in $before; do  # a finished shard is still there, untouched
    echo "$(finished)" | grep -qxF "$entry" || { echo "FAIL: kill $kill lost or rebuilt ${entry%%:*}"; exit 1; }
  done
done
echo "$(finished | wc -l) of 8 shards finished after 20 kills"
build_all > "$work/last.log" 2>&1 || { cat "$work/last.log"; echo "FAIL: the last run failed"; exit 1; }
left=$(ls "$work" | grep -c "\.tmp-" || true)
[ "$left" = 0 ] || { echo "FAIL: temporaries left: $(ls "$work" | grep tmp)"; exit 1; }
"$cache" merge --out "$work/c.json" "$work"/c-0000?-of-00008.h5 > /dev/null || exit 1
"$cache" info "$work/c.json" --json | grep -q '"documents":240' || { echo "FAIL: not 240 documents"; exit 1; }
"$cache" verify "$work/c.json" > /dev/null || { echo "FAIL: the merged cache does not verify"; exit 1; }
echo "killed 20 times: nothing finished lost, no temporaries"
