"""Builds a small WordPiece vocabulary from text the project owns (fixtures, the bundled model).

Every character seen becomes a piece and a ##continuation piece, so any text of those characters
tokenizes without [UNK]; the most frequent lower-cased words fill the remaining budget.
Usage: python -m pydeformer.vocab --size 2000 --out vocab.txt FILE...
"""
import argparse
import collections
import sys
import unicodedata

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def basic_words(text: str):
    word = []
    for ch in unicodedata.normalize("NFD", text.lower()):
        if unicodedata.category(ch) == "Mn":
            continue
        if ch.isspace() or unicodedata.category(ch).startswith("P") or not ch.isalnum():
            if word:
                yield "".join(word)
                word = []
            if not ch.isspace():
                yield ch
        else:
            word.append(ch)
    if word:
        yield "".join(word)


def build(texts, size: int):
    counts = collections.Counter()
    chars = set()
    for text in texts:
        for w in basic_words(text):
            counts[w] += 1
            chars.update(w)
    pieces = list(SPECIALS)
    for ch in sorted(chars):
        pieces += [ch, "##" + ch]
    seen = set(pieces)
    for word, _ in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])):
        if len(pieces) >= size:
            break
        if word not in seen:
            pieces.append(word)
            seen.add(word)
    return pieces


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pydeformer.vocab", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="UTF-8 text files")
    parser.add_argument("--size", type=int, default=2000, help="largest vocabulary size")
    parser.add_argument("--out", required=True, help="vocab.txt to write")
    args = parser.parse_args(argv)
    texts = [open(p, encoding="utf-8").read() for p in args.inputs]
    pieces = build(texts, args.size)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("".join(p + "\n" for p in pieces))
    print("wrote %s: %d pieces" % (args.out, len(pieces)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
