#!/usr/bin/env bash
# Open-corpus SQuAD v1.1 with the bundled model (issue 17): the reader weight chosen on train questions, then dev
# questions asked against a corpus of paragraphs through the retrieval index.
#   benchmarks/open_squad.sh OUT_DIR [CORPUS]
# CORPUS "dev" (default): the 2,067 dev paragraphs; "all": train and dev, about 21,000 (one cache per file, merged).
# Tuning: every SAMPLE-th train paragraph (18: about 1,050) as its own corpus, the questions of every TUNE_EVERY-th
# (10) of those. Other settings: BUILD_DIR, MODEL, DEV_EVERY (10), RETRIEVE (20), WEIGHTS ("0 0.1 ... 1").
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
DATA=${DEFORMER_DATA:-$ROOT/../shared/data}
MODEL=${MODEL:-$ROOT/models/squad-minilm.pt}
out=${1:?usage: open_squad.sh OUT_DIR [dev|all]} corpus=${2:-dev}
weights=${WEIGHTS:-0 0.1 0.3 0.5 0.7 0.9 1}
mkdir -p "$out"
cache() { "$BUILD_DIR/tools/deformer-cache" "$@"; }
qa() { "$BUILD_DIR/tools/deformer-qa" "$@"; }
python3 - "$DATA" "$out" "${SAMPLE:-18}" <<'PY'
import json, lzma, sys, zipfile
data, out, every = sys.argv[1], sys.argv[2], int(sys.argv[3])
with zipfile.ZipFile(data + "/squad/dev-v1.1.json.zip") as z:
    dev = json.loads(z.read("dev-v1.1.json"))
json.dump(dev, open(out + "/dev.json", "w"))
train = json.load(lzma.open(data + "/squad/train-v1.1-rebuilt.json.xz"))
json.dump(train, open(out + "/train.json", "w"))
n = 0  # every n-th train paragraph, under its article (ids are <title>#<index in the sample>)
sample = []
for article in train["data"]:
    kept = [p for p in article["paragraphs"] if (n := n + 1) % every == 0]
    if kept:
        sample.append({"title": article["title"], "paragraphs": kept})
json.dump({"version": train["version"], "data": sample}, open(out + "/train-sample.json", "w"))
PY
[ -e "$out/train-sample.h5" ] || cache build --model "$MODEL" --input "$out/train-sample.json" --out "$out/train-sample.h5" --dtype int8
qa eval --model "$MODEL" --squad "$out/train-sample.json" --cache "$out/train-sample.h5" --open --every "${TUNE_EVERY:-10}" \
  --retrieve "${RETRIEVE:-20}" --reader-weight $weights --json | tee "$out/tune-train.json"
[ -e "$out/dev.h5" ] || cache build --model "$MODEL" --input "$out/dev.json" --out "$out/dev.h5" --dtype int8
corpus_cache=$out/dev.h5
if [ "$corpus" = all ]; then
  [ -e "$out/train.h5" ] || cache build --model "$MODEL" --input "$out/train.json" --out "$out/train.h5" --dtype int8
  cache merge --out "$out/all.json" "$out/train.h5" "$out/dev.h5"
  corpus_cache=$out/all.json
fi
qa eval --model "$MODEL" --squad "$out/dev.json" --cache "$corpus_cache" --open --every "${DEV_EVERY:-10}" \
  --retrieve "${RETRIEVE:-20}" --reader-weight $weights --json | tee "$out/open-dev-$corpus.json"
