"""Extractive-QA fine-tuning on SQuAD: the full-layout teacher, or a DeFormer student (decomposed at k) with the
paper's loss gamma*CE + alpha*KD + beta*LRS (KD: temperature-T KL(teacher || student) over start and end
distributions, times T^2; LRS: mean squared error between the student's and the teacher's upper-layer states).
With --epochs 0 it only evaluates --init in the chosen layout (the zero-shot row of the results table).
"""
import argparse
import json
import os
import sys
import time

import torch

from pydeformer.bert import MASKED_SCORE

from . import checkpoint
from .common import Log, autocast, finite, optimizer, pick_device, seed_everything, warmup_linear
from .data import load_compressed, read_squad
from .squad_features import DOCUMENT_BLOCK, Squad, decode

def masked_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return logits.float().masked_fill(mask == 0, MASKED_SCORE)


def full_forward(model, ids, types, positions, mask, collect_from=None):
    """Logits [B, T, 2] of the joint pass; with collect_from=k also the outputs of layers k..n-1."""
    hidden = model.embed(ids, types, positions)
    if collect_from is None:
        return model.qa_logits(model.encode(hidden, mask, 0, model.num_layers)), []
    states = []
    for i in range(model.num_layers):
        hidden = model.encode(hidden, mask, i, i + 1)
        if i >= collect_from:
            states.append(hidden)
    return model.qa_logits(hidden), states


def deformer_forward(model, ids, types, positions, mask, split_at: int, k: int, collect=False):
    """Lower k layers on the question block and the document block separately, upper layers on both."""
    q = model.encode(model.embed(ids[:, :split_at], types[:, :split_at], positions[:, :split_at]),
                     mask[:, :split_at], 0, k)
    d = model.encode(model.embed(ids[:, split_at:], types[:, split_at:], positions[:, split_at:]),
                     mask[:, split_at:], 0, k)
    hidden = torch.cat([q, d], dim=1)
    if not collect:
        return model.qa_logits(model.encode(hidden, mask, k, model.num_layers)), []
    states = []
    for i in range(k, model.num_layers):
        hidden = model.encode(hidden, mask, i, i + 1)
        states.append(hidden)
    return model.qa_logits(hidden), states


def row_inputs(rows, index, device):
    """(ids, types, positions, mask) of the rows at `index`, on the device."""
    take = lambda t: t[index].to(device, non_blocking=True)
    return take(rows.input_ids), take(rows.token_type_ids), take(rows.position_ids), take(rows.attention_mask)


def full_layout_inputs(rows, index, device):
    """The same pairs re-laid in the full layout, and where each deformer-layout position sits there."""
    t = {name: v[index].to(device, non_blocking=True) for name, v in rows.teacher_rows.items()}
    return (t["input_ids"], t["token_type_ids"], t["position_ids"], t["attention_mask"]), t["map"]


def forward(model, rows, inputs, layout: str, k: int, collect=False):
    if layout == "full":
        return full_forward(model, *inputs)
    return deformer_forward(model, *inputs, rows.split_at, k, collect)


def distillation(student_logits, student_states, student_inputs, teacher, rows, index, device, k, temperature,
                 teacher_layout="deformer"):
    """(KD, LRS) against the teacher run on the same (question, window) pairs: on the student's own rows for a
    k=0 teacher (the paper's), or on the pairs re-laid in the full layout."""
    mask = student_inputs[3]
    inputs, where = (student_inputs, None) if teacher_layout == "deformer" else full_layout_inputs(rows, index, device)
    with torch.no_grad():
        t_logits, t_states = full_forward(teacher, *inputs, collect_from=k)
    align = (lambda t: t) if where is None else \
        (lambda t: torch.gather(t, 1, where[:, :, None].expand(-1, -1, t.size(-1))))
    gathered = align(t_logits.float())
    kd = 0.0
    for side in range(2):
        s = torch.log_softmax(masked_logits(student_logits[:, :, side], mask) / temperature, dim=-1)
        p = torch.softmax(masked_logits(gathered[:, :, side], mask) / temperature, dim=-1)
        kd = kd + torch.nn.functional.kl_div(s, p, reduction="batchmean") * temperature ** 2 / 2
    weights = mask.float()[:, :, None]
    lrs = 0.0
    for s_state, t_state in zip(student_states, t_states):
        t_aligned = align(t_state.float())
        lrs = lrs + (((s_state.float() - t_aligned) ** 2) * weights).sum() / (weights.sum() * s_state.size(-1))
    return kd, lrs / max(1, len(student_states))


def fit_to_budget(total: int, done: int, seconds: float, seconds_left: float, log) -> int:
    """The step count that fits the time left (a 10-minute command on the GPU machine), keeping ~40 s for the
    evaluation and the checkpoint; the learning-rate schedule then ends there."""
    fits = done + int(max(0.0, seconds_left - 40.0) * done / max(seconds, 1e-9))
    if fits < total:
        log("time budget: %d of %d steps fit (%.1f steps/s)" % (fits, total, done / max(seconds, 1e-9)))
        return fits
    return total


def full_layout_loss(model, rows, index, labels, device):
    """Cross-entropy of the same pairs in the full layout (the deformer labels moved to their full positions)."""
    inputs, where = full_layout_inputs(rows, index, device)
    logits, _ = full_forward(model, *inputs)
    full_labels = torch.gather(where, 1, labels)
    return sum(torch.nn.functional.cross_entropy(masked_logits(logits[:, :, side], inputs[3]), full_labels[:, side])
               for side in range(2)) / 2


def take_lower_layers(model, source_dir: str, k: int) -> None:
    """The embeddings and layers 0..k-1 from another checkpoint (the paper's student: upper layers from the
    teacher, lower layers from the pretrained model)."""
    source, _, _ = checkpoint.load(source_dir)
    own, theirs = model.state_dict(), source.state_dict()
    for name in own:
        if name.startswith("embeddings.") or any(name.startswith("layers.%d." % i) for i in range(k)):
            own[name] = theirs[name]
    model.load_state_dict(own)


def training_rows(train, args, questions, distil, log):
    """Rows for training, kept next to the data file: building them in Python takes a while, and every run of a
    sweep over k and losses uses the same ones."""
    cache = "%s.rows-%s%s-%d%s.pt" % (args.train, args.layout, "-teacher" if distil else "", len(questions),
                                      "-d%d" % args.document_block if args.layout == "deformer" else "")
    if os.path.isfile(cache):
        log("rows from %s" % cache)
        return torch.load(cache, weights_only=False)  # our own file, written just before
    rows = train.full_rows(questions) if args.layout == "full" else \
        train.deformer_rows(questions, distil, args.document_block)
    tmp = "%s.tmp-%d" % (cache, os.getpid())  # runs of a sweep may start side by side
    torch.save(rows, tmp)
    os.replace(tmp, cache)
    return rows


def evaluate(model, squad, texts, rows, device, layout, k, batch_size=512, bf16=True):
    model.eval()
    starts, ends = [], []
    with torch.no_grad(), autocast(device, bf16):
        for first in range(0, len(rows.question), batch_size):
            index = torch.arange(first, min(first + batch_size, len(rows.question)))
            logits, _ = forward(model, rows, row_inputs(rows, index, device), layout, k)
            starts.append(logits[:, :, 0].float().cpu())
            ends.append(logits[:, :, 1].float().cpu())
    model.train()
    return decode(rows, torch.cat(starts), torch.cat(ends), squad, texts)


def squad_f1(predictions, dev_json):
    """Quick official-metric scores for progress lines; the reported numbers come from `deformer-qa score`."""
    import collections
    import re
    import string

    def normalise(s):
        s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
        s = re.sub(r"\b(a|an|the)\b", " ", s)
        return " ".join(s.split())

    def f1(prediction, truth):
        p, t = normalise(prediction).split(), normalise(truth).split()
        common = collections.Counter(p) & collections.Counter(t)
        same = sum(common.values())
        if same == 0:
            return 0.0
        precision, recall = same / len(p), same / len(t)
        return 2 * precision * recall / (precision + recall)

    em = f = n = 0
    for article in dev_json["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                if qa["id"] not in predictions:
                    continue
                truths = [a["text"] for a in qa["answers"]]
                pred = predictions[qa["id"]]
                em += max(float(normalise(pred) == normalise(t)) for t in truths)
                f += max(f1(pred, t) for t in truths)
                n += 1
    return 100 * em / max(n, 1), 100 * f / max(n, 1), n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="train.finetune", description=__doc__.splitlines()[0])
    parser.add_argument("--init", required=True, help="Hugging Face checkpoint directory to start from")
    parser.add_argument("--train", help="squad-train.pt.xz from train.data squad")
    parser.add_argument("--dev", required=True, help="squad-dev.pt.xz from train.data squad")
    parser.add_argument("--dev-json", required=True, help="the dev set itself (answer texts, contexts)")
    parser.add_argument("--layout", choices=("full", "deformer"), default="full")
    parser.add_argument("--k", type=int, default=0, help="deformer layout: layers run separately")
    parser.add_argument("--document-block", type=int, default=DOCUMENT_BLOCK,
                        help="deformer layout: document block length (window tokens + [SEP]); the paper's is 293, "
                        "and 357 fills Hugging Face's 384 tokens with the 27-token question block")
    parser.add_argument("--teacher", help="checkpoint for KD and LRS (deformer layout)")
    parser.add_argument("--teacher-layout", choices=("full", "deformer"), default="deformer",
                        help="the teacher's layout: deformer = the k=0 model of the paper, on the student's rows")
    parser.add_argument("--lower-from", help="take the embeddings and layers below k from this checkpoint "
                        "(the paper's student: upper layers from --init, the teacher, lower from the pretrained)")
    parser.add_argument("--alpha", type=float, default=1.0, help="weight of KD (with --teacher)")
    parser.add_argument("--beta", type=float, default=1.0, help="weight of LRS (with --teacher)")
    parser.add_argument("--gamma", type=float, default=1.0, help="weight of the answer cross-entropy")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--also-full", type=float, default=0.0,
                        help="deformer layout: add this weight times the cross-entropy of the same pairs in the full "
                        "layout, so that one model answers in both modes")
    parser.add_argument("--epochs", type=float, default=2.0, help="0: evaluate only")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--warmup-fraction", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--max-train-questions", type=int, default=0, help="0: all")
    parser.add_argument("--max-dev-questions", type=int, default=0, help="0: all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=0.0,
                        help="time budget of the run: the schedule is shortened to the steps that fit (0: none)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--prepare-only", action="store_true",
                        help="build and keep the training rows next to --train, then stop (before a parallel sweep)")
    parser.add_argument("--out", help="checkpoint directory to write (when training)")
    parser.add_argument("--predictions", help="dev predictions JSON to write")
    parser.add_argument("--log", help="also append progress lines here")
    args = parser.parse_args(argv)
    if args.layout == "deformer" and args.teacher is None and (args.alpha or args.beta) and args.epochs > 0:
        args.alpha = args.beta = 0.0  # plain fine-tuning: no teacher, cross-entropy only

    seed_everything(args.seed)
    device = pick_device(args.device)
    log = Log(args.log)
    model, config, _ = checkpoint.load(args.init)
    if args.layout == "deformer" and not 0 <= args.k <= config.num_hidden_layers:
        raise SystemExit("train.finetune: --k %d outside 0..%d" % (args.k, config.num_hidden_layers))
    if args.lower_from:
        take_lower_layers(model, args.lower_from, args.k)
    vocab_path = os.path.join(args.init, "vocab.txt")
    vocab = open(vocab_path, encoding="utf-8").read().splitlines()
    special = {t: vocab.index(t) for t in ("[PAD]", "[CLS]", "[SEP]")}
    model.to(device)

    dev = Squad(load_compressed(args.dev), special)
    dev_json = read_squad(args.dev_json)
    texts = [p["context"] for a in dev_json["data"] for p in a["paragraphs"]]
    dev_questions = range(len(dev.questions)) if not args.max_dev_questions else range(args.max_dev_questions)
    dev_rows = dev.full_rows(dev_questions) if args.layout == "full" else \
        dev.deformer_rows(dev_questions, document_block=args.document_block)
    what = "%s layout%s" % (args.layout, " k=%d" % args.k if args.layout == "deformer" else "")

    result = {"init": args.init, "layout": args.layout, "k": args.k if args.layout == "deformer" else None,
              "document_block": args.document_block if args.layout == "deformer" else None}
    if args.epochs > 0:
        train = Squad(load_compressed(args.train), special)
        questions = range(len(train.questions) if not args.max_train_questions else args.max_train_questions)
        distil = args.layout == "deformer" and args.teacher is not None
        full_rows_needed = (distil and args.teacher_layout == "full") or args.also_full > 0
        rows = training_rows(train, args, questions, full_rows_needed, log)
        if args.prepare_only:
            return 0
        teacher = None
        if distil:
            teacher, _, _ = checkpoint.load(args.teacher)
            teacher.to(device).eval()
        total = int(len(rows.question) * args.epochs / args.batch_size)
        log("%s: %d training rows, %d steps, %s" % (what, len(rows.question), total,
            "KD+LRS alpha %g beta %g gamma %g T %g" % (args.alpha, args.beta, args.gamma, args.temperature)
            if distil else "cross-entropy only"))
        model.set_dropout(args.dropout)
        model.train()
        opt = optimizer(list(model.named_parameters()), args.lr, args.weight_decay)
        generator = torch.Generator().manual_seed(args.seed)
        order = torch.randperm(len(rows.question), generator=generator)
        cursor = 0
        first_loss = last_loss = None
        step, began = 0, time.time()
        while step < total:
            if step == 100 and args.minutes > 0:
                total = fit_to_budget(total, step, time.time() - began, args.minutes * 60 - log.elapsed(), log)
            if cursor + args.batch_size > len(order):
                order, cursor = torch.randperm(len(rows.question), generator=generator), 0
            index = order[cursor:cursor + args.batch_size]
            cursor += args.batch_size
            for group in opt.param_groups:
                group["lr"] = args.lr * warmup_linear(step, total, max(1, int(total * args.warmup_fraction)))
            with autocast(device):
                inputs = row_inputs(rows, index, device)
                mask = inputs[3]
                logits, states = forward(model, rows, inputs, args.layout, args.k, collect=distil)
                labels = rows.labels[index].to(device)
                ce = sum(torch.nn.functional.cross_entropy(masked_logits(logits[:, :, side], mask), labels[:, side])
                         for side in range(2)) / 2
                loss = args.gamma * ce
                if distil:
                    kd, lrs = distillation(logits, states, inputs, teacher, rows, index, device, args.k,
                                           args.temperature, args.teacher_layout)
                    loss = loss + args.alpha * kd + args.beta * lrs
                if args.also_full > 0:
                    loss = loss + args.also_full * full_layout_loss(model, rows, index, labels, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            last_loss = finite(loss.item()) if step % 50 == 0 or step == total - 1 else last_loss
            first_loss = last_loss if first_loss is None else first_loss
            if step % 200 == 0 or step == total - 1:
                log("%s step %d/%d loss %.4f (ce %.4f%s)" % (what, step + 1, total, loss.item(), ce.item(),
                    " kd %.4f lrs %.4f" % (kd.item(), lrs.item()) if distil else ""))
            step += 1
        model.set_dropout(0.0)
        result.update({"steps": total, "epochs_done": total * args.batch_size / len(rows.question), "first_loss": first_loss, "last_loss": last_loss, "epochs": args.epochs,
                       "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed, "teacher": args.teacher,
                       "alpha": args.alpha, "beta": args.beta, "gamma": args.gamma, "temperature": args.temperature,
                       "teacher_layout": args.teacher_layout if distil else None, "lower_from": args.lower_from,
                       "warmup_fraction": args.warmup_fraction, "also_full": args.also_full})
        if args.out:
            checkpoint.save(args.out, model.cpu(), config, vocab_path, extra=dict(result, stage="finetune"))
            model.to(device)
            log("wrote %s" % args.out)

    predictions = evaluate(model, dev, texts, dev_rows, device, args.layout, args.k)
    em, f1, n = squad_f1(predictions, dev_json)
    result.update({"dev_questions": n, "quick_em": em, "quick_f1": f1})
    log("%s dev: EM %.2f F1 %.2f over %d questions (quick metric)" % (what, em, f1, n))
    if args.predictions:
        with open(args.predictions, "w", encoding="utf-8") as f:
            json.dump(predictions, f, ensure_ascii=False)
        with open(args.predictions + ".meta.json", "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
