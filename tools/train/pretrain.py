"""Masked-language-model pretraining of a small BERT on the tokenized corpus (train.data corpus).

Resumable: the state (model, head, optimizer, step, random generators) is saved to --work every --save-every
steps and at the end; a run started with the same --work continues where the last stopped, which is how a
pretraining longer than one GPU command's time limit is done. The result is a Hugging Face BertForMaskedLM
directory (--out) that train.finetune starts from.
"""
import argparse
import json
import os
import sys

import torch

from pydeformer.bert import BertConfig, BertQA, init_random

from . import checkpoint
from .common import Log, autocast, finite, optimizer, pick_device, seed_everything, warmup_linear
from .data import load_compressed

SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def mask_tokens(ids: torch.Tensor, vocab_size: int, first_regular: int, mask_id: int, probability: float,
                generator: torch.Generator):
    """BERT's masking: `probability` of the regular tokens are predicted; of those 80% become [MASK], 10% a
    random token, 10% stay. Returns (inputs, labels) with labels -100 where nothing is predicted."""
    rand = torch.rand(ids.shape, generator=generator, device=ids.device)
    chosen = (rand < probability) & (ids >= first_regular)
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    action = torch.rand(ids.shape, generator=generator, device=ids.device)
    inputs = torch.where(chosen & (action < 0.8), torch.full_like(ids, mask_id), ids)
    random_ids = torch.randint(first_regular, vocab_size, ids.shape, generator=generator, device=ids.device)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    return inputs, labels


def batch_of(stream: torch.Tensor, starts: torch.Tensor, length: int, cls_id: int, sep_id: int) -> torch.Tensor:
    body = stream[starts[:, None] + torch.arange(length - 2, device=stream.device)[None, :]]
    cls = torch.full((starts.numel(), 1), cls_id, dtype=body.dtype, device=body.device)
    sep = torch.full((starts.numel(), 1), sep_id, dtype=body.dtype, device=body.device)
    return torch.cat([cls, body, sep], dim=1)


def mlm_loss(model: BertQA, head: checkpoint.MaskedLmHead, inputs: torch.Tensor, labels: torch.Tensor):
    positions = torch.arange(inputs.size(1), device=inputs.device).expand_as(inputs)
    hidden = model.encode(model.embed(inputs, torch.zeros_like(inputs), positions), torch.ones_like(inputs), 0,
                          model.num_layers)
    selected = labels != -100
    logits = head(hidden[selected]).float()
    target = labels[selected]
    loss = torch.nn.functional.cross_entropy(logits, target)
    accuracy = (logits.argmax(-1) == target).float().mean()
    return loss, accuracy


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="train.pretrain", description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="corpus.pt.xz from train.data corpus")
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--config", required=True, help="model shape (tools/train/configs/*.json)")
    parser.add_argument("--out", required=True, help="Hugging Face BertForMaskedLM directory to write")
    parser.add_argument("--work", required=True, help="directory for the resumable training state")
    parser.add_argument("--steps", type=int, default=10000, help="largest number of optimizer steps")
    parser.add_argument("--minutes", type=float, default=0, help="time budget of this run (0: none); the schedule "
                        "is shortened to what fits, measured after the first 100 steps of a fresh run")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--mask-probability", type=float, default=0.15)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--save-every", type=int, default=1000)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    device = pick_device(args.device)
    os.makedirs(args.work, exist_ok=True)
    log = Log(os.path.join(args.work, "pretrain.log"))
    vocab = open(args.vocab, encoding="utf-8").read().splitlines()
    with open(args.config, encoding="utf-8") as f:
        shape = json.load(f)
    shape["vocab_size"] = len(vocab)
    config = BertConfig(shape)
    ids = {token: i for i, token in enumerate(vocab)}
    cls_id, sep_id, mask_id = ids["[CLS]"], ids["[SEP]"], ids["[MASK]"]
    first_regular = max(ids[t] for t in SPECIAL) + 1

    corpus = load_compressed(args.corpus)
    if corpus["vocab"] != vocab:
        raise SystemExit("train.pretrain: %s was tokenized with another vocabulary than %s" % (args.corpus, args.vocab))
    stream = corpus["ids"].to(torch.int64).to(device)
    held_out = max(args.seq_len * 2, stream.numel() // 100)
    if stream.numel() - held_out < args.seq_len * 2:
        raise SystemExit("train.pretrain: %s has %d tokens, too few for --seq-len %d" % (args.corpus, stream.numel(),
                                                                                     args.seq_len))
    train_stream, eval_stream = stream[:-held_out], stream[-held_out:]
    log("corpus %d tokens (%d held out), model %s, device %s" % (stream.numel(), held_out, config.to_dict(), device))

    model = BertQA(config)
    init_random(model, config, args.seed)
    head = checkpoint.MaskedLmHead(config, model.embeddings.word)
    model.to(device)
    head.to(device)
    model.set_dropout(args.dropout)
    parameters = list(model.named_parameters()) + [(n, p) for n, p in head.named_parameters() if n != "word_embeddings.weight"]
    opt = optimizer(parameters, args.lr, args.weight_decay)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    state_path = os.path.join(args.work, "pretrain-state.pt")
    step, total = 0, args.steps
    if os.path.isfile(state_path):
        state = torch.load(state_path, map_location=device)
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"].cpu())
        step, total = state["step"], state["total"]
        log("resumed at step %d of %d" % (step, total))

    def save_state():
        tmp = state_path + ".tmp"
        torch.save({"model": model.state_dict(), "head": head.state_dict(), "optimizer": opt.state_dict(),
                    "generator": generator.get_state(), "step": step, "total": total}, tmp)
        os.replace(tmp, state_path)

    def evaluate():
        model.eval()
        g = torch.Generator(device=device).manual_seed(12345)
        starts = torch.arange(0, eval_stream.numel() - args.seq_len, args.seq_len, device=device)[:512]
        with torch.no_grad(), autocast(device):
            inputs, labels = mask_tokens(batch_of(eval_stream, starts, args.seq_len, cls_id, sep_id), len(vocab),
                                         first_regular, mask_id, args.mask_probability, g)
            loss, accuracy = mlm_loss(model, head, inputs, labels)
        model.train()
        return loss.item(), accuracy.item()

    model.train()
    run_start_step = step
    rate_clock = 0.0
    while step < total:
        if args.minutes and log.elapsed() > args.minutes * 60:
            log("time budget reached at step %d of %d" % (step, total))
            break
        for group in opt.param_groups:
            group["lr"] = args.lr * warmup_linear(step, total, args.warmup)
        starts = torch.randint(0, train_stream.numel() - args.seq_len, (args.batch_size,), generator=generator,
                               device=device)
        inputs, labels = mask_tokens(batch_of(train_stream, starts, args.seq_len, cls_id, sep_id), len(vocab),
                                     first_regular, mask_id, args.mask_probability, generator)
        with autocast(device):
            loss, accuracy = mlm_loss(model, head, inputs, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step == 100:
            rate_clock = log.elapsed()  # after start-up and the first (slow) steps
        if step == 400 and run_start_step == 0 and args.minutes:
            rate = 300 / (log.elapsed() - rate_clock)
            fits = int(rate * (args.minutes * 60 - log.elapsed()) * 0.97) + step
            if fits < total:
                total = fits
                log("%.1f steps/s: schedule shortened to %d steps to fit %.1f minutes" % (rate, total, args.minutes))
        if step % args.log_every == 0 or step == 1 or step == total:
            log("step %d/%d loss %.4f acc %.3f lr %.2e" % (step, total, finite(loss.item()), accuracy.item(),
                                                            opt.param_groups[0]["lr"]))
        if step % args.save_every == 0:
            save_state()
        if step % 2000 == 0:
            log("held-out loss %.4f acc %.3f" % evaluate())
    save_state()
    held_loss, held_accuracy = evaluate()
    log("held-out loss %.4f acc %.3f at step %d" % (held_loss, held_accuracy, step))
    model.set_dropout(0.0)
    checkpoint.save(args.out, model.cpu(), config, args.vocab, head=head.cpu(),
                    extra={"stage": "pretrain", "steps": step, "scheduled_steps": total, "seed": args.seed,
                           "batch_size": args.batch_size, "seq_len": args.seq_len, "lr": args.lr,
                           "held_out_mlm_loss": held_loss, "held_out_mlm_accuracy": held_accuracy})
    log("wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
