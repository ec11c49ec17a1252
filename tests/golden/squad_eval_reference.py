#!/usr/bin/env python3
"""Reference SQuAD scorer, written from the metric's definition in plain Python (no dependencies).

It follows the official evaluate-v1.1.py and evaluate-v2.0.py: Python's own str.lower(), re and
str.split() do the Unicode work, which is what the C++ scorer (src/squad.cpp) has to reproduce. The
tests run both on the same inputs and compare (tests/squad_test.cpp, ReferenceScript.*).

One extension, shared with the C++ scorer: evaluate-v2.0.py cannot score a file with missing
predictions (its HasAns/NoAns breakdown raises KeyError), so in v2.0, as in v1.1, a missing prediction
scores 0 and counts in every total. With complete predictions the v2.0 numbers are the official ones.

    squad_eval_reference.py score DATA.json PREDS.json [--na-prob NA.json] [--na-prob-thresh T]
                                  [--metric auto|v1.1|v2.0]
    squad_eval_reference.py normalize STRINGS.json     # a JSON list of strings -> their normal forms
"""
import argparse
import collections
import json
import re
import string
import sys


def normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def questions(dataset):
    for article in dataset["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                yield qa


# --- v1.1 ---------------------------------------------------------------------------------------------

def f1_v11(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_v11(prediction, ground_truth):
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def evaluate_v11(dataset, predictions):
    f1 = exact_match = total = missing = 0
    for qa in questions(dataset):
        total += 1
        if qa["id"] not in predictions:
            missing += 1
            continue
        ground_truths = [a["text"] for a in qa["answers"]]
        prediction = predictions[qa["id"]]
        exact_match += max(exact_v11(prediction, g) for g in ground_truths)
        f1 += max(f1_v11(prediction, g) for g in ground_truths)
    return collections.OrderedDict([
        ("exact_match", 100.0 * exact_match / total),
        ("f1", 100.0 * f1 / total),
        ("total", total),
        ("missing_predictions", missing),
    ])


# --- v2.0 ---------------------------------------------------------------------------------------------

def get_tokens(s):
    if not s:
        return []
    return normalize_answer(s).split()


def exact_v20(a_gold, a_pred):
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def f1_v20(a_gold, a_pred):
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def evaluate_v20(dataset, preds, na_probs, na_prob_thresh):
    qid_to_has_ans = collections.OrderedDict()
    for qa in questions(dataset):
        qid_to_has_ans[qa["id"]] = bool(qa["answers"])
    exact_raw, f1_raw = {}, {}
    for qa in questions(dataset):
        qid = qa["id"]
        if qid not in preds:
            continue
        gold_answers = [a["text"] for a in qa["answers"] if normalize_answer(a["text"])] or [""]
        exact_raw[qid] = max(exact_v20(a, preds[qid]) for a in gold_answers)
        f1_raw[qid] = max(f1_v20(a, preds[qid]) for a in gold_answers)
    probs = na_probs if na_probs is not None else {k: 0.0 for k in preds}

    def thresholded(raw):
        out = {}
        for qid in qid_to_has_ans:
            if qid not in raw:
                out[qid] = 0.0  # missing prediction (the extension)
            elif probs[qid] > na_prob_thresh:
                out[qid] = float(not qid_to_has_ans[qid])
            else:
                out[qid] = raw[qid]
        return out

    exact, f1 = thresholded(exact_raw), thresholded(f1_raw)

    def mean(qids):
        return (100.0 * sum(exact[k] for k in qids) / len(qids), 100.0 * sum(f1[k] for k in qids) / len(qids),
                len(qids))

    out = collections.OrderedDict()
    out["exact"], out["f1"], out["total"] = mean(list(qid_to_has_ans))
    for name, want in (("HasAns", True), ("NoAns", False)):
        qids = [k for k, v in qid_to_has_ans.items() if v == want]
        if qids:
            out[name + "_exact"], out[name + "_f1"], out[name + "_total"] = mean(qids)
    if na_probs is not None:
        for name, raw in (("exact", exact_raw), ("f1", f1_raw)):
            # A missing prediction scores 0 at every threshold, so it is left out of the start score.
            cur_score = sum(1 for k, v in qid_to_has_ans.items() if not v and k in raw)
            best_score, best_thresh = cur_score, 0.0
            for qid in sorted(na_probs, key=lambda k: na_probs[k]):
                if qid not in raw:
                    continue
                if qid_to_has_ans[qid]:
                    diff = raw[qid]
                else:
                    diff = -1 if preds[qid] else 0
                cur_score += diff
                if cur_score > best_score:
                    best_score, best_thresh = cur_score, na_probs[qid]
            out["best_" + name] = 100.0 * best_score / len(qid_to_has_ans)
            out["best_%s_thresh" % name] = best_thresh
    out["missing_predictions"] = sum(1 for k in qid_to_has_ans if k not in exact_raw)
    return out


def is_v2(dataset):
    version = str(dataset.get("version", ""))
    return version.startswith(("v2", "2")) or any(qa.get("is_impossible") is True for qa in questions(dataset))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score")
    score.add_argument("data_file")
    score.add_argument("pred_file")
    score.add_argument("--na-prob")
    score.add_argument("--na-prob-thresh", type=float, default=1.0)
    score.add_argument("--metric", choices=["auto", "v1.1", "v2.0"], default="auto")
    norm = sub.add_parser("normalize")
    norm.add_argument("strings_file")
    args = parser.parse_args()

    if args.command == "normalize":
        with open(args.strings_file, encoding="utf-8") as f:
            strings = json.load(f)
        json.dump([normalize_answer(s) for s in strings], sys.stdout, ensure_ascii=False)
        return

    with open(args.data_file, encoding="utf-8") as f:
        dataset = json.load(f)
    with open(args.pred_file, encoding="utf-8") as f:
        preds = json.load(f)
    na_probs = None
    if args.na_prob:
        with open(args.na_prob, encoding="utf-8") as f:
            na_probs = json.load(f)
    v2 = args.metric == "v2.0" or (args.metric == "auto" and is_v2(dataset))
    if v2:
        out = evaluate_v20(dataset, preds, na_probs, args.na_prob_thresh)
    else:
        out = evaluate_v11(dataset, preds)
    dev_ids = {qa["id"] for qa in questions(dataset)}
    out["ignored_predictions"] = sum(1 for k in preds if k not in dev_ids)
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
