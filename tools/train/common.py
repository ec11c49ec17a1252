"""What every training stage shares: seeding, the device, the learning-rate schedule, logging."""
import math
import random
import time

import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def autocast(device: torch.device, bf16: bool = True):
    """bf16 autocast on CUDA (no loss scaling needed); plain fp32 on CPU, where the smoke tests run, and wherever
    bf16 is False (exact comparisons with the C++ reader, which computes in fp32)."""
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def warmup_linear(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def optimizer(model_parameters, lr: float, weight_decay: float):
    """AdamW without decay on biases and LayerNorm weights, as BERT training does."""
    decay, no_decay = [], []
    for name, p in model_parameters:
        (no_decay if p.dim() == 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


class Log:
    """Timestamped progress lines (flushed: the GPU machine returns only what was printed)."""

    def __init__(self, path=None):
        self.start = time.time()
        self.file = open(path, "a", encoding="utf-8") if path else None

    def __del__(self):
        if self.file:
            self.file.close()

    def __call__(self, message: str) -> None:
        line = "[%7.1fs] %s" % (time.time() - self.start, message)
        print(line, flush=True)
        if self.file:
            self.file.write(line + "\n")
            self.file.flush()

    def elapsed(self) -> float:
        return time.time() - self.start


def finite(value: float) -> float:
    if not math.isfinite(value):
        raise FloatingPointError("loss is %s" % value)
    return value
