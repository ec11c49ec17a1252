#!/usr/bin/env python3
"""XLNet SentencePiece goldens from Hugging Face `transformers` (GPU machine; this machine has neither transformers
nor sentencepiece).

HF XLNetTokenizer (as AutoTokenizer builds it from xlnet-base-cased's spiece.model and a tokenizer_config.json with
XLNet's defaults: no lower-casing, keep_accents false) over every context and question of SQuAD v1.1 dev and
tests/golden/hard_strings.json, without special tokens, with offsets. Same line format as the WordPiece goldens:
  {"key":"c/A/P","ids":[...],"offsets":[b0,e0,b1,e1,...]}
keys c/A/P (context), q/A/P/Q (question), h/I (hard string): positions in the dev file, no text copied.

Usage: make_xlnet_tokenizer_goldens.py --data DIR --out sentencepiece-xlnet-base-cased.jsonl.gz
DIR is laid out like shared/data (tokenizers/xlnet-base-cased-spiece.model, squad/dev-v1.1.json[.zip]).
"""
import argparse
import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile

from transformers import AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))


def make_tokenizer(spiece):
    d = tempfile.mkdtemp(prefix="deformer-xlnet-tok-")
    shutil.copy(spiece, os.path.join(d, "spiece.model"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "XLNetTokenizer", "do_lower_case": False, "remove_space": True,
                   "keep_accents": False, "model_max_length": 10**9}, f)
    return AutoTokenizer.from_pretrained(d)


def dev_json(data):
    plain = os.path.join(data, "squad", "dev-v1.1.json")
    if os.path.isfile(plain):
        with open(plain, encoding="utf-8") as f:
            return json.load(f)
    with zipfile.ZipFile(plain + ".zip") as z:
        return json.loads(z.read("dev-v1.1.json").decode("utf-8"))


def texts(dev):
    out = []
    for a, article in enumerate(dev["data"]):
        for p, para in enumerate(article["paragraphs"]):
            out.append(("c/%d/%d" % (a, p), para["context"]))
            for q, qa in enumerate(para["qas"]):
                out.append(("q/%d/%d/%d" % (a, p, q), qa["question"]))
    with open(os.path.join(HERE, "hard_strings.json"), encoding="utf-8") as f:
        out.extend(("h/%d" % i, s) for i, s in enumerate(json.load(f)))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    tok = make_tokenizer(os.path.join(args.data, "tokenizers", "xlnet-base-cased-spiece.model"))
    probe = tok("Hello, world! The lighthouse keeper lit the lamp.", add_special_tokens=False)["input_ids"]
    if len(set(probe)) < 8 or tok.unk_token_id in probe:
        sys.exit("reference sanity check failed: %s" % probe)
    if (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id) != (5, 3, 4):
        sys.exit("unexpected special ids pad/cls/sep %s" % ((tok.pad_token_id, tok.cls_token_id, tok.sep_token_id),))
    lines, tokens = [], 0
    all_texts = texts(dev_json(args.data))
    for key, text in all_texts:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], [x for span in enc["offset_mapping"] for x in span]
        tokens += len(ids)
        lines.append('{"key":%s,"ids":[%s],"offsets":[%s]}\n' % (
            json.dumps(key), ",".join(map(str, ids)), ",".join(map(str, offsets))))
    body = "".join(lines).encode("utf-8")
    with open(args.out, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as f:
            f.write(body)
    import tokenizers
    import transformers
    print("xlnet: %s (fast=%s), %d texts, %d tokens, uncompressed sha256 %s, %s (transformers %s, tokenizers %s)" % (
        type(tok).__name__, tok.is_fast, len(all_texts), tokens, hashlib.sha256(body).hexdigest(), args.out,
        transformers.__version__, tokenizers.__version__))


if __name__ == "__main__":
    main()
