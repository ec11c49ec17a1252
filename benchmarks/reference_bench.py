"""Reference timings for deformer-bench: a full forward of the same weights on the same full-mode windows.

  --kind eager  the project's own eager PyTorch module (tools/pydeformer/bert.py), weights from the model file
  --kind hf     Hugging Face transformers BertForQuestionAnswering, attn_implementation="sdpa", same weights

The input (written by deformer-bench) lists groups of windows, one group per call, each window as its
[CLS] q [SEP] d [SEP] ids; a group is padded to its longest window as the library pads. One untimed pass, then
--repeats timed passes; per group the median. Prints one JSON object on stdout; an unavailable reference
(transformers missing, no CUDA) prints {"available": false, "reason": ...} and exits 0.
"""
import argparse
import json
import resource
import statistics
import sys
import time


def layer_flops(tokens, hidden, intermediate):
    """docs/design.md, 'Performance model': 2T(4H^2 + 2HF) + 4T^2 H."""
    return 2 * tokens * (4 * hidden * hidden + 2 * hidden * intermediate) + 4 * tokens * tokens * hidden


def unavailable(kind, reason):
    print(json.dumps({"reference": kind, "available": False, "reason": reason}))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--kind", choices=("eager", "hf"), required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)

    import torch
    from pydeformer.bert import hf_parameter_names
    from pydeformer.modelfile import ExportError, load_model_file

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        return unavailable(a.kind, "torch %s has no CUDA device here" % torch.__version__)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}.get(a.dtype)
    if dtype is None:
        return unavailable(a.kind, "dtype %s has no reference" % a.dtype)
    device = torch.device(a.device)

    try:
        ours, config, _ = load_model_file(a.model)
    except ExportError as e:
        return unavailable(a.kind, str(e))
    bert = config["bert"]
    versions = {"torch": torch.__version__}
    if a.kind == "eager":
        model = ours
    else:
        try:
            import transformers
            from transformers import BertConfig, BertForQuestionAnswering
        except Exception as e:  # ImportError, or a transformers that fails to import
            return unavailable(a.kind, "transformers does not import: %s" % str(e).splitlines()[0])
        versions["transformers"] = transformers.__version__
        try:
            hf_config = BertConfig(**bert, attn_implementation="sdpa")
            model = BertForQuestionAnswering(hf_config)
        except Exception as e:
            return unavailable(a.kind, "transformers %s cannot build an SDPA BertForQuestionAnswering: %s"
                               % (transformers.__version__, str(e).splitlines()[0]))
        names = hf_parameter_names(ours_config(bert))
        state = {names[k]: v for k, v in ours.state_dict().items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [m for m in missing if "pooler" not in m and not m.endswith("position_ids")]
        if missing or unexpected:
            return unavailable(a.kind, "weights do not map onto transformers' model: missing %s unexpected %s"
                               % (missing[:3], unexpected[:3]))
        versions["attn_implementation"] = getattr(model.config, "_attn_implementation", "sdpa")
    model = model.eval().to(device=device, dtype=dtype)

    with open(a.input, encoding="utf-8") as f:
        spec = json.load(f)
    sep = spec["sep"]
    batches = []
    for group in spec["groups"]:
        rows = group["rows"]
        longest = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), longest, dtype=torch.long)
        types = torch.zeros_like(ids)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
            mask[i, :len(r)] = 1
            types[i, r.index(sep) + 1:len(r)] = 1  # after the first [SEP]: the document
        positions = torch.arange(longest).unsqueeze(0).expand(len(rows), longest)
        batches.append((group["questions"], rows, ids.to(device), types.to(device), mask.to(device), positions.to(device)))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def run(batch):
        _, _, ids, types, mask, positions = batch
        if a.kind == "eager":
            return model(ids, types, positions, mask)
        out = model(input_ids=ids, token_type_ids=types, attention_mask=mask)
        return out.start_logits

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        allocated_before = torch.cuda.memory_allocated(device)
    times = [[] for _ in batches]
    with torch.inference_mode():
        for repeat in range(a.repeats + 1):
            for g, batch in enumerate(batches):
                sync()
                begin = time.perf_counter()
                run(batch)
                sync()
                if repeat > 0:
                    times[g].append(time.perf_counter() - begin)
    group_time = [statistics.median(t) for t in times]
    latencies = sorted(1e3 * group_time[g] for g, b in enumerate(batches) for _ in range(b[0]))
    questions = len(latencies)
    total = sum(group_time)
    flops = sum(bert["num_hidden_layers"] * layer_flops(len(r), bert["hidden_size"], bert["intermediate_size"])
                for b in batches for r in b[1])

    def nearest_rank(p):
        return latencies[min(len(latencies) - 1, max(0, -(-p * len(latencies) // 100) - 1))]

    result = {
        "reference": a.kind,
        "available": True,
        "versions": versions,
        "device": str(device),
        "dtype": a.dtype,
        "threads": torch.get_num_threads(),
        "questions": questions,
        "windows": sum(len(b[1]) for b in batches),
        "questions_per_s": questions / total,
        "latency_ms": {"p50": nearest_rank(50), "p99": nearest_rank(99), "mean": 1e3 * total / questions},
        "seconds_per_pass": total,
        "achieved_tflop_s": flops / total / 1e12,
        "rss_peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        result["cuda"] = {"peak_allocated_bytes": peak, "question_time_peak_bytes": peak - allocated_before}
    print(json.dumps(result))
    return 0


def ours_config(bert):
    from pydeformer.bert import BertConfig
    return BertConfig(bert)


if __name__ == "__main__":
    sys.exit(main())
