"""deformer-export: a Hugging Face BERT or XLNet QA checkpoint (or a random model) to a libdeformer model file."""
import argparse
import json
import os
import sys
from typing import Optional

import torch

from . import xlnet
from .bert import BertConfig, BertQA, init_random
from .modelfile import ExportError, map_hf_state, read_checkpoint_dir, vocab_is_cased, write_model_file

# The first bytes of a serialized SentencePiece ModelProto: field 1 (pieces), length-delimited.
_SPIECE_MAGIC = b"\x0a"


def _read_vocab(path: str) -> bytes:
    with open(path, "rb") as f:
        vocab = f.read()
    try:
        vocab.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ExportError("%s: vocabulary is not UTF-8 (byte %d)" % (path, e.start))
    if not vocab.strip():
        raise ExportError("%s: vocabulary is empty" % path)
    return vocab


def _lower_case(args, vocab: bytes, checkpoint_dir=None) -> bool:
    if args.lower_case is not None:
        return args.lower_case == "yes"
    if checkpoint_dir:
        tok_config = os.path.join(checkpoint_dir, "tokenizer_config.json")
        if os.path.isfile(tok_config):
            with open(tok_config, encoding="utf-8") as f:
                value = json.load(f).get("do_lower_case")
            if value is not None:
                return bool(value)
    return not vocab_is_cased(vocab.decode("utf-8"))


def _read_spiece(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(_SPIECE_MAGIC):
        raise ExportError("%s: not a SentencePiece model (spiece.model)" % path)
    return data


def _export_xlnet(args, hf_config, state) -> dict:
    config = xlnet.XLNetConfig(hf_config)
    spiece_path = args.spiece or os.path.join(args.checkpoint, "spiece.model")
    if not os.path.isfile(spiece_path):
        raise ExportError("%s: no spiece.model (pass --spiece)" % args.checkpoint)
    if args.quantize != "none":
        raise ExportError("--quantize %s is supported for BERT models only" % args.quantize)
    model = xlnet.XLNetQA(config)
    model.load_state_dict(map_hf_state(config, state))
    return write_model_file(model, config, _read_spiece(spiece_path), False, args.out,
                            source=os.path.abspath(args.checkpoint), storage_dtype=args.storage_dtype)


def _default_k(args, hf_config) -> Optional[int]:
    """--default-k, else the split that tools/train recorded for a model it fine-tuned decomposed."""
    if args.default_k is not None:
        return args.default_k
    training = hf_config.get("libdeformer_training") or {}
    return training.get("k") if training.get("layout") == "deformer" else None


def export_checkpoint(args) -> dict:
    hf_config, state = read_checkpoint_dir(args.checkpoint)
    if hf_config.get("model_type") == "xlnet":
        return _export_xlnet(args, hf_config, state)
    config = BertConfig(hf_config)
    vocab_path = args.vocab or os.path.join(args.checkpoint, "vocab.txt")
    if not os.path.isfile(vocab_path):
        raise ExportError("%s: no vocab.txt (pass --vocab)" % args.checkpoint)
    vocab = _read_vocab(vocab_path)
    model = BertQA(config)
    model.load_state_dict(map_hf_state(config, state))
    return write_model_file(model, config, vocab, _lower_case(args, vocab, args.checkpoint), args.out,
                            source=os.path.abspath(args.checkpoint), storage_dtype=args.storage_dtype,
                            quantize=args.quantize, default_k=_default_k(args, hf_config))


def export_random(args) -> dict:
    if not args.config:
        raise ExportError("--random-init needs --config")
    with open(args.config, encoding="utf-8") as f:
        values = json.load(f)
    if values.get("model_type") == "xlnet":
        if not args.spiece:
            raise ExportError("--random-init of an XLNet config needs --spiece")
        if args.quantize != "none":
            raise ExportError("--quantize %s is supported for BERT models only" % args.quantize)
        config = xlnet.XLNetConfig(values)  # vocab_size from the config: it must match the SentencePiece model
        model = xlnet.XLNetQA(config)
        xlnet.init_random(model, config, args.seed)
        return write_model_file(model, config, _read_spiece(args.spiece), False, args.out,
                                source="random-init seed %d" % args.seed, storage_dtype=args.storage_dtype)
    if not args.vocab:
        raise ExportError("--random-init needs --config and --vocab")
    vocab = _read_vocab(args.vocab)
    values["vocab_size"] = len(vocab.decode("utf-8").splitlines())
    config = BertConfig(values)
    model = BertQA(config)
    init_random(model, config, args.seed)
    return write_model_file(model, config, vocab, _lower_case(args, vocab), args.out,
                            source="random-init seed %d" % args.seed, storage_dtype=args.storage_dtype,
                            quantize=args.quantize, default_k=args.default_k)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="deformer-export",
        description="Write a libdeformer model file (TorchScript) from a Hugging Face BertForQuestionAnswering or "
                    "XLNetForQuestionAnsweringSimple checkpoint directory, or a random-weight model of any shape. "
                    "XLNetForQuestionAnswering (beam-search head) is refused.")
    parser.add_argument("checkpoint", nargs="?", help="Hugging Face checkpoint directory")
    parser.add_argument("--out", required=True, help="model file to write (written atomically)")
    parser.add_argument("--random-init", action="store_true", help="random weights instead of a checkpoint")
    parser.add_argument("--config", help="config.json giving the shape (with --random-init)")
    parser.add_argument("--vocab", help="vocab.txt (default: the checkpoint's); sets vocab_size with --random-init")
    parser.add_argument("--spiece", help="XLNet: spiece.model (default: the checkpoint's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (with --random-init)")
    parser.add_argument("--lower-case", choices=("yes", "no"), default=None,
                        help="tokenizer lower-casing (default: tokenizer_config.json, else guessed from the vocab)")
    parser.add_argument("--storage-dtype", choices=("fp32", "fp16", "int8"), default="fp32",
                        help="how weights are stored in the file (computation dtype is chosen when loading); int8: "
                             "weight matrices as int8 with a scale per row, the rest fp16 (a quarter of fp32)")
    parser.add_argument("--default-k", type=int, default=None,
                        help="the split readers use when none is asked for (default: the k a tools/train checkpoint "
                             "was fine-tuned at, else none: readers take 3/4 of the layers)")
    parser.add_argument("--quantize", choices=("none", "int8"), default="none",
                        help="int8: dynamic int8 quantization of the Linear layers (CPU, fp32 compute; smaller and "
                             "usually faster on CPUs, answers change slightly)")
    args = parser.parse_args(argv)
    if args.random_init == bool(args.checkpoint):
        parser.error("give either a checkpoint directory or --random-init")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        with torch.no_grad():
            config = export_random(args) if args.random_init else export_checkpoint(args)
    except (ExportError, ValueError, OSError) as e:
        print("deformer-export: error: %s" % e, file=sys.stderr)
        return 1
    if config["model_type"] == "xlnet":
        x = config["xlnet"]
        layers, hidden, vocab = x["n_layer"], x["d_model"], x["vocab_size"]
    else:
        b = config["bert"]
        layers, hidden, vocab = b["num_hidden_layers"], b["hidden_size"], b["vocab_size"]
    print("wrote %s: %s, %d layers, hidden %d, vocab %d, tokenizer %s lower_case=%s, %s" % (
        args.out, config["architecture"], layers, hidden, vocab, config["tokenizer"]["type"],
        config["tokenizer"]["do_lower_case"], config["content_hash"][:19]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
