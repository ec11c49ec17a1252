#!/usr/bin/env bash
# stale_cache.sh DEFORMER_QA DEFORMER_CACHE MODEL WORKDIR: `eval --cache` answers from a cache of the same SQuAD file,
# and refuses one built from another version of it (it answered from the old paragraphs, exit 0).
set -u
qa=$1 cache=$2 model=$3 work=$4
rm -rf "$work" && mkdir -p "$work"
squad() {  # squad TEXT_OF_THE_SECOND_PARAGRAPH
  printf '{"version": "1.1", "data": [{"title": "Vell", "paragraphs": [
  {"context": "The Vell rises in the Harn hills.", "qas": [{"id": "q1", "question": "Where does the Vell rise?",
   "answers": [{"text": "the Harn hills", "answer_start": 18}]}]},
  {"context": "%s", "qas": [{"id": "q2", "question": "Who built the mill?",
   "answers": [{"text": "Ada Brun", "answer_start": 0}]}]}]}]}\n' "$1"
}
squad "Ada Brun built the mill in 1820." > "$work/v1.json"
squad "Ada Brun built the mill in 1821." > "$work/v2.json"
"$cache" build --model "$model" --input "$work/v1.json" --out "$work/v1.h5" --no-text-index > /dev/null || exit 1
"$qa" eval --model "$model" --squad "$work/v1.json" --cache "$work/v1.h5" > "$work/same.log" 2>&1 \
  || { cat "$work/same.log"; echo "FAIL: eval over its own cache"; exit 1; }
out=$("$qa" eval --model "$model" --squad "$work/v2.json" --cache "$work/v1.h5" 2>&1); rc=$?
echo "$out" | tail -3
[ $rc -ne 0 ] || { echo "FAIL: eval answered from a cache of another version"; exit 1; }
echo "$out" | grep -q "was built from another version of '.*v2.json': the text of paragraph 'Vell#1' differs" \
  || { echo "FAIL: the error does not name the paragraph"; exit 1; }
echo "stale cache: ok"
