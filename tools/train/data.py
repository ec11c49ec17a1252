"""Tokenizes training text with the project's own C++ tokenizer (`deformer-qa tokenize`), so that training sees
exactly the ids inference will see, and stores compact tensors for the GPU machine.

  python3 -m train.data corpus --vocab V --out corpus.pt.xz FILE.xz...   # masked-LM token stream
  python3 -m train.data squad --vocab V --out squad-train.pt.xz train-v1.1-rebuilt.json.xz
"""
import argparse
import io
import json
import lzma
import os
import subprocess
import sys
import tempfile
import threading
import zipfile

import torch

from pydeformer import export
from pydeformer.vocab import read_text

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TINY_SHAPE = os.path.join(REPO, "tests", "fixtures", "tiny-bert.json")


def tokenizer_model(vocab: str, work: str) -> str:
    """A random-weight model file carrying the vocabulary: `deformer-qa tokenize` reads the tokenizer from it."""
    path = os.path.join(work, "tokenizer-carrier.pt")
    if export.main(["--random-init", "--config", TINY_SHAPE, "--vocab", vocab, "--lower-case", "yes",
                    "--out", path]) != 0:
        raise RuntimeError("cannot export a model carrying %s" % vocab)
    return path


def tokenize(texts, model_file: str, deformer_qa: str, with_offsets: bool):
    """[(ids, offsets)] per text, in order (offsets are [begin, end) code points)."""
    process = subprocess.Popen([deformer_qa, "tokenize", "--model", model_file], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, bufsize=1 << 20)

    def feed():
        with io.TextIOWrapper(process.stdin, encoding="utf-8") as stdin:
            for text in texts:
                stdin.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")

    writer = threading.Thread(target=feed)
    writer.start()
    results = []
    for line in process.stdout:
        j = json.loads(line)
        results.append((j["ids"], j["offsets"] if with_offsets else None))
    writer.join()
    if process.wait() != 0:
        raise RuntimeError("deformer-qa tokenize failed (exit %d)" % process.returncode)
    if len(results) != len(texts):
        raise RuntimeError("tokenizer returned %d lines for %d texts" % (len(results), len(texts)))
    return results


def paragraphs(text: str):
    """Blank-line separated blocks with their line breaks joined (books wrap lines inside paragraphs)."""
    for block in text.split("\n\n"):
        block = " ".join(block.split())
        if len(block) >= 40:
            yield block


def save_compressed(obj, path: str) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    tmp = path + ".tmp"
    with lzma.open(tmp, "wb", preset=6) as f:
        f.write(buffer.getvalue())
    os.replace(tmp, path)


def load_compressed(path: str):
    with lzma.open(path, "rb") as f:
        return torch.load(io.BytesIO(f.read()))


def build_corpus(args, model_file: str) -> None:
    stream = []
    for path in args.inputs:
        budget = args.max_tokens_per_file
        blocks = list(paragraphs(read_text(path)))
        taken = 0
        for start in range(0, len(blocks), 20000):
            for ids, _ in tokenize(blocks[start:start + 20000], model_file, args.deformer_qa, False):
                stream.append(torch.tensor(ids, dtype=torch.int16))
                taken += len(ids)
            if budget and taken >= budget:
                break
        print("%s: %d paragraphs read, %d tokens kept" % (path, len(blocks), taken), flush=True)
    ids = torch.cat(stream)
    save_compressed({"ids": ids, "vocab": open(args.vocab, encoding="utf-8").read().splitlines()}, args.out)
    print("wrote %s: %d tokens" % (args.out, ids.numel()))


def read_squad(path: str):
    if path.endswith(".xz"):
        with lzma.open(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    if path.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read(z.namelist()[0]).decode("utf-8"))
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def answer_tokens(offsets, begin: int, end: int):
    """First and last token overlapping the character span [begin, end), or None when no token does."""
    first = next((i for i, (b, e) in enumerate(offsets) if e > begin), None)
    last = next((i for i in range(len(offsets) - 1, -1, -1) if offsets[i][0] < end), None)
    if first is None or last is None or last < first:
        return None
    return first, last


def build_squad(args, model_file: str) -> None:
    data = read_squad(args.inputs[0])["data"]
    contexts, questions, question_context, ids, spans = [], [], [], [], []
    for article in data:
        for paragraph in article["paragraphs"]:
            contexts.append(paragraph["context"])
            for qa in paragraph["qas"]:
                questions.append(qa["question"])
                question_context.append(len(contexts) - 1)
                ids.append(qa["id"])
                first = qa["answers"][0] if qa["answers"] else None
                spans.append((first["answer_start"], first["answer_start"] + len(first["text"])) if first else None)
    tokenized_contexts = tokenize(contexts, model_file, args.deformer_qa, True)
    tokenized_questions = tokenize(questions, model_file, args.deformer_qa, False)
    answers = []
    unaligned = 0
    for span, c in zip(spans, question_context):
        tokens = answer_tokens(tokenized_contexts[c][1], *span) if span else None
        unaligned += tokens is None
        answers.append(tokens or (-1, -1))
    flat = lambda rows: torch.tensor([x for r in rows for x in r], dtype=torch.int16)
    lengths = lambda rows: torch.tensor([len(r) for r in rows], dtype=torch.int32)
    out = {
        "context_ids": flat([t[0] for t in tokenized_contexts]),
        "context_lengths": lengths([t[0] for t in tokenized_contexts]),
        "question_ids": flat([t[0] for t in tokenized_questions]),
        "question_lengths": lengths([t[0] for t in tokenized_questions]),
        "question_context": torch.tensor(question_context, dtype=torch.int32),
        "answer_tokens": torch.tensor(answers, dtype=torch.int32),
        "ids": ids,
    }
    if not args.without_offsets:  # only decoding needs them: a training set is a third the size without
        out["context_offsets"] = torch.tensor([o for t in tokenized_contexts for o in t[1]], dtype=torch.int32)
    save_compressed(out, args.out)
    print("wrote %s: %d contexts, %d questions, %d answers not aligned to tokens"
          % (args.out, len(contexts), len(questions), unaligned))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="train.data", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("corpus", "squad"))
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--deformer-qa", default=os.path.join(REPO, "build", "tools", "deformer-qa"))
    parser.add_argument("--without-offsets", action="store_true",
                        help="squad: leave out the tokens' character offsets (a training set needs none)")
    parser.add_argument("--max-tokens-per-file", type=int, default=0, help="corpus: stop a file after this many")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        model_file = tokenizer_model(args.vocab, work)
        (build_corpus if args.kind == "corpus" else build_squad)(args, model_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
