"""Builds a WordPiece vocabulary from text the project owns or may use (fixtures, the bundled model's corpus).

Every character seen becomes a piece and a ##continuation piece, so any text of those characters tokenizes
without [UNK]; the rest of the budget is filled by byte-pair-encoding merges learnt from word counts (the
method Hugging Face's WordPiece trainer also uses), written in WordPiece form: a piece that continues a word
carries the "##" prefix. Words are found the way BERT's uncased basic tokenizer finds them (lower-cased,
accents stripped, punctuation split off); the C++ tokenizer does the real tokenization later, so small
differences here only cost vocabulary quality, never correctness.

Usage: python -m pydeformer.vocab --size 12000 --out vocab.txt FILE... (FILE may be .xz compressed)
"""
import argparse
import collections
import heapq
import lzma
import re
import sys
import unicodedata

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CONTINUATION = "##"

_WORD = re.compile(r"[^\W_]+|[^\w\s]|_", re.UNICODE)
_COMBINING = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def basic_words(text: str):
    text = _COMBINING.sub("", unicodedata.normalize("NFD", text.lower()))
    return _WORD.findall(text)


def word_counts(texts):
    counts = collections.Counter()
    for text in texts:
        counts.update(basic_words(text))
    return counts


def _symbols(word: str):
    return [word[0]] + [CONTINUATION + ch for ch in word[1:]]


def _merge(a: str, b: str) -> str:
    return a + b[len(CONTINUATION):]


def learn_merges(counts, budget: int, min_count: int = 1):
    """Up to `budget` new pieces by repeatedly merging the most frequent adjacent pair (ties: smallest pair)."""
    words = [(_symbols(w), c) for w, c in counts.items() if c >= min_count and len(w) > 1]
    pair_counts = collections.Counter()
    where = collections.defaultdict(set)
    for i, (symbols, c) in enumerate(words):
        for pair in zip(symbols, symbols[1:]):
            pair_counts[pair] += c
            where[pair].add(i)
    heap = [(-c, pair) for pair, c in pair_counts.items()]
    heapq.heapify(heap)
    pieces = []
    seen = set()
    while heap and len(pieces) < budget:
        negative, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -negative:
            continue  # stale entry: the count changed after it was pushed
        if -negative < min_count:
            break
        merged = _merge(*pair)
        if merged not in seen:
            seen.add(merged)
            pieces.append(merged)
        changed = set()
        for i in list(where[pair]):
            symbols, c = words[i]
            out = []
            j = 0
            while j < len(symbols):
                if j + 1 < len(symbols) and (symbols[j], symbols[j + 1]) == pair:
                    out.append(merged)
                    j += 2
                else:
                    out.append(symbols[j])
                    j += 1
            for old in zip(symbols, symbols[1:]):
                pair_counts[old] -= c
                where[old].discard(i)
                changed.add(old)
            for new in zip(out, out[1:]):
                pair_counts[new] += c
                where[new].add(i)
                changed.add(new)
            words[i] = (out, c)
        del pair_counts[pair]
        changed.discard(pair)
        for p in changed:
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p))
    return pieces


def build(texts, size: int, min_char_count: int = 1):
    counts = word_counts(texts)
    char_counts = collections.Counter()
    for word, c in counts.items():
        for ch in word:
            char_counts[ch] += c
    chars = sorted(ch for ch, c in char_counts.items() if c >= min_char_count)
    pieces = list(SPECIALS)
    for ch in chars:
        pieces += [ch, CONTINUATION + ch]
    seen = set(pieces)
    for piece in learn_merges(counts, max(0, size - len(pieces))):
        if piece not in seen and len(pieces) < size:
            pieces.append(piece)
            seen.add(piece)
    return pieces


def read_text(path: str, limit_bytes: int = 0) -> str:
    opener = lzma.open if path.endswith(".xz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read(limit_bytes) if limit_bytes else f.read()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pydeformer.vocab", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="UTF-8 text files (.xz allowed)")
    parser.add_argument("--size", type=int, default=2000, help="largest vocabulary size")
    parser.add_argument("--max-chars-per-file", type=int, default=0, help="read at most this much of each file (0: all)")
    parser.add_argument("--min-char-count", type=int, default=1,
                        help="characters seen fewer times get no piece (their words become [UNK])")
    parser.add_argument("--out", required=True, help="vocab.txt to write")
    args = parser.parse_args(argv)
    texts = [read_text(p, args.max_chars_per_file) for p in args.inputs]
    pieces = build(texts, args.size, args.min_char_count)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("".join(p + "\n" for p in pieces))
    print("wrote %s: %d pieces" % (args.out, len(pieces)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
