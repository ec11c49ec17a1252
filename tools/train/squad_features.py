"""SQuAD examples as model rows in the two layouts of docs/design.md ('Layouts'), built from the token tensors that
train.data wrote, plus the decoding of span logits back to answer text (SQuAD logit-sum semantics: the best
start+end over context positions, n-best 20 starts and ends, at most 30 tokens, as deformer-qa eval does)."""
from dataclasses import dataclass
from typing import Dict, List

import torch

QUESTION_BLOCK = 27
DOCUMENT_BLOCK = 293
WINDOW_STRIDE = 128
MAX_SEQ_LEN = 384
DOC_STRIDE = 128
MAX_QUESTION_LEN = 64


def split(flat: torch.Tensor, lengths: torch.Tensor) -> List[List[int]]:
    rows, start = [], 0
    values = flat.tolist()
    for n in lengths.tolist():
        rows.append(values[start:start + n])
        start += n
    return rows


def windows(num_tokens: int, window: int, stride: int):
    """[begin, end) windows starting every `stride` tokens, the last reaching the end (as layout.h)."""
    spans, begin = [], 0
    while True:
        end = min(begin + window, num_tokens)
        spans.append((begin, end))
        if end == num_tokens:
            return spans
        begin += stride


@dataclass
class Rows:
    """One row per (question, window) pair of a layout; tensors are [rows, length]."""
    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor            # [rows, 2] start and end positions, 0 ([CLS]) when the answer is outside
    question: torch.Tensor          # [rows] question index
    window_begin: torch.Tensor      # [rows] first context token of the window
    context_start: torch.Tensor     # [rows] row position of the window's first context token
    window_length: torch.Tensor     # [rows] context tokens in the window
    split_at: int = 0               # deformer layout: the question block's length (0 for full rows)
    teacher_rows: Dict = None       # deformer layout: the same pairs in the full layout, for distillation


class Squad:
    def __init__(self, data: Dict, special: Dict[str, int]):
        self.contexts = split(data["context_ids"], data["context_lengths"])
        self.questions = split(data["question_ids"], data["question_lengths"])
        self.question_context = data["question_context"].tolist()
        self.answers = data["answer_tokens"].tolist()
        self.ids = data["ids"]
        self.offsets = split(data["context_offsets"], data["context_lengths"]) if "context_offsets" in data else None
        self.cls, self.sep, self.pad = special["[CLS]"], special["[SEP]"], special["[PAD]"]

    def _label(self, q: int, begin: int, end: int, start_position: int):
        a, b = self.answers[q]
        if a < 0 or a < begin or b >= end:
            return 0, 0
        return start_position + a - begin, start_position + b - begin

    def full_rows(self, questions=None, question_limit=MAX_QUESTION_LEN, window=None, stride=DOC_STRIDE,
                  length=MAX_SEQ_LEN) -> Rows:
        """[CLS] q [SEP] window [SEP], contiguous positions (Hugging Face's layout)."""
        out = {k: [] for k in ("ids", "labels", "question", "begin", "start", "length")}
        for q in (questions if questions is not None else range(len(self.questions))):
            question = self.questions[q][:question_limit]
            context = self.contexts[self.question_context[q]]
            size = window or (length - len(question) - 3)
            for begin, end in windows(len(context), size, stride):
                start = len(question) + 2
                out["ids"].append([self.cls] + question + [self.sep] + context[begin:end] + [self.sep])
                out["labels"].append(self._label(q, begin, end, start))
                out["question"].append(q)
                out["begin"].append(begin)
                out["start"].append(start)
                out["length"].append(end - begin)
        ids = pad(out["ids"], length, self.pad)
        types = torch.zeros_like(ids)
        for row, start in enumerate(out["start"]):
            types[row, start:] = 1
        mask = (ids != self.pad).long()
        types = types * mask
        positions = torch.arange(length).expand_as(ids).contiguous()
        return Rows(ids, types, positions, mask, torch.tensor(out["labels"]), torch.tensor(out["question"]),
                    torch.tensor(out["begin"]), torch.tensor(out["start"]), torch.tensor(out["length"]))

    def deformer_rows(self, questions=None, with_teacher=False, document_block=DOCUMENT_BLOCK) -> Rows:
        """Question block ([CLS] q[:25] [SEP]) then document block (window [SEP]), each with positions from 0."""
        q_len, d_len = QUESTION_BLOCK, document_block
        out = {k: [] for k in ("ids", "labels", "question", "begin", "length", "teacher", "map")}
        for q in (questions if questions is not None else range(len(self.questions))):
            question = self.questions[q][:q_len - 2]
            context = self.contexts[self.question_context[q]]
            for begin, end in windows(len(context), d_len - 1, WINDOW_STRIDE):
                block_q = [self.cls] + question + [self.sep]
                block_d = context[begin:end] + [self.sep]
                out["ids"].append(block_q + [self.pad] * (q_len - len(block_q)) + block_d)
                out["labels"].append(self._label(q, begin, end, q_len))
                out["question"].append(q)
                out["begin"].append(begin)
                out["length"].append(end - begin)
                if with_teacher:
                    # the same tokens in the full layout, and where each deformer position sits there
                    out["teacher"].append(block_q + block_d)
                    where = [i if i < len(block_q) else 0 for i in range(q_len)]
                    where += [len(block_q) + j if j < len(block_d) else 0 for j in range(d_len)]
                    out["map"].append(where)
        ids = pad(out["ids"], q_len + d_len, self.pad)
        mask = (ids != self.pad).long()
        types = torch.cat([torch.zeros(len(ids), q_len, dtype=torch.long), torch.ones(len(ids), d_len, dtype=torch.long)], 1)
        positions = torch.cat([torch.arange(q_len), torch.arange(d_len)]).expand_as(ids).contiguous()
        rows = Rows(ids, types, positions, mask, torch.tensor(out["labels"]), torch.tensor(out["question"]),
                    torch.tensor(out["begin"]), torch.full((len(ids),), q_len), torch.tensor(out["length"]),
                    split_at=q_len)
        if with_teacher:
            t_ids = pad(out["teacher"], q_len + d_len, self.pad)
            t_types = torch.zeros_like(t_ids)
            for row, q in enumerate(out["question"]):
                t_types[row, len(self.questions[q][:q_len - 2]) + 2:] = 1
            t_mask = (t_ids != self.pad).long()
            rows.teacher_rows = {"input_ids": t_ids, "token_type_ids": t_types * t_mask,
                                 "position_ids": torch.arange(q_len + d_len).expand_as(t_ids).contiguous(),
                                 "attention_mask": t_mask, "map": torch.tensor(out["map"])}
        return rows


def pad(rows: List[List[int]], length: int, value: int) -> torch.Tensor:
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def decode(rows: Rows, start_logits: torch.Tensor, end_logits: torch.Tensor, squad: Squad, contexts_text,
           n_best: int = 20, max_answer_tokens: int = 30) -> Dict[str, str]:
    """Best span per question over its windows, by start+end logit over context positions (no null answer)."""
    best = {}
    start_logits, end_logits = start_logits.float().cpu(), end_logits.float().cpu()
    for row in range(len(rows.question)):
        q = int(rows.question[row])
        first, n = int(rows.context_start[row]), int(rows.window_length[row])
        s = start_logits[row, first:first + n]
        e = end_logits[row, first:first + n]
        top_s = torch.topk(s, min(n_best, n)).indices.tolist()
        top_e = torch.topk(e, min(n_best, n)).indices.tolist()
        for i in top_s:
            for j in top_e:
                if j < i or j - i + 1 > max_answer_tokens:
                    continue
                score = float(s[i] + e[j])
                if q not in best or score > best[q][0]:
                    begin = int(rows.window_begin[row])
                    best[q] = (score, begin + i, begin + j)
    predictions = {}
    for q in range(len(squad.questions)):
        if q not in best:
            continue
        _, a, b = best[q]
        c = squad.question_context[q]
        offsets = squad.offsets[c]
        predictions[squad.ids[q]] = contexts_text[c][offsets[a][0]:offsets[b][1]]
    return predictions
