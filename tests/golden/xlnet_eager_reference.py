"""Eager PyTorch reference of the XLNet layouts for tests/parity_test.cpp (run by CTest before it; nothing is committed).

For SQuAD dev (question, context) pairs, tokenized by `deformer-qa tokenize`, it builds both XLNet layouts here in
Python, independently of the C++ layout and engine code (docs/xlnet.md), and runs the exporter's eager XLNetQA:
  full mode      HF's XLNet sequence window <sep> q[:64] <sep> <cls>, left-padded to max_seq_len, segments 0/1/2,
                 padding segment 3
  deformer mode  blocks q[:25] <sep> <cls> (27) and window <sep> (293), each alone (one segment, positions from 0)
                 through layers 0..k-1; then the real rows only, concatenated without any padding as
                 [window <sep> q <sep> <cls>] (segments 0, 1, <cls> 2, positions 0..), through k..n-1. The C++
                 engine keeps the padded blocks and closes the gap with position ids: a different computation that
                 must give the same logits at real positions.
Usage: xlnet_eager_reference.py --model M.pt --squad dev-v1.1.json --tokenizer-cmd "deformer-qa tokenize --model M.pt"
       --out cases.json [--count 24]
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools"))
sys.path.insert(0, HERE)
from eager_reference import pairs, tokenize  # noqa: E402
from pydeformer.modelfile import load_model_file  # noqa: E402

# XLNet's special pieces in xlnet-base-cased's spiece.model (HF XLNetTokenizer uses the same ids).
CLS, SEP, PAD = 3, 4, 5


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--squad", required=True)
    parser.add_argument("--tokenizer-cmd", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--count", type=int, default=24)
    args = parser.parse_args()

    model, config, _ = load_model_file(args.model)
    layout = config["layout"]
    n = config["xlnet"]["n_layer"]
    ks = sorted({0, n // 2, n - 1, n})
    qb, db, seq = layout["question_block"], layout["document_block"], layout["max_seq_len"]

    def lower(ids, k):
        t = torch.tensor([ids])
        same = torch.zeros_like(t)
        return model.encode(model.embed(t), (t != PAD).long(), same, torch.arange(len(ids)).unsqueeze(0), 0, k)

    chosen = pairs(args.squad, args.count)
    encoded = tokenize(args.tokenizer_cmd, [t for _, q, c in chosen for t in (q, c)])
    cases = []
    with torch.no_grad():
        for i, (key, _, _) in enumerate(chosen):
            q, ctx = encoded[2 * i], encoded[2 * i + 1]
            fq = q[: layout["max_question_len"]]
            window = ctx[: min(db - 1, seq - len(fq) - 3)]
            real = window + [SEP] + fq + [SEP] + [CLS]
            pad = seq - len(real)
            ids = [PAD] * pad + real
            types = [3] * pad + [0] * (len(window) + 1) + [1] * (len(fq) + 1) + [2]
            mask = [0] * pad + [1] * len(real)
            full = model(torch.tensor([ids]), torch.tensor([types]), torch.tensor([mask]))[0]

            q_real = q[: qb - 2] + [SEP, CLS]
            d_real = window + [SEP]
            q_ids = q_real + [PAD] * (qb - len(q_real))
            d_ids = d_real + [PAD] * (db - len(d_real))
            splits = []
            for k in ks:
                hq, hd = lower(q_ids, k), lower(d_ids, k)
                joint = torch.cat([hd[:, : len(d_real)], hq[:, : len(q_real)]], 1)
                length = joint.size(1)
                segments = torch.tensor([[0] * len(d_real) + [1] * (len(q_real) - 1) + [2]])
                upper = model.encode(joint, torch.ones(1, length, dtype=torch.long), segments,
                                     torch.arange(length).unsqueeze(0), k, n)
                logits = model.qa_logits(upper)[0]
                # Back to the padded [document block ; question block] row the C++ side returns (padding: 0).
                start, end = [0.0] * (db + qb), [0.0] * (db + qb)
                for j in range(len(d_real)):
                    start[j], end[j] = logits[j, 0].item(), logits[j, 1].item()
                for j in range(len(q_real)):
                    start[db + j], end[db + j] = logits[len(d_real) + j, 0].item(), logits[len(d_real) + j, 1].item()
                splits.append({"k": k, "start": start, "end": end})
            cases.append({"key": list(key), "question_ids": q, "window_ids": window,
                          "input_ids": ids, "token_type_ids": types,
                          "full": {"start": full[:, 0].tolist(), "end": full[:, 1].tolist()},
                          "deformer": splits})
    with open(args.out, "w") as f:
        json.dump({"reference": "pydeformer eager XLNet, torch %s" % torch.__version__,
                   "model": os.path.abspath(args.model), "cls": CLS, "sep": SEP, "pad": PAD, "cases": cases}, f)
    print("eager XLNet reference: %d pairs, k in %s -> %s" % (len(cases), ks, args.out))


if __name__ == "__main__":
    main()
