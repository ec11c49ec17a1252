"""XLNet for extractive QA (Hugging Face XLNetForQuestionAnsweringSimple), written so that it can be split at any layer.

The one XLNet definition of the project, with the same roles as bert.py: the exporter scripts it, the reference
scripts run it eagerly. Numerics follow Hugging Face's XLNetModel in its fine-tuning configuration (attn_type "bi",
no memory, no permutation mask, no target mapping, bi_data off): relative attention with content (r_w_bias),
position (r_r_bias, sinusoidal relative encoding projected by r) and segment (r_s_bias, seg_embed) terms,
post-LayerNorm blocks, padding keys masked except a padding query's own key (HF's non_tgt_mask).

What differs from HF, on purpose: every position carries an explicit position id, and the relative distance of
query i to key j is position[i] - position[j] rather than i - j. With position ids 0..T-1 this is HF's computation
(the same products, picked by a gather instead of HF's reshape-based shift); the DeFormer upper layers use it to
close the gap a right-padded document block leaves before the question (docs/xlnet.md).

TorchScript constraints as in bert.py (torch 1.13 scripts it, LibTorch 2.x loads it): no torch.finfo, no f-strings
in scripted code, ModuleList only iterated.
"""
import math
from typing import Dict

import torch
from torch import nn

from .bert import ACTIVATIONS

# Subtracted from the scores of masked keys, as HF does (65500 in fp16, where 1e30 overflows).
MASKED_SCORE: float = 1e30
MASKED_SCORE_FP16: float = 65500.0


class XLNetConfig:
    """The subset of a Hugging Face XLNetConfig that inference needs."""

    FIELDS = ("vocab_size", "d_model", "n_layer", "n_head", "d_head", "d_inner", "ff_activation", "layer_norm_eps",
              "pad_token_id", "clamp_len", "initializer_range")

    def __init__(self, values: Dict):
        missing = [f for f in self.FIELDS[:6] if f not in values]
        if missing:
            raise ValueError("config.json lacks " + ", ".join(missing))
        self.vocab_size = int(values["vocab_size"])
        self.d_model = int(values["d_model"])
        self.n_layer = int(values["n_layer"])
        self.n_head = int(values["n_head"])
        self.d_head = int(values["d_head"])
        self.d_inner = int(values["d_inner"])
        self.ff_activation = str(values.get("ff_activation", "gelu"))
        self.layer_norm_eps = float(values.get("layer_norm_eps", 1e-12))
        self.pad_token_id = int(values.get("pad_token_id", 5))
        clamp = values.get("clamp_len", -1)
        self.clamp_len = int(-1 if clamp is None else clamp)
        self.initializer_range = float(values.get("initializer_range", 0.02))
        if self.ff_activation not in ACTIVATIONS:
            raise ValueError("unsupported ff_activation '%s' (supported: %s)"
                             % (self.ff_activation, ", ".join(ACTIVATIONS)))
        if self.n_head * self.d_head != self.d_model:
            raise ValueError("n_head %d x d_head %d is not d_model %d" % (self.n_head, self.d_head, self.d_model))
        # Settings that only pretraining or generation uses; a QA checkpoint with them set is not one we reproduce.
        if values.get("attn_type", "bi") != "bi":
            raise ValueError("attn_type '%s' is not supported (QA uses bidirectional attention, 'bi')"
                             % values.get("attn_type"))
        if values.get("bi_data", False):
            raise ValueError("bi_data is a pretraining setting; set it to false for QA inference")
        if not values.get("untie_r", True):
            raise ValueError("untie_r false (relative biases shared by all layers) is not supported")

    def to_dict(self) -> Dict:
        return {f: getattr(self, f) for f in self.FIELDS}


class RelativeAttention(nn.Module):
    def __init__(self, c: XLNetConfig):
        super().__init__()
        self.n_head = c.n_head
        self.d_head = c.d_head
        self.scale = 1.0 / math.sqrt(c.d_head)
        shape = (c.d_model, c.n_head, c.d_head)
        self.q = nn.Parameter(torch.zeros(shape))
        self.k = nn.Parameter(torch.zeros(shape))
        self.v = nn.Parameter(torch.zeros(shape))
        self.o = nn.Parameter(torch.zeros(shape))
        self.r = nn.Parameter(torch.zeros(shape))
        self.r_r_bias = nn.Parameter(torch.zeros(c.n_head, c.d_head))
        self.r_s_bias = nn.Parameter(torch.zeros(c.n_head, c.d_head))
        self.r_w_bias = nn.Parameter(torch.zeros(c.n_head, c.d_head))
        self.seg_embed = nn.Parameter(torch.zeros(2, c.n_head, c.d_head))
        self.layer_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.masked_score = MASKED_SCORE
        self.masked_score_fp16 = MASKED_SCORE_FP16

    def _project(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x [B, T, H] times weight [H, n, d] -> [B, n, T, d]."""
        y = torch.matmul(x, weight.reshape(weight.size(0), -1))
        return y.view(x.size(0), x.size(1), self.n_head, self.d_head).transpose(1, 2)

    def forward(self, h: torch.Tensor, relative: torch.Tensor, relative_index: torch.Tensor,
                different_segment: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """h [B, T, H]; relative [R, H] sinusoidal encodings; relative_index [B, 1, T, T] picks the encoding of
        each (query, key) pair; different_segment and masked [B, 1, T, T] (1 where true)."""
        batch, length = h.size(0), h.size(1)
        q = self._project(h, self.q)
        k = self._project(h, self.k)
        v = self._project(h, self.v)
        k_r = torch.matmul(relative, self.r.reshape(self.r.size(0), -1)).view(-1, self.n_head, self.d_head)
        content = torch.matmul(q + self.r_w_bias[:, None, :], k.transpose(-1, -2))
        by_distance = torch.matmul(q + self.r_r_bias[:, None, :], k_r.permute(1, 2, 0))
        position = torch.gather(by_distance, 3, relative_index.expand(batch, self.n_head, length, length))
        per_segment = torch.matmul(q + self.r_s_bias[:, None, :], self.seg_embed.permute(1, 2, 0))  # [B, n, T, 2]
        segment = torch.where(different_segment, per_segment[:, :, :, 1:2], per_segment[:, :, :, 0:1])
        scores = (content + position + segment) * self.scale
        masked_score = self.masked_score_fp16 if scores.dtype == torch.float16 else self.masked_score
        scores = scores - masked_score * masked
        probabilities = torch.softmax(scores, dim=-1)
        attended = torch.matmul(probabilities, v).transpose(1, 2).reshape(batch, length, -1)
        out = torch.matmul(attended, self.o.reshape(self.o.size(0), -1).t())
        return self.layer_norm(out + h)


class FeedForward(nn.Module):
    def __init__(self, c: XLNetConfig):
        super().__init__()
        self.layer_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.layer_1 = nn.Linear(c.d_model, c.d_inner)
        self.layer_2 = nn.Linear(c.d_inner, c.d_model)
        self.activation = ACTIVATIONS[c.ff_activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layer_1(x)
        if self.activation == 0:
            h = torch.nn.functional.gelu(h)
        elif self.activation == 1:
            h = torch.nn.functional.gelu(h, approximate="tanh")
        else:
            h = torch.relu(h)
        return self.layer_norm(self.layer_2(h) + x)


class Layer(nn.Module):
    def __init__(self, c: XLNetConfig):
        super().__init__()
        self.rel_attn = RelativeAttention(c)
        self.ff = FeedForward(c)

    def forward(self, h: torch.Tensor, relative: torch.Tensor, relative_index: torch.Tensor,
                different_segment: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        return self.ff(self.rel_attn(h, relative, relative_index, different_segment, masked))


class XLNetQA(nn.Module):
    """XLNet encoder plus the span head, with the pieces DeFormer needs exposed as methods."""

    def __init__(self, c: XLNetConfig):
        super().__init__()
        self.num_layers = c.n_layer
        self.d_model = c.d_model
        self.clamp_len = c.clamp_len
        self.word_embedding = nn.Embedding(c.vocab_size, c.d_model)
        # Used only by pretraining's query stream; kept so that the parameter count equals the source model's.
        self.mask_emb = nn.Parameter(torch.zeros(1, 1, c.d_model))
        self.layer = nn.ModuleList([Layer(c) for _ in range(c.n_layer)])
        self.qa_outputs = nn.Linear(c.d_model, 2)

    @torch.jit.export
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Word embeddings [B, T, H]; positions and segments enter in the attention (encode)."""
        return self.word_embedding(input_ids)

    def relative_encoding(self, length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """HF's sinusoidal encodings of the distances length, length-1, ..., -length+1: [2 * length, H]."""
        freq = torch.arange(0, self.d_model, 2, dtype=torch.int64, device=device).float()
        inv_freq = 1 / torch.pow(10000, (freq / self.d_model))
        distances = torch.arange(length, -length, -1, dtype=torch.int64, device=device).float()
        if self.clamp_len > 0:
            distances = distances.clamp(-self.clamp_len, self.clamp_len)
        angles = distances[:, None] * inv_freq[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1).to(dtype)

    @torch.jit.export
    def encode(self, hidden: torch.Tensor, attention_mask: torch.Tensor, segment_ids: torch.Tensor,
               position_ids: torch.Tensor, begin: int, end: int) -> torch.Tensor:
        """Runs layers [begin, end) on hidden [B, T, H]. attention_mask [B, T] is 1 for real keys; segment_ids and
        position_ids [B, T] give each position's segment (attention compares segments only for equality) and its
        place in the sequence (0 <= position < T)."""
        length = hidden.size(1)
        relative = self.relative_encoding(length, hidden.device, hidden.dtype)
        distance = position_ids[:, :, None] - position_ids[:, None, :]
        relative_index = (length - distance)[:, None, :, :]
        different_segment = (segment_ids[:, :, None] != segment_ids[:, None, :])[:, None, :, :]
        padding_key = (attention_mask == 0)[:, None, :]
        own_key = torch.eye(length, dtype=torch.bool, device=hidden.device)[None, :, :]
        masked = (padding_key & ~own_key)[:, None, :, :].to(hidden.dtype)
        for i, layer in enumerate(self.layer):
            if i >= begin and i < end:
                hidden = layer(hidden, relative, relative_index, different_segment, masked)
        return hidden

    @torch.jit.export
    def qa_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Start and end logits, [B, T, 2]."""
        return self.qa_outputs(hidden)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        """HF's XLNetForQuestionAnsweringSimple on a batch: positions 0..T-1, segments = token types."""
        positions = torch.arange(input_ids.size(1), device=input_ids.device)[None, :].expand(input_ids.size(0), -1)
        hidden = self.embed(input_ids)
        return self.qa_logits(self.encode(hidden, attention_mask, token_type_ids, positions, 0, self.num_layers))


def hf_parameter_names(c: XLNetConfig) -> Dict[str, str]:
    """Maps each parameter of XLNetQA to its name in a Hugging Face XLNetForQuestionAnsweringSimple state dict."""
    names = {"word_embedding.weight": "transformer.word_embedding.weight",
             "mask_emb": "transformer.mask_emb",
             "qa_outputs.weight": "qa_outputs.weight",
             "qa_outputs.bias": "qa_outputs.bias"}
    per_layer = ["rel_attn." + p for p in ("q", "k", "v", "o", "r", "r_r_bias", "r_s_bias", "r_w_bias", "seg_embed",
                                           "layer_norm.weight", "layer_norm.bias")]
    per_layer += ["ff." + p for p in ("layer_norm.weight", "layer_norm.bias", "layer_1.weight", "layer_1.bias",
                                      "layer_2.weight", "layer_2.bias")]
    for i in range(c.n_layer):
        for p in per_layer:
            names["layer.%d.%s" % (i, p)] = "transformer.layer.%d.%s" % (i, p)
    return names


# Checkpoint entries that carry no QA weights and are dropped on purpose (anything else unmapped is an error).
HF_IGNORED = ()

# The beam-search head (start_logits.dense, end_logits.dense_0/1, answer_class) of XLNetForQuestionAnswering: its end
# logits depend on a chosen start, so it is no per-position [start, end] head; such checkpoints are refused.
HF_BEAM_HEAD_PREFIXES = ("start_logits.", "end_logits.", "answer_class.")


def init_random(model: XLNetQA, c: XLNetConfig, seed: int) -> None:
    """Hugging Face's initialisation (normal(0, initializer_range) for weights and the relative biases,
    LayerNorm 1/0, zero Linear biases), seeded."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layer_norm.weight"):
                p.fill_(1.0)
            elif name.endswith(".bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=generator) * c.initializer_range)
