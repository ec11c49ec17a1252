# Shared by scripts/test.sh and scripts/demo.sh: install what is missing, configure, build.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}

# Debian 12 packages. python3-venv, -yaml and -requests: the tests' Hugging Face environment (scripts/hf_venv.sh)
# sees Debian's torch and these, and takes the rest from PyPI. libopenblas0-openmp, not the pthread build: its
# threads fight LibTorch's OpenMP threads (BERT-base batch 1 on 2 cores: 0.37 s vs 1.0 s; 22.6 s with the
# reference BLAS).
PACKAGES=(build-essential cmake ninja-build pkg-config ccache
          libtorch-dev python3-torch libopenblas0-openmp
          python3-venv python3-yaml python3-requests
          libsentencepiece-dev libhdf5-dev libsqlite3-dev libcli11-dev nlohmann-json3-dev libcpp-httplib-dev libxxhash-dev
          libgtest-dev libgmock-dev libbenchmark-dev zlib1g-dev libgoogle-perftools-dev)

# Only for scripts/test.sh: clang with libFuzzer's runtime builds the fuzz targets (tests/fuzz.cmake).
TEST_PACKAGES=(clang-14 libclang-rt-14-dev)

# install_dependencies [EXTRA_PACKAGE...]: PACKAGES and these, those missing installed with apt.
install_dependencies() {
  local wanted=("${PACKAGES[@]}" "$@")
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "not a Debian system: install the equivalents of: ${wanted[*]}" >&2
    return 0
  fi
  local missing=()
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  select_openmp_blas
}

# With several BLAS builds installed, Debian picks by priority and the pthread OpenBLAS outranks the OpenMP one.
select_openmp_blas() {
  local name=libblas.so.3-$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
  local want=/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)/openblas-openmp/libblas.so.3
  command -v update-alternatives >/dev/null 2>&1 && [ -e "$want" ] || return 0
  if [ "$(readlink -f "/etc/alternatives/$name")" != "$want" ] && [ "$(id -u)" -eq 0 ]; then
    echo "selecting the OpenMP OpenBLAS for libblas.so.3"
    update-alternatives --set "$name" "$want"
  fi
}

build_project() {
  local generator=()
  command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
  # Configured every time (seconds): which data-dependent tests exist is decided at configure time, and the
  # data may have appeared since the last build.
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
  else
    cmake "$BUILD_DIR" > /dev/null
  fi
  cmake --build "$BUILD_DIR" -j "$(nproc)"
}
