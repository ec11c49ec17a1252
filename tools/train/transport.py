"""Packs a checkpoint's weights into int8 with one scale per row for the trip to the GPU machine, and unpacks them.

  python3 -m train.transport pack FOLDER     # model.safetensors -> model.int8.safetensors (in place)
  python3 -m train.transport unpack FOLDER   # model.int8.safetensors -> model.safetensors (fp32)

Why: a command carries at most 64 MiB, and a 10-layer teacher in fp16 (59 MB) plus the data does not fit. Per-row
int8 is what the exporter's --storage-dtype int8 does to the bundled model at a cost under 0.2 F1; here it only
moves a starting point and a KD teacher, which then keep fp32 weights.
"""
import os
import sys

from pydeformer.modelfile import (INT8_SUFFIX, SCALE_SUFFIX, int8_rows, read_safetensors, widen_int8_matrices,
                                  write_safetensors)


def pack(folder: str) -> None:
    """The exporter's int8 storage on a checkpoint: matrices as int8 with a scale per row, the rest fp16."""
    tensors = read_safetensors(os.path.join(folder, "model.safetensors"))
    packed = {}
    for name, t in tensors.items():
        if t.is_floating_point() and t.dim() == 2:
            packed[name + INT8_SUFFIX], packed[name + SCALE_SUFFIX] = int8_rows(t)
        else:
            packed[name] = t.half() if t.is_floating_point() else t
    write_safetensors(packed, os.path.join(folder, "model.int8.safetensors"))
    os.remove(os.path.join(folder, "model.safetensors"))


def unpack(folder: str) -> None:
    packed = read_safetensors(os.path.join(folder, "model.int8.safetensors"))
    tensors = {name: t.float() if t.is_floating_point() else t for name, t in widen_int8_matrices(packed).items()}
    write_safetensors(tensors, os.path.join(folder, "model.safetensors"))
    os.remove(os.path.join(folder, "model.int8.safetensors"))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("pack", "unpack"):
        raise SystemExit(__doc__)
    (pack if argv[0] == "pack" else unpack)(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
