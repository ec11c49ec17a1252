"""Hugging Face parity cases for BERT (run on the GPU machine, where transformers exists).

Builds a BertForQuestionAnswering from the real bert-base-uncased config with seeded random weights, saves it
with save_pretrained twice (safetensors and pytorch_model.bin), exports both with tools/deformer-export, and
writes parity cases: Hugging Face's own tokenization and encoding of SQuAD dev (question, context) pairs
(`tokenizer(question, context, truncation="only_second", max_length=384)`) with HF's fp32 start/end logits.
tests/parity_test.cpp then checks that the C++ full mode reproduces ids and logits (DEFORMER_PARITY_CASES).

Usage: python3 tests/hf/bert_hf_parity.py --data DIR --work DIR [--count 24]
DIR is laid out like shared/data: configs/bert-base-uncased-config.json, tokenizers/bert-base-uncased-vocab.txt,
squad/dev-v1.1.json.zip.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import zipfile

import torch
import transformers
from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_checkpoints(data, work, seed):
    config = BertConfig.from_json_file(os.path.join(data, "configs", "bert-base-uncased-config.json"))
    torch.manual_seed(seed)
    model = BertForQuestionAnswering(config).eval()
    dirs = {}
    for name, safe in (("safetensors", True), ("bin", False), ("sharp", True)):
        if name == "sharp":  # for answer parity: a sharper span head than the 0.02 init, so answers are decisive
            with torch.no_grad():
                model.qa_outputs.weight.mul_(50.0)
        d = os.path.join(work, "hf-" + name)
        model.save_pretrained(d, safe_serialization=safe)
        shutil.copy(os.path.join(data, "tokenizers", "bert-base-uncased-vocab.txt"), os.path.join(d, "vocab.txt"))
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}, f)
        dirs[name] = d
    with torch.no_grad():
        model.qa_outputs.weight.div_(50.0)
    return model, dirs


def squad_pairs(path, count):
    with zipfile.ZipFile(path) as z:
        articles = json.loads(z.read("dev-v1.1.json").decode("utf-8"))["data"]
    pairs = []
    # One question from each paragraph in turn across articles, so lengths and topics vary.
    for a, article in enumerate(articles):
        for p, paragraph in enumerate(article["paragraphs"][:2]):
            qa = paragraph["qas"][0]
            pairs.append(((a, p, 0), qa["question"], paragraph["context"]))
            if len(pairs) == count:
                return pairs
    return pairs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)

    model, dirs = make_checkpoints(args.data, args.work, args.seed)
    tokenizer = AutoTokenizer.from_pretrained(dirs["safetensors"])
    probe = tokenizer("Hello, world!", add_special_tokens=False)["input_ids"]
    if probe != [7592, 1010, 2088, 999]:
        sys.exit("reference tokenizer is broken: 'Hello, world!' -> %s" % probe)

    models = {}
    for name, d in dirs.items():
        out = os.path.join(args.work, "exported-%s.pt" % name)
        subprocess.run([os.path.join(ROOT, "tools", "deformer-export"), d, "--out", out], check=True)
        models[name] = out

    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    cases = []
    max_len = 384
    for key, question, context in squad_pairs(os.path.join(args.data, "squad", "dev-v1.1.json.zip"), args.count):
        enc = tokenizer(question, context, truncation="only_second", max_length=max_len)
        ids = enc["input_ids"]
        first_sep = ids.index(sep_id)
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([enc["token_type_ids"]]),
                        attention_mask=torch.tensor([enc["attention_mask"]]))
        cases.append({
            "key": list(key),
            "question_ids": ids[1:first_sep],
            "window_ids": ids[first_sep + 1:-1],
            "input_ids": ids,
            "token_type_ids": enc["token_type_ids"],
            "full": {"start": out.start_logits[0].tolist(), "end": out.end_logits[0].tolist()},
        })
    for name, path in models.items():
        if name == "sharp":
            continue
        with open(os.path.join(args.work, "hf-cases-%s.json" % name), "w") as f:
            json.dump({"reference": "transformers %s BertForQuestionAnswering fp32 CPU, attn %s" % (
                transformers.__version__, model.config._attn_implementation),
                "model": path, "cls": cls_id, "sep": sep_id, "pad": 0, "max_seq_len": max_len,
                "max_question_len": 64, "cases": cases}, f)
    print("hf parity cases: %d pairs, transformers %s, torch %s, attention %s; models %s" % (
        len(cases), transformers.__version__, torch.__version__, model.config._attn_implementation,
        ", ".join(sorted(m for m in models if m != "sharp"))))


if __name__ == "__main__":
    main()
