#!/usr/bin/env python3
"""questions_batched.py DEFORMER_QA DEFORMER_CACHE MODEL DOCUMENTS_DIR WORKDIR

`deformer-qa ask --questions` answers its lines together (raw-text lines in one reader call, cached lines in
another, retrieved ones in a third): each line's answers equal `ask`'s for that question alone.
"""
import json
import os
import subprocess
import sys

qa, cache_tool, model, documents, work = sys.argv[1:6]
os.makedirs(work, exist_ok=True)
cache = os.path.join(work, "lines.h5")
for stale in (cache, cache + ".bm25"):
    if os.path.exists(stale):
        os.remove(stale)
subprocess.run([cache_tool, "build", "--model", model, "--input", documents, "--out", cache], check=True,
               stdout=subprocess.DEVNULL)
questions = ["Where does the Vell rise?", "How many squares has a chess board?", "What makes the bread rise?",
             "Who kept the lighthouse?", "What is the autolyse?"]
names = sorted(f for f in os.listdir(documents) if f.endswith(".txt"))
raw_lines, cached_lines, expected_raw, expected_cached = [], [], [], []
for q in questions:
    for name in names:
        path = os.path.join(documents, name)
        raw_lines.append({"id": name, "question": q, "context": open(path, encoding="utf-8").read()})
        expected_raw.append(subprocess.run([qa, "ask", "--model", model, "--question", q, "--context-file", path,
                                            "--top-k", "2"], check=True, capture_output=True, text=True).stdout)
        cached_lines.append({"id": name, "question": q, "doc": name})
        expected_cached.append(subprocess.run([qa, "ask", "--model", model, "--cache", cache, "--doc", name,
                                               "--question", q, "--top-k", "2"],
                                              check=True, capture_output=True, text=True).stdout)
    cached_lines.append({"id": "retrieved", "question": q})
    expected_cached.append(subprocess.run([qa, "ask", "--model", model, "--cache", cache, "--question", q, "--top-k", "2"],
                                          check=True, capture_output=True, text=True).stdout)


def run(lines, *extra):
    out = subprocess.run([qa, "ask", "--model", model, "--questions", "-", "--top-k", "2", *extra], check=True,
                         input="".join(json.dumps(l) + "\n" for l in lines), capture_output=True, text=True).stdout
    return [json.loads(l) for l in out.splitlines()]


def same(got, want_text):
    want = [json.loads(l) for l in want_text.splitlines() if l.strip()]
    if len(got) != len(want):
        return False
    return all(g["answer"] == w["answer"] and g["doc"] == w["doc"] and g["start"] == w["start"] and
               abs(g["score"] - w["score"]) < 1e-5 for g, w in zip(got, want))


for label, lines, expected, extra in (("raw text", raw_lines, expected_raw, ()),
                                      ("cached", cached_lines, expected_cached, ("--cache", cache))):
    got = run(lines, *extra)
    if len(got) != len(lines):
        print("FAIL: %s: %d output lines for %d" % (label, len(got), len(lines)))
        sys.exit(1)
    for line, out, want in zip(lines, got, expected):
        if out["id"] != line["id"] or not same(out["answers"], want):
            print("FAIL: %s: %s / %s: %s against %s" % (label, line["question"], line["id"], out, want))
            sys.exit(1)
    print("%s: %d lines answered together equal each alone" % (label, len(lines)))
print("questions batched: ok")
