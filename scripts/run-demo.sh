#!/usr/bin/env bash
# The demo job on an existing build: the sample questions over the sample documents, in both modes, timed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
QA=$BUILD_DIR/tools/deformer-qa
DEMO=$BUILD_DIR/demo
MODEL=${DEFORMER_MODEL:-$ROOT/models/squad-minilm.pt}
mkdir -p "$DEMO"
if [ -z "${DEFORMER_MODEL:-}" ]; then
  echo "Model: the bundled MiniLM (10 layers, hidden 384), grown from all-MiniLM-L6-v2 and fine-tuned by tools/train for"
  echo "deformer mode at k=7 (models/README.md: SQuAD v1.1 dev F1 82.3 decomposed at k=7, 84.4 in full mode)."
  echo "Set DEFORMER_MODEL to use your own model file."
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
     open(demo + "/raw.jsonl", "w") as raw, open(demo + "/retrieved.jsonl", "w") as retrieved:
    for n, line in enumerate(f):
        doc, question, _ = line.rstrip("\n").split("\t")
        cached.write(json.dumps({"id": str(n), "question": question, "doc": doc + ".txt"}) + "\n")
        retrieved.write(json.dumps({"id": str(n), "question": question}) + "\n")
        text = open("%s/samples/documents/%s.txt" % (root, doc)).read()
        raw.write(json.dumps({"id": str(n), "question": question, "context": text}) + "\n")
PY
"$QA" ask --model "$MODEL" --mode deformer --cache "$DEMO/samples.h5" --questions "$DEMO/cached.jsonl" --timing \
  > "$DEMO/deformer.jsonl" 2> "$DEMO/deformer-time.txt"
"$QA" ask --model "$MODEL" --mode full --questions "$DEMO/raw.jsonl" --timing \
  > "$DEMO/full.jsonl" 2> "$DEMO/full-time.txt"
# The same questions naming no document: the cache's BM25 index picks the documents, and the answers of all of
# them are ranked together (retrieve, then read).
"$QA" ask --model "$MODEL" --cache "$DEMO/samples.h5" --questions "$DEMO/retrieved.jsonl" --retrieve 2 \
  > "$DEMO/retrieved.jsonl.out"
python3 - "$ROOT" "$DEMO" <<'PY'
import json, sys
root, demo = sys.argv[1:3]
questions = [line.rstrip("\n").split("\t") for line in open(root + "/samples/questions.tsv")]
answers = {mode: [json.loads(l)["answers"][0] for l in open("%s/%s.jsonl" % (demo, mode))] for mode in ("deformer", "full")}
retrieved = [json.loads(l)["answers"][0] for l in open(demo + "/retrieved.jsonl.out")]
right = {"deformer": 0, "full": 0}
for i, (doc, question, expected) in enumerate(questions):
    print("Q: %s   [%s.txt]  (expected: %s)" % (question, doc, expected))
    for mode in ("deformer", "full"):
        a = answers[mode][i]
        ok = expected.lower() in a["answer"].lower()  # the answer holds the span written for the question
        right[mode] += ok
        print("  %-8s %s %-60s score %.4f" % (mode, "right" if ok else "WRONG", a["answer"][:60], a["score"]))
    a = retrieved[i]
    ok = expected.lower() in a["answer"].lower() and a["doc"] == doc + ".txt"
    right["retrieved"] = right.get("retrieved", 0) + ok
    print("  %-8s %s %-60s from %s" % ("no doc", "right" if ok else "WRONG", a["answer"][:60], a["doc"]))
print()
print("Right: deformer mode %d of %d, full mode %d of %d; deformer mode with the document retrieved %d of %d"
      % (right["deformer"], len(questions), right["full"], len(questions), right["retrieved"], len(questions)))
PY
echo
echo "Time for all $(wc -l < "$ROOT/samples/questions.tsv") questions, one process per mode, model load excluded:"
echo "  $(cat "$DEMO/deformer-time.txt")  (documents' lower layers read from the cache)"
echo "  $(cat "$DEMO/full-time.txt")"
