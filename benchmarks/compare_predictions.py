"""Answer change between two prediction files ({id: answer}, deformer-qa eval --out): exact agreement and the SQuAD
v1.1 EM/F1 of the second file scored against the first as gold (official normalisation). Used for int8 vs fp32.
Usage: compare_predictions.py REFERENCE.json OTHER.json"""
import collections
import json
import re
import string
import sys


def normalize(s):
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def f1(gold, pred):
    g, p = normalize(gold).split(), normalize(pred).split()
    common = sum((collections.Counter(g) & collections.Counter(p)).values())
    if not g or not p:
        return float(g == p)
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


reference, other = (json.load(open(path, encoding="utf-8")) for path in sys.argv[1:3])
ids = sorted(set(reference) & set(other))  # the questions both files answer (one may cover a prefix of the other)
if not ids:
    sys.exit("%s and %s have no question in common" % (sys.argv[1], sys.argv[2]))
same = sum(reference[i] == other[i] for i in ids)
em = sum(normalize(reference[i]) == normalize(other[i]) for i in ids)
print(json.dumps({"questions": len(ids), "identical_answers": same / len(ids), "em_vs_reference": 100 * em / len(ids),
                  "f1_vs_reference": 100 * sum(f1(reference[i], other[i]) for i in ids) / len(ids)}))
