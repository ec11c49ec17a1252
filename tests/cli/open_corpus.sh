#!/usr/bin/env bash
# open_corpus.sh DEFORMER_CACHE DEFORMER_QA MODEL DEV_JSON WORKDIR: open-corpus SQuAD in small (the CI variant of
# issue 17's evaluation): the first two dev articles (103 paragraphs) as the corpus, the questions of every 10th
# paragraph asked against all of it through the retrieval index, and the retriever's recall and the answers' EM
# checked against floors well below what the bundled model reaches (benchmarks/results/open-squad/README.md).
set -eu
cache=$1 qa=$2 model=$3 dev=$4 work=$5
mkdir -p "$work"
python3 - "$dev" "$work/corpus.json" <<'PY'
import json, sys
data = json.load(open(sys.argv[1], encoding="utf-8"))
json.dump({"version": data["version"], "data": data["data"][:2]}, open(sys.argv[2], "w", encoding="utf-8"))
PY
"$cache" build --model "$model" --input "$work/corpus.json" --out "$work/corpus.h5" --dtype int8
"$qa" eval --model "$model" --squad "$work/corpus.json" --cache "$work/corpus.h5" --open --every 10 --retrieve 5 \
  --reader-weight 0 0.5 1 --json > "$work/open.json"
cat "$work/open.json"
python3 - "$work/open.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
em = {w["reader_weight"]: w["exact_match"] for w in r["by_reader_weight"]}
problems = []
if r["questions"] < 40: problems.append("only %d questions" % r["questions"])
if r["recall"]["1"] < 50 or r["recall"]["5"] < 80: problems.append("recall %s" % r["recall"])
if em[0.5] < 40: problems.append("EM at reader weight 0.5: %.1f" % em[0.5])
print("FAIL: " + "; ".join(problems) if problems else "open corpus: ok")
sys.exit(1 if problems else 0)
PY
