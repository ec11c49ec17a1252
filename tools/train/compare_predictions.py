"""Where two dev prediction files (question id -> answer text) disagree, and whether each disagreement is one of the
questions whose full-layout windows differ between the training code and the C++ reader.

The training code's full layout (`Squad.full_rows`) starts a window every 128 tokens; the C++ reader, as Hugging
Face's pipeline, overlaps consecutive windows by 128 tokens. A paragraph that fits one window gets the same window
either way; a longer one gets different windows, and may get a different answer.

  python3 -m train.compare_predictions python.json cpp.json.xz --dev squad-dev.pt.xz
"""
import argparse
import json
import lzma
import sys

from .data import load_compressed
from .squad_features import DOC_STRIDE, MAX_QUESTION_LEN, MAX_SEQ_LEN, windows


def read_predictions(path):
    opener = lzma.open if path.endswith(".xz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def full_windows_differ(question_tokens: int, context_tokens: int) -> bool:
    """True when the training code's full-layout windows of this pair are not the C++ reader's."""
    size = MAX_SEQ_LEN - min(question_tokens, MAX_QUESTION_LEN) - 3
    return windows(context_tokens, size, DOC_STRIDE) != windows(context_tokens, size, size - DOC_STRIDE)


def compare(a, b, window_differs=None):
    """Counts of agreement; `window_differs` (question id -> bool) splits the disagreements by their windows."""
    if set(a) != set(b):
        raise ValueError("the files answer different questions (%d and %d ids, %d in common)"
                         % (len(a), len(b), len(set(a) & set(b))))
    differ = sorted(q for q in a if a[q] != b[q])
    out = {"questions": len(a), "agree": len(a) - len(differ), "differ": len(differ), "differing_ids": differ}
    if window_differs is not None:
        out["differ_where_windows_differ"] = sum(1 for q in differ if window_differs[q])
        out["differ_with_the_same_windows"] = [q for q in differ if not window_differs[q]]
        out["questions_whose_windows_differ"] = sum(1 for v in window_differs.values() if v)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="train.compare_predictions", description=__doc__.splitlines()[0])
    parser.add_argument("a", help="predictions JSON (.xz allowed)")
    parser.add_argument("b", help="predictions JSON (.xz allowed)")
    parser.add_argument("--dev", help="squad-dev.pt.xz (train.data squad): split the disagreements by windows")
    args = parser.parse_args(argv)
    a, b = read_predictions(args.a), read_predictions(args.b)
    window_differs = None
    if args.dev:
        data = load_compressed(args.dev)
        questions, contexts = data["question_lengths"].tolist(), data["context_lengths"].tolist()
        window_differs = {qid: full_windows_differ(questions[i], contexts[c])
                          for i, (qid, c) in enumerate(zip(data["ids"], data["question_context"].tolist()))}
    result = compare(a, b, window_differs)
    print(json.dumps({k: v for k, v in result.items() if k != "differing_ids"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
