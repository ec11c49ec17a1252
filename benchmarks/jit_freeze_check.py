"""Does torch.jit.freeze / optimize_for_inference speed up the model file's methods (torch 1.13 JIT, the same
runtime as Debian's LibTorch 1.13)? Alternates the variants so that load from other processes hits them alike."""
import statistics, sys, time, torch
torch.set_num_threads(2)
m = torch.jit.load(sys.argv[1]).eval()
variants = {"plain": m,
            "frozen": torch.jit.freeze(m, preserved_attrs=["embed", "encode", "qa_logits"]),
            "optimized": torch.jit.optimize_for_inference(torch.jit.freeze(m, preserved_attrs=["embed", "encode", "qa_logits"]),
                                                          other_methods=["encode"])}
h = torch.randn(8, 320, 768); mask = torch.ones(8, 320, dtype=torch.long)
times = {k: [] for k in variants}
with torch.inference_mode():
    for k, v in variants.items():
        for _ in range(3): v.encode(h, mask, 9, 12)
    for _ in range(5):
        for k, v in variants.items():
            t = time.perf_counter(); v.encode(h, mask, 9, 12); times[k].append(time.perf_counter() - t)
for k, t in times.items():
    print("%-10s upper layers 9..12, batch 8 x 320: median %.0f ms (min %.0f)" % (k, 1e3 * statistics.median(t), 1e3 * min(t)))
