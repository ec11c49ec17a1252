# Sourced by the GPU-machine scripts (tests/hf/run_on_gpu.sh, tests/hf/xlnet_on_gpu.sh, benchmarks/run_bench_gpu.sh):
# pip PyTorch's LibTorch for CMake, the data mirror at .gpu/data, the machine's facts, and the CUDA build.
# Expects ROOT (the repository root) and OUT (an existing directory for logs).
export CMAKE_PREFIX_PATH=$(python3 -c "import torch;print(torch.utils.cmake_prefix_path)")
export DEFORMER_DATA=$ROOT/.gpu/data DEFORMER_PYTHON=$(command -v python3) CI=true OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}

gpu_facts() {  # the card, the driver and the Python packages the checks use
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 - <<'PY'
import importlib
found = []
for name in ("torch", "transformers", "sentencepiece"):
    try:
        found.append("%s %s" % (name, importlib.import_module(name).__version__))
    except ImportError:
        found.append("%s missing" % name)
print(", ".join(found))
PY
}

gpu_build() {  # [TARGET...]: configure build-gpu and build the targets (all without arguments)
  cmake -S "$ROOT" -B "$ROOT/build-gpu" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDEFORMER_PYTHON="$DEFORMER_PYTHON" \
    > "$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; return 1; }
  cmake --build "$ROOT/build-gpu" -j 16 ${1:+--target "$@"} > "$OUT/build.log" 2>&1 \
    || { grep -E "error|FAILED" "$OUT/build.log" | head -40; return 1; }
}
