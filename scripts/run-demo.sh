#!/usr/bin/env bash
# The demo job on an existing build: the sample questions over the sample documents, in both modes, timed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
QA=$BUILD_DIR/tools/deformer-qa
DEMO=$BUILD_DIR/demo
MODEL=${DEFORMER_MODEL:-$ROOT/models/squad-small-bert.pt}
mkdir -p "$DEMO"
if [ -z "${DEFORMER_MODEL:-}" ]; then
  echo "Model: the bundled small BERT trained by tools/train (models/README.md: SQuAD dev F1 61 in full mode)."
  echo "It is small (6 layers, hidden 256): decomposed at the default k=4 it loses most of its accuracy (dev F1 24),"
  echo "so expect the full-mode column to be the sensible one. Set DEFORMER_MODEL to use your own model file."
fi
"$QA" info --model "$MODEL" | grep -E "layers|hidden_size|parameters"
echo
echo "Offline: caching the sample documents' layer-k states (deformer-cache build)"
"$BUILD_DIR/tools/deformer-cache" build --model "$MODEL" --input "$ROOT/samples/documents" --out "$DEMO/samples.h5"
echo
echo "Questions: deformer mode reads the cached documents; full mode (standard BERT) reads the raw text."
# One process per mode answers every question, so the times are those of a warm reader.
python3 - "$ROOT" "$DEMO" <<'PY'
import json, sys
root, demo = sys.argv[1:3]
with open(root + "/samples/questions.tsv") as f, open(demo + "/cached.jsonl", "w") as cached, \
     open(demo + "/raw.jsonl", "w") as raw:
    for n, line in enumerate(f):
        doc, question = line.rstrip("\n").split("\t")
        cached.write(json.dumps({"id": str(n), "question": question, "doc": doc + ".txt"}) + "\n")
        text = open("%s/samples/documents/%s.txt" % (root, doc)).read()
        raw.write(json.dumps({"id": str(n), "question": question, "context": text}) + "\n")
PY
"$QA" ask --model "$MODEL" --mode deformer --cache "$DEMO/samples.h5" --questions "$DEMO/cached.jsonl" --timing \
  > "$DEMO/deformer.jsonl" 2> "$DEMO/deformer-time.txt"
"$QA" ask --model "$MODEL" --mode full --questions "$DEMO/raw.jsonl" --timing \
  > "$DEMO/full.jsonl" 2> "$DEMO/full-time.txt"
python3 - "$ROOT" "$DEMO" <<'PY'
import json, sys
root, demo = sys.argv[1:3]
questions = [line.rstrip("\n").split("\t") for line in open(root + "/samples/questions.tsv")]
answers = {mode: [json.loads(l)["answers"][0] for l in open("%s/%s.jsonl" % (demo, mode))] for mode in ("deformer", "full")}
for i, (doc, question) in enumerate(questions):
    print("Q: %s   [%s.txt]" % (question, doc))
    for mode in ("deformer", "full"):
        a = answers[mode][i]
        print("  %-8s %-62s score %.4f" % (mode, a["answer"][:62], a["score"]))
PY
echo
echo "Time for all $(wc -l < "$ROOT/samples/questions.tsv") questions, one process per mode, model load excluded:"
echo "  $(cat "$DEMO/deformer-time.txt")  (documents' lower layers read from the cache)"
echo "  $(cat "$DEMO/full-time.txt")"
