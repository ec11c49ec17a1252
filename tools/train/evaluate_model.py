"""Dev predictions of an exported model file (tools/deformer-export output, int8 storage included) in either
layout, with the training code's fast batched evaluation (a GPU answers SQuAD dev in seconds; the C++ reader's
`deformer-qa eval` remains the measure the results quote).

  python3 -m train.evaluate_model models/squad-minilm.pt --dev squad-dev.pt.xz --dev-json dev-v1.1.json.zip \
      --layout full --predictions full.json
"""
import argparse
import json
import sys

from pydeformer.modelfile import load_model_file

from .common import pick_device
from .data import load_compressed, read_squad
from .finetune import evaluate, squad_f1
from .squad_features import DOCUMENT_BLOCK, Squad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="train.evaluate_model", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a model file from tools/deformer-export")
    parser.add_argument("--dev", required=True, help="squad-dev.pt.xz from train.data squad")
    parser.add_argument("--dev-json", required=True, help="the dev set itself (answer texts, contexts)")
    parser.add_argument("--layout", choices=("full", "deformer"), default="full")
    parser.add_argument("--k", type=int, default=-1, help="deformer layout: the split (-1: the model's default_k)")
    parser.add_argument("--max-questions", type=int, default=0, help="0: all")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fp32", action="store_true",
                        help="compute in fp32 on a GPU too (bf16 there by default), to compare with the C++ reader")
    parser.add_argument("--predictions", help="dev predictions JSON to write")
    args = parser.parse_args(argv)
    model, config, vocab = load_model_file(args.model)
    k = args.k if args.k >= 0 else config.get("default_k", 0)
    device = pick_device(args.device)
    model.to(device)
    words = vocab.splitlines()
    dev = Squad(load_compressed(args.dev), {t: words.index(t) for t in ("[PAD]", "[CLS]", "[SEP]")})
    dev_json = read_squad(args.dev_json)
    texts = [p["context"] for a in dev_json["data"] for p in a["paragraphs"]]
    questions = range(args.max_questions or len(dev.questions))
    rows = dev.full_rows(questions) if args.layout == "full" else dev.deformer_rows(questions,
                                                                                     document_block=DOCUMENT_BLOCK)
    predictions = evaluate(model, dev, texts, rows, device, args.layout, k, bf16=not args.fp32)
    em, f1, n = squad_f1(predictions, dev_json)
    print("%s %s layout%s: EM %.2f F1 %.2f over %d questions (quick metric)"
          % (args.model, args.layout, " k=%d" % k if args.layout == "deformer" else "", em, f1, n))
    if args.predictions:
        with open(args.predictions, "w", encoding="utf-8") as f:
            json.dump(predictions, f, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
