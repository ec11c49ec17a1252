"""BERT for extractive QA, written so that it can be split at any layer.

This is the one model definition of the project: the exporter scripts it into the model file, the reference
scripts run it eagerly, and training (tools/train) fine-tunes it. Numerics follow Hugging Face's
BertForQuestionAnswering (post-LayerNorm blocks, erf GELU unless the config says otherwise, additive key
mask). Dropout is off (probability 0) unless training sets it with `set_dropout`; it is never active in
eval mode, so exported files and inference are unaffected.

TorchScript constraints (torch 1.13 must script it, LibTorch 2.x must load it): no torch.finfo, no
f-strings in scripted code, ModuleList only iterated, never indexed by a runtime value.
"""
import math
from typing import Dict, List, Tuple

import torch
from torch import nn

# Added to attention scores of padding keys. exp(-1e4) underflows to exactly 0 in fp32, so padding keys
# contribute nothing; the value is also representable in fp16 and bf16, unlike float32's minimum.
MASKED_SCORE: float = -10000.0

ACTIVATIONS = {"gelu": 0, "gelu_new": 1, "gelu_pytorch_tanh": 1, "relu": 2}


class BertConfig:
    """The subset of a Hugging Face BertConfig that inference needs."""

    FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id",
              "initializer_range")

    def __init__(self, values: Dict):
        missing = [f for f in self.FIELDS[:5] if f not in values]
        if missing:
            raise ValueError("config.json lacks " + ", ".join(missing))
        self.vocab_size = int(values["vocab_size"])
        self.hidden_size = int(values["hidden_size"])
        self.num_hidden_layers = int(values["num_hidden_layers"])
        self.num_attention_heads = int(values["num_attention_heads"])
        self.intermediate_size = int(values["intermediate_size"])
        self.hidden_act = str(values.get("hidden_act", "gelu"))
        self.max_position_embeddings = int(values.get("max_position_embeddings", 512))
        self.type_vocab_size = int(values.get("type_vocab_size", 2))
        self.layer_norm_eps = float(values.get("layer_norm_eps", 1e-12))
        self.pad_token_id = int(values.get("pad_token_id", 0))
        self.initializer_range = float(values.get("initializer_range", 0.02))
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError("unsupported hidden_act '%s' (supported: %s)" % (self.hidden_act, ", ".join(ACTIVATIONS)))
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size %d is not a multiple of num_attention_heads %d"
                             % (self.hidden_size, self.num_attention_heads))

    def to_dict(self) -> Dict:
        return {f: getattr(self, f) for f in self.FIELDS}


class Embeddings(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout: float = 0.0

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                position_ids: torch.Tensor) -> torch.Tensor:
        x = self.word(input_ids) + self.token_type(token_type_ids) + self.position(position_ids)
        return torch.nn.functional.dropout(self.norm(x), self.dropout, self.training)


class Layer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        h = c.hidden_size
        self.num_heads = c.num_attention_heads
        self.head_dim = h // c.num_attention_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.activation = ACTIVATIONS[c.hidden_act]
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)
        self.attention_output = nn.Linear(h, h)
        self.attention_norm = nn.LayerNorm(h, eps=c.layer_norm_eps)
        self.intermediate = nn.Linear(h, c.intermediate_size)
        self.output = nn.Linear(c.intermediate_size, h)
        self.output_norm = nn.LayerNorm(h, eps=c.layer_norm_eps)
        self.dropout: float = 0.0

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), x.size(1), self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        q = self._heads(self.query(x))
        k = self._heads(self.key(x))
        v = self._heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale + additive_mask
        probabilities = torch.nn.functional.dropout(torch.softmax(scores, dim=-1), self.dropout, self.training)
        context = torch.matmul(probabilities, v)
        context = context.transpose(1, 2).reshape(x.size(0), x.size(1), x.size(2))
        attended = torch.nn.functional.dropout(self.attention_output(context), self.dropout, self.training)
        x = self.attention_norm(attended + x)
        h = self.intermediate(x)
        if self.activation == 0:
            h = torch.nn.functional.gelu(h)
        elif self.activation == 1:
            h = torch.nn.functional.gelu(h, approximate="tanh")
        else:
            h = torch.relu(h)
        return self.output_norm(torch.nn.functional.dropout(self.output(h), self.dropout, self.training) + x)


class BertQA(nn.Module):
    """BERT encoder plus the span head, with the pieces DeFormer needs exposed as methods."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.num_layers = c.num_hidden_layers
        self.masked_score = MASKED_SCORE
        self.embeddings = Embeddings(c)
        self.layers = nn.ModuleList([Layer(c) for _ in range(c.num_hidden_layers)])
        self.qa_outputs = nn.Linear(c.hidden_size, 2)

    @torch.jit.ignore
    def set_dropout(self, probability: float) -> None:
        """Hugging Face's hidden and attention dropout, for training only."""
        self.embeddings.dropout = probability
        for layer in self.layers:
            layer.dropout = probability

    @torch.jit.export
    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
              position_ids: torch.Tensor) -> torch.Tensor:
        return self.embeddings(input_ids, token_type_ids, position_ids)

    @torch.jit.export
    def encode(self, hidden: torch.Tensor, attention_mask: torch.Tensor, begin: int, end: int) -> torch.Tensor:
        """Runs layers [begin, end) on hidden [B, T, H]; attention_mask [B, T] is 1 for real keys."""
        additive = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * self.masked_score
        for i, layer in enumerate(self.layers):
            if i >= begin and i < end:
                hidden = layer(hidden, additive)
        return hidden

    @torch.jit.export
    def qa_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Start and end logits, [B, T, 2]."""
        return self.qa_outputs(hidden)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, position_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(input_ids, token_type_ids, position_ids)
        return self.qa_logits(self.encode(hidden, attention_mask, 0, self.num_layers))


def hf_parameter_names(c: BertConfig) -> Dict[str, str]:
    """Maps each parameter of BertQA to its name in a Hugging Face BertForQuestionAnswering state dict."""
    names = {
        "embeddings.word.weight": "bert.embeddings.word_embeddings.weight",
        "embeddings.position.weight": "bert.embeddings.position_embeddings.weight",
        "embeddings.token_type.weight": "bert.embeddings.token_type_embeddings.weight",
        "embeddings.norm.weight": "bert.embeddings.LayerNorm.weight",
        "embeddings.norm.bias": "bert.embeddings.LayerNorm.bias",
        "qa_outputs.weight": "qa_outputs.weight",
        "qa_outputs.bias": "qa_outputs.bias",
    }
    per_layer = {
        "query": "attention.self.query",
        "key": "attention.self.key",
        "value": "attention.self.value",
        "attention_output": "attention.output.dense",
        "attention_norm": "attention.output.LayerNorm",
        "intermediate": "intermediate.dense",
        "output": "output.dense",
        "output_norm": "output.LayerNorm",
    }
    for i in range(c.num_hidden_layers):
        for ours, theirs in per_layer.items():
            for p in ("weight", "bias"):
                names["layers.%d.%s.%s" % (i, ours, p)] = "bert.encoder.layer.%d.%s.%s" % (i, theirs, p)
    return names


# Checkpoint entries that carry no QA weights and are dropped on purpose (anything else unmapped is an error).
HF_IGNORED = ("bert.embeddings.position_ids", "bert.embeddings.token_type_ids",
              "bert.pooler.dense.weight", "bert.pooler.dense.bias")

# Names used by checkpoints from the TensorFlow era, renamed on load.
HF_LEGACY_SUFFIXES = ((".gamma", ".weight"), (".beta", ".bias"))


def init_random(model: BertQA, c: BertConfig, seed: int) -> None:
    """Hugging Face's initialisation (normal(0, initializer_range), LayerNorm 1/0, zero biases), seeded."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=generator) * c.initializer_range)

