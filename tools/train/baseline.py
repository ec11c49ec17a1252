"""The trivial baseline of the results table: answer each question with the context sentence that shares the
most words with it (ties: the earlier sentence). Writes SQuAD predictions {id: text} for `deformer-qa score`.

  python3 -m train.baseline dev-v1.1.json --out baseline.json
"""
import argparse
import json
import re
import sys

from .data import read_squad

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+")
# Question words and articles match every sentence or none; counting them only adds noise.
_IGNORED = {"what", "which", "who", "whom", "whose", "when", "where", "why", "how", "the", "a", "an", "of", "in",
            "is", "was", "are", "were", "did", "do", "does", "to", "and", "for", "on", "by", "with", "as", "at"}


def words(text: str):
    return {w for w in _WORD.findall(text.lower()) if w not in _IGNORED}


def best_sentence(context: str, question: str) -> str:
    sentences = [s for s in _SENTENCE_END.split(context) if s.strip()]
    wanted = words(question)
    return max(sentences, key=lambda s: len(words(s) & wanted)) if sentences else ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="train.baseline", description=__doc__.splitlines()[0])
    parser.add_argument("squad", help="SQuAD JSON (plain, .zip or .xz)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    predictions = {}
    for article in read_squad(args.squad)["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                predictions[qa["id"]] = best_sentence(paragraph["context"], qa["question"])
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(predictions, f, ensure_ascii=False)
    print("wrote %s: %d answers" % (args.out, len(predictions)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
