#!/usr/bin/env bash
# retrieval.sh DEFORMER_CACHE DEFORMER_QA MODEL DOCUMENTS_DIR WORKDIR: a cache build writes its BM25 index, `info
# --list` lists ids with titles, questions without --doc are read over the documents retrieval finds (each answer
# with both scores), and a missing or foreign index is reported, never silently used.
set -eu
cache=$1 qa=$2 model=$3 docs=$4 work=$5
fail() { echo "FAIL: $*"; exit 1; }
mkdir -p "$work"
rm -f "$work"/retrieval*
"$cache" build --model "$model" --input "$docs" --out "$work/retrieval.h5" | grep -q "wrote $work/retrieval.h5.bm25" \
  || fail "no index written"
"$cache" info "$work/retrieval.h5" --list | grep -qP '^river\.txt\triver$' || fail "info --list lacks river.txt"
"$cache" info "$work/retrieval.h5" --json | grep -q "\"retrieval_index\":\"$work/retrieval.h5.bm25\"" || fail "info"

# The one retrieved document is the one that shares the question's rare word.
out=$("$qa" ask --model "$model" --cache "$work/retrieval.h5" --question "Where does the Vell rise?" --retrieve 1)
echo "$out"
echo "$out" | grep -q '"doc":"river.txt"' || fail "retrieved the wrong document"
echo "$out" | grep -q '"retrieval_score":' || fail "no retrieval score"
# --questions lines without "doc" or "context" are retrieved too; a line naming its doc is read there only.
printf '%s\n' '{"id":"a","question":"How many squares has a chess board?"}' '{"id":"b","question":"What rises?","doc":"bread.txt"}' \
  | "$qa" ask --model "$model" --cache "$work/retrieval.h5" --questions - --retrieve 1 > "$work/retrieval-lines.jsonl"
cat "$work/retrieval-lines.jsonl"
grep '"id":"a"' "$work/retrieval-lines.jsonl" | grep -q '"doc":"chess.txt".*"retrieval_score"' || fail "line a"
grep '"id":"b"' "$work/retrieval-lines.jsonl" | grep -v retrieval_score | grep -q '"doc":"bread.txt"' || fail "line b"

# Without an index: every document is read, and the output says so; asking for retrieval is an error.
built=$("$cache" build --model "$model" --input "$docs" --out "$work/retrieval-none.h5" --no-text-index)
if echo "$built" | grep -q bm25; then fail "--no-text-index reported an index"; fi
[ ! -e "$work/retrieval-none.h5.bm25" ] || fail "--no-text-index wrote an index"
"$qa" ask --model "$model" --cache "$work/retrieval-none.h5" --question "Where?" 2>&1 \
  | grep -q "reading all 4 cached documents instead" || fail "no note about the missing index"
if "$qa" ask --model "$model" --cache "$work/retrieval-none.h5" --question "Where?" --retrieve 2 2> "$work/err"; then
  fail "--retrieve without an index succeeded"
fi
grep -q "needs the cache's retrieval index" "$work/err" || { cat "$work/err"; fail "message"; }

# An index of other documents beside a cache is refused, naming both counts.
printf '%s\n' '{"id":"x","text":"Only one document here about rivers."}' > "$work/retrieval-one.jsonl"
"$cache" build --model "$model" --input "$work/retrieval-one.jsonl" --out "$work/retrieval-one.h5" > /dev/null
cp "$work/retrieval.h5.bm25" "$work/retrieval-one.h5.bm25"
if "$qa" ask --model "$model" --cache "$work/retrieval-one.h5" --question "Where?" --retrieve 2 2> "$work/err"; then
  fail "a foreign index was used"
fi
grep -q "does not index the cache's documents: it holds 4 documents .*, the cache 1" "$work/err" || { cat "$work/err"; fail "message"; }
echo "retrieval: ok"
