"""Where the upper layers' GPU time goes (issue 6): BERT-base layers written with the same ATen calls as
src/native_bert.cpp, on random weights, timed per variant and broken down by kernel with torch.profiler.

  python3 benchmarks/upper_layer_profile.py [--batch 256] [--tokens 320] [--layers 3] [--dtype fp16]

Variants (each the same arithmetic as the library's layer unless said):
  library       additive [B,1,1,T] mask in the compute dtype, as native_bert.cpp passes it to SDPA
  bool-mask     the same mask as booleans
  no-mask       no mask (every key real): lets SDPA pick flash attention
  gelu-epilogue bias + GELU in the matmul's epilogue (torch._addmm_activation; tanh-approximate GELU, so not HF's)
Prints one JSON object: median ms and TFLOP/s (the FLOP model of docs/design.md, 'Performance model') per variant, the fp16 matmul
peak measured in the same run, and the kernel table of the library variant.
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F


def layer_flops(tokens, hidden, intermediate):
    return 2 * tokens * (4 * hidden * hidden + 2 * hidden * intermediate) + 4 * tokens * tokens * hidden


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--tokens", type=int, default=320)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--dtype", default="fp16")
    a = p.parse_args()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
    dev = torch.device("cuda")
    torch.manual_seed(0)
    H, heads, FF, B, T = 768, 12, 3072, a.batch, a.tokens
    hd = H // heads

    def w(*shape):
        return (torch.randn(*shape, device=dev) * 0.02).to(dtype)

    layers = [dict(qkv_w=w(3 * H, H), qkv_b=w(3 * H), out_w=w(H, H), out_b=w(H), ln1_w=torch.ones(H, device=dev, dtype=dtype),
                   ln1_b=w(H), in_w=w(FF, H), in_b=w(FF), ff_w=w(H, FF), ff_b=w(H),
                   ln2_w=torch.ones(H, device=dev, dtype=dtype), ln2_b=w(H)) for _ in range(a.layers)]
    x0 = torch.randn(B, T, H, device=dev, dtype=dtype)
    mask = torch.ones(B, T, device=dev, dtype=torch.long)
    additive = ((1.0 - mask.to(dtype)) * -10000.0).view(B, 1, 1, T)
    boolean = mask.bool().view(B, 1, 1, T)

    def layer(l, x, attn_mask, gelu_epilogue=False):
        qkv = F.linear(x, l["qkv_w"], l["qkv_b"]).view(B, T, 3, heads, hd).permute(2, 0, 3, 1, 4)
        ctx = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)
        ctx = ctx.transpose(1, 2).reshape(B, T, H)
        y = F.layer_norm(F.linear(ctx, l["out_w"], l["out_b"]).add_(x), (H,), l["ln1_w"], l["ln1_b"], 1e-12)
        if gelu_epilogue:
            h = torch._addmm_activation(l["in_b"], y.view(-1, H), l["in_w"].t(), use_gelu=True).view(B, T, FF)
        else:
            h = F.gelu(F.linear(y, l["in_w"], l["in_b"]))
        return F.layer_norm(F.linear(h, l["ff_w"], l["ff_b"]).add_(y), (H,), l["ln2_w"], l["ln2_b"], 1e-12)

    def stack(attn_mask, gelu_epilogue=False):
        def run(x):
            for l in layers:
                x = layer(l, x, attn_mask, gelu_epilogue)
            return x
        return run

    variants = {"library": stack(additive), "bool-mask": stack(boolean), "no-mask": stack(None),
                "gelu-epilogue": stack(additive, True)}

    def timed(fn, n=10, warm=3):
        times = []
        with torch.inference_mode():
            for i in range(n + warm):
                torch.cuda.synchronize()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                if i >= warm:
                    times.append(start.elapsed_time(end))
        return statistics.median(times)

    flops = B * a.layers * layer_flops(T, H, FF)
    result = {"torch": torch.__version__, "device": torch.cuda.get_device_name(), "dtype": a.dtype, "batch": B,
              "tokens": T, "layers": a.layers, "variants": {}}
    n = 8192
    ma, mb = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    peak = 2 * n ** 3 / (timed(lambda: ma @ mb) / 1e3) / 1e12
    result["matmul_peak_tflop_s"] = peak
    for name, fn in variants.items():
        ms = timed(lambda: fn(x0))
        tf = flops / (ms / 1e3) / 1e12
        result["variants"][name] = {"median_ms": ms, "tflop_s": tf, "fraction_of_peak": tf / peak}
    from torch.profiler import ProfilerActivity, profile
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            variants["library"](x0)
        torch.cuda.synchronize()
    kernels = {}
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None)
        if t is None:
            t = e.cuda_time_total
        if t > 0 and e.key and not e.key.startswith("aten::"):
            kernels[e.key[:90]] = kernels.get(e.key[:90], 0) + t / 3 / 1e3  # ms per forward
    total = sum(kernels.values())
    result["library_kernels_ms"] = {k: round(v, 4) for k, v in sorted(kernels.items(), key=lambda kv: -kv[1])[:20]}
    result["library_kernels_total_ms"] = total
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
