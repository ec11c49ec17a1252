"""Hugging Face-format checkpoint directories (config.json, model.safetensors, vocab.txt) for BertQA."""
import json
import os
import shutil
import tempfile
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from pydeformer.bert import BertConfig, BertQA, hf_parameter_names
from pydeformer.modelfile import read_safetensors, write_safetensors


class MaskedLmHead(nn.Module):
    """BERT's prediction head (dense, GELU, LayerNorm, decoder tied to the word embeddings)."""

    def __init__(self, c: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))
        self.word_embeddings = word_embeddings

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        h = self.norm(torch.nn.functional.gelu(self.dense(hidden)))
        return torch.nn.functional.linear(h, self.word_embeddings.weight, self.bias)


HEAD_NAMES = {
    "dense.weight": "cls.predictions.transform.dense.weight",
    "dense.bias": "cls.predictions.transform.dense.bias",
    "norm.weight": "cls.predictions.transform.LayerNorm.weight",
    "norm.bias": "cls.predictions.transform.LayerNorm.bias",
    "bias": "cls.predictions.bias",
}


def hf_config(c: BertConfig, architecture: str) -> Dict:
    values = c.to_dict()
    values.update({"model_type": "bert", "architectures": [architecture], "hidden_dropout_prob": 0.1,
                   "attention_probs_dropout_prob": 0.1, "position_embedding_type": "absolute"})
    return values


def save(out_dir: str, model: BertQA, c: BertConfig, vocab_path: str, head: Optional[MaskedLmHead] = None,
         extra: Optional[Dict] = None) -> None:
    """Writes a BertForQuestionAnswering directory, or BertForMaskedLM when a head is given (the QA head is then
    left out: it is untrained). Written to a temporary directory first, then renamed into place."""
    tmp = out_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    names = hf_parameter_names(c)
    state = model.state_dict()
    tensors = {names[k]: v.float() for k, v in state.items() if head is None or not k.startswith("qa_outputs")}
    if head is not None:
        for ours, theirs in HEAD_NAMES.items():
            tensors[theirs] = head.state_dict()[ours].float()
    write_safetensors(tensors, os.path.join(tmp, "model.safetensors"))
    config = hf_config(c, "BertForMaskedLM" if head is not None else "BertForQuestionAnswering")
    if extra:
        config["libdeformer_training"] = extra
    with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1, sort_keys=True)
    shutil.copyfile(vocab_path, os.path.join(tmp, "vocab.txt"))
    with open(os.path.join(tmp, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}, f)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)


def encoder_name(state: Dict[str, torch.Tensor], name: str) -> str:
    """`name` as this checkpoint spells it: a bare BertModel (a sentence-transformers folder, say) stores the
    encoder without the "bert." prefix that BertForQuestionAnswering and BertForMaskedLM put before it."""
    if name in state or not name.startswith("bert."):
        return name
    return name[len("bert."):]


def load(directory: str) -> Tuple[BertQA, BertConfig, Dict[str, torch.Tensor]]:
    """The encoder (and QA head when present; else a fresh one, as Hugging Face initialises it) of a checkpoint
    directory, plus any masked-LM head tensors under our names. The directory may hold a BertForQuestionAnswering,
    a BertForMaskedLM or an encoder-only BertModel."""
    config_path = os.path.join(directory, "config.json")
    with open(config_path, encoding="utf-8") as f:
        values = json.load(f)
    c = BertConfig(values)
    state = read_safetensors(os.path.join(directory, "model.safetensors"))
    model = BertQA(c)
    names = hf_parameter_names(c)
    own = model.state_dict()
    for ours, theirs in names.items():
        theirs = encoder_name(state, theirs)
        if theirs in state:
            own[ours] = state[theirs]
        elif not ours.startswith("qa_outputs"):
            raise ValueError("%s lacks %s" % (directory, theirs))
        else:
            own[ours] = torch.randn(own[ours].shape) * c.initializer_range if ours.endswith("weight") \
                else torch.zeros(own[ours].shape)
    model.load_state_dict(own)
    head = {ours: state[theirs] for ours, theirs in HEAD_NAMES.items() if theirs in state}
    return model, c, head


def from_model_file(model_file: str, out_dir: str) -> None:
    """A checkpoint directory holding what an exported BERT model file holds (int8 matrices widened to fp32), so
    that a bundled model can be trained further. The file's training metadata (default k) is not carried over."""
    from pydeformer.modelfile import load_model_file
    model, config, vocab = load_model_file(model_file)
    if config["model_type"] != "bert":
        raise ValueError("%s is a %s model; checkpoints here are BERT" % (model_file, config["model_type"]))
    with tempfile.TemporaryDirectory() as work:
        vocab_path = os.path.join(work, "vocab.txt")
        with open(vocab_path, "w", encoding="utf-8") as f:
            f.write(vocab if vocab.endswith("\n") else vocab + "\n")
        save(out_dir, model, BertConfig(config["bert"]), vocab_path)


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(prog="train.checkpoint", description="A checkpoint directory from a model file.")
    parser.add_argument("model_file", help="a BERT model file from tools/deformer-export")
    parser.add_argument("--out", required=True, help="the checkpoint directory to write")
    args = parser.parse_args()
    from_model_file(args.model_file, args.out)
    print("wrote", args.out)
