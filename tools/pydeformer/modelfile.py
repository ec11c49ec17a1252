"""The libdeformer model file (docs/design.md, 'Model file'): reading Hugging Face checkpoints, writing TorchScript.

The file is a TorchScript archive of BertQA or XLNetQA with these extra files, which the C++ loader checks:
  deformer/format_version   "1"
  deformer/config.json      model_type, architecture, the model's config (under "bert" or "xlnet"), tokenizer
                            settings, block layout, content hash
  deformer/vocab.txt        BERT: the WordPiece vocabulary, one token a line
  deformer/spiece.model     XLNet: the SentencePiece model (spiece.model bytes)
  deformer/content_hash     sha256 over config, tokenizer data and every tensor (identifies the model in caches)
  deformer/weights_checksum CRC-32 over the stored config, tokenizer data and tensors (Model::load refuses a damaged
                            file; absent in int8-quantized files)
"""
import hashlib
import json
import os
import struct
import tempfile
import zlib
from typing import Dict, Optional, Tuple

import torch

from . import bert, xlnet
from .bert import HF_LEGACY_SUFFIXES, BertConfig, BertQA
from .xlnet import XLNetConfig, XLNetQA

FORMAT_NAME = "libdeformer-model"
FORMAT_VERSION = 1

# Block layout of the paper's SQuAD setting and Hugging Face's windowing defaults (docs/design.md, 'Layouts').
DEFAULT_LAYOUT = {
    "question_block": 27,
    "document_block": 293,
    "window_stride": 128,
    "max_seq_len": 384,
    "doc_stride": 128,
    "max_question_len": 64,
}

# How weights are stored; int8 stores each weight matrix as int8 with one fp32 scale per row (absmax / 127) and
# everything else in fp16, for a bundled model under 40 MB (the loader widens the matrices back).
STORAGE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "int8": torch.float16}
INT8_SUFFIX, SCALE_SUFFIX = "_int8", "_scale"

# model_type -> the Hugging Face architectures this exporter reproduces.
SUPPORTED_ARCHITECTURES = {"bert": ("BertForQuestionAnswering",), "xlnet": ("XLNetForQuestionAnsweringSimple",)}

# Architectures refused with a specific reason.
REFUSED_ARCHITECTURES = {
    "XLNetForQuestionAnswering": "its beam-search head (start_n_top/end_n_top, end logits conditioned on a chosen "
                                 "start, answer class) has no per-position start/end logits; export a "
                                 "XLNetForQuestionAnsweringSimple checkpoint instead",
}


def _supported_list() -> str:
    return ", ".join(a for names in SUPPORTED_ARCHITECTURES.values() for a in names)

# --quantize values and the config's "quantization" field they write.
QUANTIZATIONS = {"none": None, "int8": "int8-dynamic"}


class ExportError(Exception):
    """A checkpoint that cannot become a model file; the message says why."""


_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "F64": torch.float64, "I64": torch.int64, "I32": torch.int32,
                       "I8": torch.int8}


def read_safetensors(path: str) -> Dict[str, torch.Tensor]:
    """Reads a .safetensors file without the safetensors package (8-byte length, JSON header, raw data)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ExportError("%s: too short to be a safetensors file" % path)
    (header_len,) = struct.unpack("<Q", data[:8])
    if 8 + header_len > len(data):
        raise ExportError("%s: header length %d exceeds the file size" % (path, header_len))
    try:
        header = json.loads(data[8:8 + header_len])
    except ValueError as e:
        raise ExportError("%s: header is not JSON (%s)" % (path, e))
    body = data[8 + header_len:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise ExportError("%s: tensor %s has unsupported dtype %s" % (path, name, entry["dtype"]))
        begin, end = entry["data_offsets"]
        if not 0 <= begin <= end <= len(body):
            raise ExportError("%s: tensor %s lies outside the file (truncated?)" % (path, name))
        raw = bytearray(body[begin:end])
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(entry["shape"]).clone()
    return tensors


def write_safetensors(tensors: Dict[str, torch.Tensor], path: str) -> None:
    """Writes tensors in the layout read_safetensors reads (and the safetensors package, and transformers)."""
    names = {v: k for k, v in _SAFETENSORS_DTYPES.items()}
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the format pads the header so that tensor data stays aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for raw in blobs:
            f.write(raw)


def read_torch_bin(path: str) -> Dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:  # torch without weights_only
        state = torch.load(path, map_location="cpu")
    except Exception as e:
        raise ExportError("%s: cannot read the PyTorch checkpoint (%s)" % (path, e))
    if not isinstance(state, dict):
        raise ExportError("%s: expected a state dict, found %s" % (path, type(state).__name__))
    return state


def read_checkpoint_dir(directory: str) -> Tuple[Dict, Dict[str, torch.Tensor]]:
    """Returns (config.json contents, state dict) of a Hugging Face checkpoint directory."""
    config_path = os.path.join(directory, "config.json")
    if not os.path.isfile(config_path):
        raise ExportError("%s: no config.json (not a Hugging Face checkpoint directory)" % directory)
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    for a in architectures:
        if a in REFUSED_ARCHITECTURES:
            raise ExportError("unsupported architecture: %s: %s" % (a, REFUSED_ARCHITECTURES[a]))
    if model_type not in SUPPORTED_ARCHITECTURES:
        raise ExportError("unsupported architecture: %s (model_type %s); this exporter supports %s"
                          % ("/".join(architectures) or "unknown", model_type, _supported_list()))
    if architectures and not any(a in SUPPORTED_ARCHITECTURES[model_type] for a in architectures):
        raise ExportError("unsupported architecture: %s; this exporter supports %s (a model with a span head)"
                          % ("/".join(architectures), _supported_list()))
    safetensors = os.path.join(directory, "model.safetensors")
    torch_bin = os.path.join(directory, "pytorch_model.bin")
    if os.path.isfile(safetensors):
        state = read_safetensors(safetensors)
    elif os.path.isfile(torch_bin):
        state = read_torch_bin(torch_bin)
    else:
        raise ExportError("%s: neither model.safetensors nor pytorch_model.bin" % directory)
    return config, state


def map_hf_state(config, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Renames a Hugging Face state dict to BertQA's or XLNetQA's names (by the type of config); every tensor must
    be mapped or ignored on purpose."""
    definition = xlnet if isinstance(config, XLNetConfig) else bert
    normalised = {}
    for name, tensor in state.items():
        for old, new in HF_LEGACY_SUFFIXES:
            if name.endswith(old):
                name = name[: -len(old)] + new
        normalised[name] = tensor
    names = definition.hf_parameter_names(config)
    if definition is xlnet and any(n.startswith(definition.HF_BEAM_HEAD_PREFIXES) for n in normalised):
        raise ExportError("checkpoint has the beam-search head of XLNetForQuestionAnswering (start_logits/end_logits/"
                          "answer_class), which this exporter does not support: " + REFUSED_ARCHITECTURES[
                              "XLNetForQuestionAnswering"])
    missing = [theirs for theirs in names.values() if theirs not in normalised]
    if missing:
        hint = " (the checkpoint has no QA head: is it a %s?)" % _supported_list() if any(
            m.startswith("qa_outputs") for m in missing) else ""
        raise ExportError("checkpoint lacks %d tensor(s): %s%s" % (len(missing), ", ".join(missing[:5]), hint))
    known = set(names.values()) | set(definition.HF_IGNORED)
    unmapped = sorted(n for n in normalised if n not in known)
    if unmapped:
        raise ExportError("checkpoint has %d tensor(s) this exporter cannot map: %s"
                          % (len(unmapped), ", ".join(unmapped[:5])))
    return {ours: normalised[theirs].to(torch.float32) for ours, theirs in names.items()}


def vocab_is_cased(vocab_text: str) -> bool:
    """A vocabulary with upper-case word pieces belongs to a cased model."""
    for token in vocab_text.splitlines():
        if not (token.startswith("[") and token.endswith("]")) and token.lower() != token:
            return True
    return False


# Provenance fields that do not change what the model computes, so they stay out of the content hash.
_UNHASHED = ("source", "exported_with_torch", "content_hash")


def content_hash(config: Dict, vocab: bytes, state: Dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in config.items() if k not in _UNHASHED}, sort_keys=True).encode())
    h.update(vocab)
    for name in sorted(state):
        t = state[name].detach().to(torch.float32).contiguous()
        h.update(("%s %s %s" % (name, t.dtype, list(t.shape))).encode())
        h.update(t.numpy().tobytes())
    return "sha256:" + h.hexdigest()


def weights_checksum(config_json: bytes, vocab: bytes, state: Dict[str, torch.Tensor]) -> str:
    """What Model::load recomputes to refuse a damaged file (src/model.cpp): zlib's CRC-32 over the config JSON, the
    vocabulary, then, by name, each tensor's name and its bytes as stored."""
    crc = zlib.crc32(config_json)
    crc = zlib.crc32(vocab, crc)
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        crc = zlib.crc32(name.encode(), crc)
        crc = zlib.crc32(t.reshape(-1).view(torch.uint8).numpy().tobytes(), crc)
    return "crc32:%08x" % crc


def int8_rows(matrix: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """A matrix as int8 with one fp32 scale per row (absmax / 127), and the scales."""
    w = matrix.detach().float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    return torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def store_matrices_as_int8(model: torch.nn.Module) -> None:
    """Replaces every 2-D parameter W by buffers W_int8 and W_scale (per row) beside an empty W."""
    for module in model.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            if p.dim() != 2:
                continue
            values, scale = int8_rows(p)
            module.register_buffer(name + INT8_SUFFIX, values)
            module.register_buffer(name + SCALE_SUFFIX, scale)
            setattr(module, name, torch.nn.Parameter(torch.empty(0, dtype=p.dtype), requires_grad=False))


def widen_int8_matrices(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The inverse of store_matrices_as_int8 on a state dict (what the C++ loader does)."""
    out = {}
    for name, t in state.items():
        if name.endswith(SCALE_SUFFIX) and name[:-len(SCALE_SUFFIX)] + INT8_SUFFIX in state:
            continue
        if name.endswith(INT8_SUFFIX):
            weight = name[:-len(INT8_SUFFIX)]
            out[weight] = t.float() * state[weight + SCALE_SUFFIX].float()[:, None]
        elif name not in out:
            out[name] = t
    return out


def write_model_file(model, model_config, vocab: bytes, do_lower_case: bool, out: str,
                     source: str, layout: Optional[Dict] = None, storage_dtype: str = "fp32",
                     quantize: str = "none", default_k: Optional[int] = None) -> Dict:
    """Scripts the model (BertQA with a WordPiece vocab.txt, or XLNetQA with spiece.model bytes as `vocab`) and
    writes it atomically (temporary file, then rename). Returns the embedded config.

    storage_dtype fp16 halves the file (for bundling); the loader converts weights to the compute dtype, and the
    content hash covers the stored values. quantize "int8" replaces every encoder and head Linear by a dynamically
    quantized one (int8 weights, activations quantized per call; CPU and fp32 compute only); the content hash then
    covers the fp32 weights it was made from and the config's "quantization" field. default_k is the split the
    model was trained for: readers use it when the caller leaves k at -1."""
    if storage_dtype not in STORAGE_DTYPES:
        raise ExportError("unknown storage dtype %s (expected %s)" % (storage_dtype, ", ".join(STORAGE_DTYPES)))
    if quantize not in QUANTIZATIONS:
        raise ExportError("unknown quantization %s (expected %s)" % (quantize, ", ".join(QUANTIZATIONS)))
    if quantize != "none" and storage_dtype != "fp32":
        raise ExportError("--quantize %s stores int8 weights; it cannot be combined with --storage-dtype %s"
                          % (quantize, storage_dtype))
    model = model.eval().to(STORAGE_DTYPES[storage_dtype])
    if storage_dtype == "int8":
        store_matrices_as_int8(model)
    state = model.state_dict()
    is_xlnet = isinstance(model_config, XLNetConfig)
    model_type = "xlnet" if is_xlnet else "bert"
    tokenizer_file = "spiece.model" if is_xlnet else "vocab.txt"
    if is_xlnet:
        # XLNetTokenizer's defaults: no lower-casing, accents removed (keep_accents false).
        tokenizer = {"type": "sentencepiece", "do_lower_case": False, "keep_accents": False,
                     "model_file": tokenizer_file}
    else:
        tokenizer = {"type": "wordpiece", "do_lower_case": do_lower_case, "vocab_file": tokenizer_file}
    config = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_type": model_type,
        "architecture": SUPPORTED_ARCHITECTURES[model_type][0],
        model_type: model_config.to_dict(),
        "tokenizer": tokenizer,
        "layout": dict(layout or DEFAULT_LAYOUT),
        "source": source,
        "exported_with_torch": torch.__version__,
        "storage_dtype": storage_dtype,
    }
    if quantize != "none":
        config["quantization"] = QUANTIZATIONS[quantize]
    if default_k is not None:
        layers = model_config.n_layer if is_xlnet else model_config.num_hidden_layers
        if not 0 <= default_k <= layers:
            raise ExportError("default k %d outside 0..%d" % (default_k, layers))
        config["default_k"] = default_k
    digest = content_hash(config, vocab, state)
    config["content_hash"] = digest
    if quantize != "none":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    scripted = torch.jit.script(model)
    config_json = json.dumps(config, indent=1, sort_keys=True)
    extra = {
        "deformer/format_version": str(FORMAT_VERSION),
        "deformer/config.json": config_json,
        "deformer/" + tokenizer_file: vocab,
        "deformer/content_hash": digest,
    }
    if quantize == "none":  # quantized Linears keep their weights in packed parameters, outside the state dict
        extra["deformer/weights_checksum"] = weights_checksum(config_json.encode(), vocab, scripted.state_dict())
    directory = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=".deformer-export-", suffix=".pt", dir=directory)
    os.close(fd)
    try:
        torch.jit.save(scripted, tmp, _extra_files=extra)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    return config


def load_model_file(path: str):
    """Reads a model file back as an eager BertQA or XLNetQA (the reference for parity tests), its config and its
    tokenizer data (vocab.txt text for BERT, spiece.model bytes for XLNet)."""
    extra = {"deformer/config.json": "", "deformer/vocab.txt": "", "deformer/spiece.model": ""}
    scripted = torch.jit.load(path, map_location="cpu", _extra_files=extra)
    config = json.loads(extra["deformer/config.json"])
    if config.get("quantization"):
        raise ExportError("%s is %s-quantized: it has no fp32 weights to run eagerly" % (path, config["quantization"]))
    if config["model_type"] == "xlnet":
        vocab = extra["deformer/spiece.model"]
        model = XLNetQA(XLNetConfig(config["xlnet"]))
    else:
        vocab = extra["deformer/vocab.txt"]
        if isinstance(vocab, bytes):
            vocab = vocab.decode("utf-8")
        model = BertQA(BertConfig(config["bert"]))
    state = scripted.state_dict()
    if config.get("storage_dtype") == "int8":
        state = widen_int8_matrices(state)
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    return model.eval(), config, vocab
