#!/usr/bin/env python3
"""WordPiece goldens from Hugging Face `transformers` (the GPU machine has it; this machine does not).

Writes the same format as make_tokenizer_goldens.js (npm build of HF `tokenizers`): one JSON line per text,
  {"key":"c/A/P","ids":[...],"offsets":[b0,e0,b1,e1,...]}
with keys c/A/P (context), q/A/P/Q (question) of the SQuAD v1.1 dev file and h/I (hard_strings.json).
Given the same reference behaviour, the uncompressed bytes are identical to the node script's; the printed
sha256 is over the uncompressed lines so the two can be compared without gzip header differences
(compare with: zcat a.jsonl.gz | sha256sum).

Usage:
  python3 make_tokenizer_goldens_hf.py DEV_JSON VOCAB_TXT uncased|cased OUT.jsonl.gz
"""
import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile

from transformers import AutoTokenizer


def make_tokenizer(vocab_path, lowercase):
    # BertTokenizerFast(vocab_file=...) is buggy in transformers 5.x; a directory with vocab.txt and a
    # tokenizer_config.json goes through the normal slow->fast conversion instead.
    d = tempfile.mkdtemp(prefix="deformer-tok-")
    shutil.copy(vocab_path, os.path.join(d, "vocab.txt"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": lowercase, "tokenizer_class": "BertTokenizer", "model_max_length": 10**9}, f)
    tok = AutoTokenizer.from_pretrained(d)
    if not tok.is_fast:
        sys.exit("expected a fast (Rust) tokenizer from transformers")
    return tok


def texts(dev_path, hard_path):
    out = []
    with open(dev_path, encoding="utf-8") as f:
        dev = json.load(f)
    for a, article in enumerate(dev["data"]):
        for p, para in enumerate(article["paragraphs"]):
            out.append((f"c/{a}/{p}", para["context"]))
            for q, qa in enumerate(para["qas"]):
                out.append((f"q/{a}/{p}/{q}", qa["question"]))
    with open(hard_path, encoding="utf-8") as f:
        out.extend((f"h/{i}", s) for i, s in enumerate(json.load(f)))
    return out


def encode(tok, text):
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    return enc["input_ids"], [x for span in enc["offset_mapping"] for x in span]


def main():
    if len(sys.argv) != 5 or sys.argv[3] not in ("uncased", "cased"):
        sys.exit(__doc__)
    dev_path, vocab_path, mode, out_path = sys.argv[1:]
    lowercase = mode == "uncased"
    tok = make_tokenizer(vocab_path, lowercase)
    ids, _ = encode(tok, "Hello, world!")
    if lowercase and ids != [7592, 1010, 2088, 999]:
        sys.exit(f"reference sanity check failed: {ids}")
    vocab = tok.get_vocab()
    if len(set(vocab.values())) != len(vocab):
        sys.exit("vocabulary ids are not distinct")
    all_texts = texts(dev_path, os.path.join(os.path.dirname(os.path.abspath(__file__)), "hard_strings.json"))
    lines, tokens = [], 0
    for key, text in all_texts:
        ids, offsets = encode(tok, text)
        tokens += len(ids)
        lines.append('{"key":%s,"ids":[%s],"offsets":[%s]}\n' % (
            json.dumps(key), ",".join(map(str, ids)), ",".join(map(str, offsets))))
    body = "".join(lines).encode("utf-8")
    with open(out_path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as f:
            f.write(body)
    print(f"{mode}: vocab {len(set(vocab.values()))} ids, {len(all_texts)} texts, {tokens} tokens, "
          f"uncompressed sha256 {hashlib.sha256(body).hexdigest()}, {out_path} "
          f"(transformers {__import__('transformers').__version__}, "
          f"tokenizers {__import__('tokenizers').__version__})")


if __name__ == "__main__":
    main()
