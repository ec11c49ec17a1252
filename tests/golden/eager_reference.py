"""Eager PyTorch reference for tests/parity_test.cpp (run by CTest before it; nothing is committed).

For SQuAD dev (question, context) pairs, tokenized by `deformer-qa tokenize` (whose own parity with Hugging Face
is tested separately), it builds both layouts of docs/design.md ('Layouts') here in Python, independently of the C++
layout code, and runs the exporter's eager BertQA module read back from the model file:
  full mode      [CLS] q[:64] [SEP] window [SEP], contiguous positions, types 0/1 (length <= 384)
  deformer mode  blocks [CLS] q[:25] [SEP] (27) and window [SEP] (293), each with positions from 0, run
                 separately through layers 0..k-1 and jointly through k..n-1, for several k
Usage: eager_reference.py --model M.pt --squad dev-v1.1.json --tokenizer-cmd "deformer-qa tokenize --model M.pt"
       --out cases.json [--count 24]
"""
import argparse
import json
import os
import shlex
import subprocess
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools"))
from pydeformer.modelfile import load_model_file  # noqa: E402


def tokenize(command, texts):
    lines = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    proc = subprocess.run(shlex.split(command), input=lines, capture_output=True, text=True, check=True)
    return [json.loads(line)["ids"] for line in proc.stdout.splitlines()]


def pairs(path, count):
    with open(path, encoding="utf-8") as f:
        articles = json.load(f)["data"]
    out = []
    for a, article in enumerate(articles):
        for p, paragraph in enumerate(article["paragraphs"][:2]):
            out.append(((a, p, 0), paragraph["qas"][0]["question"], paragraph["context"]))
            if len(out) == count:
                return out
    return out


def run(model, ids, types, positions):
    ids, types, positions = (torch.tensor([x]) for x in (ids, types, positions))
    return model(ids, types, positions, (ids != 0).long())[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--squad", required=True)
    parser.add_argument("--tokenizer-cmd", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--count", type=int, default=24)
    args = parser.parse_args()

    model, config, vocab = load_model_file(args.model)
    tokens = vocab.splitlines()
    cls_id, sep_id = tokens.index("[CLS]"), tokens.index("[SEP]")
    layout = config["layout"]
    n = config["bert"]["num_hidden_layers"]
    ks = sorted({0, n // 2, n - 1, n})
    qb, db = layout["question_block"], layout["document_block"]

    chosen = pairs(args.squad, args.count)
    encoded = tokenize(args.tokenizer_cmd, [t for _, q, c in chosen for t in (q, c)])
    cases = []
    with torch.no_grad():
        for i, (key, _, _) in enumerate(chosen):
            q, ctx = encoded[2 * i], encoded[2 * i + 1]
            # One window serves both modes: the context's first tokens, as many as both layouts can hold.
            fq = q[: layout["max_question_len"]]
            window = ctx[: min(db - 1, layout["max_seq_len"] - len(fq) - 3)]
            ids = [cls_id] + fq + [sep_id] + window + [sep_id]
            types = [0] * (len(fq) + 2) + [1] * (len(window) + 1)
            full = model(torch.tensor([ids]), torch.tensor([types]), torch.arange(len(ids)).unsqueeze(0),
                         torch.ones(1, len(ids), dtype=torch.long))[0]
            q_ids = ([cls_id] + q[: qb - 2] + [sep_id])
            q_ids += [0] * (qb - len(q_ids))
            d_ids = window + [sep_id]
            d_ids += [0] * (db - len(d_ids))
            qt, dt = torch.tensor([q_ids]), torch.tensor([d_ids])
            splits = []
            for k in ks:
                hq = model.encode(model.embed(qt, torch.zeros_like(qt), torch.arange(qb).unsqueeze(0)), (qt != 0).long(), 0, k)
                hd = model.encode(model.embed(dt, torch.ones_like(dt), torch.arange(db).unsqueeze(0)), (dt != 0).long(), 0, k)
                joint = torch.cat([hq, hd], 1)
                mask = torch.cat([qt, dt], 1) != 0
                logits = model.qa_logits(model.encode(joint, mask.long(), k, n))[0]
                splits.append({"k": k, "start": logits[:, 0].tolist(), "end": logits[:, 1].tolist()})
            cases.append({"key": list(key), "question_ids": q, "window_ids": window,
                          "input_ids": ids, "token_type_ids": types,
                          "full": {"start": full[:, 0].tolist(), "end": full[:, 1].tolist()},
                          "deformer": splits})
    with open(args.out, "w") as f:
        json.dump({"reference": "pydeformer eager, torch %s" % torch.__version__, "model": os.path.abspath(args.model),
                   "cls": cls_id, "sep": sep_id, "pad": 0, "cases": cases}, f)
    print("eager reference: %d pairs, k in %s -> %s" % (len(cases), ks, args.out))


if __name__ == "__main__":
    main()
