#!/usr/bin/env bash
# The GPU checks: the CUDA backend against the CPU backend on the test fixtures
# (crates/glimpse-core/tests/gpu_parity.rs). They need a machine with an NVIDIA GPU and
# driver; that machine needs neither Rust, Node nor network, because the checks are
# compiled into a standalone binary first:
#
#   scripts/test-gpu.sh build   on a build machine (x86-64 Linux with cargo): compiles the
#                               checks with --features cuda into target/gpu-checks/
#   scripts/test-gpu.sh run     on the GPU machine, from a copy of this repository with
#                               target/gpu-checks/ in it: runs them
#   scripts/test-gpu.sh         both, on one machine (`npm run test:gpu`)
#
# Without a usable GPU `run` says so and exits 1: a run that did not touch a GPU is never
# reported as a pass. The CUDA libraries are loaded at run time: NVRTC 13 and cuBLAS 13
# from the CUDA toolkit or from NVIDIA's pip wheels, found below and put on
# LD_LIBRARY_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/gpu-checks

build() {
  echo "==> building the GPU checks (--features cuda)"
  local log
  log=$(mktemp)
  # Release: a small binary without debug info, to carry to the GPU machine.
  cargo test -p glimpse-core --locked --release --features cuda --test gpu_parity --no-run 2>&1 | tee "$log"
  # cargo reports `Executable tests/gpu_parity.rs (target/.../gpu_parity-HASH)`.
  local binary
  binary=$(sed -n 's/.*Executable tests\/gpu_parity\.rs (\(.*\))$/\1/p' "$log" | tail -n 1)
  rm -f "$log"
  if [ -z "$binary" ] || [ ! -x "$binary" ]; then
    echo "test-gpu: cargo did not report the gpu_parity test binary" >&2
    exit 1
  fi
  cargo build -p glimpse-core --locked --release --features cuda --bin glimpse-bench
  mkdir -p "$out"
  cp "$binary" "$out/gpu_parity"
  cp target/release/glimpse-bench "$out/glimpse-bench"
  echo "built $out/gpu_parity and $out/glimpse-bench"
}

# Directories holding the CUDA 13 runtime libraries the backend loads.
cuda_library_dirs() {
  local dir
  for dir in "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 \
    /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$dir" ] && echo "$dir"
  done
  # NVIDIA's wheels (nvidia-cuda-nvrtc, nvidia-cublas, as PyTorch installs them).
  if command -v python3 >/dev/null; then
    python3 - <<'PY' 2>/dev/null || true
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit
for root in nvidia.__path__:
    for lib in glob.glob(os.path.join(root, "**", "lib*.so.13*"), recursive=True):
        print(os.path.dirname(lib))
PY
  fi
}

library_path() {
  cuda_library_dirs | awk '!seen[$0]++' | paste -sd: -
}

gpu_present() {
  [ -e /dev/nvidiactl ] || { command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q GPU; }
}

run() {
  if [ ! -x "$out/gpu_parity" ]; then
    echo "test-gpu: $out/gpu_parity is missing; run 'scripts/test-gpu.sh build' on a machine with cargo first" >&2
    exit 1
  fi
  if ! gpu_present; then
    echo "test-gpu: no NVIDIA GPU on this machine: the GPU checks did not run (this is not a pass)" >&2
    exit 1
  fi
  LD_LIBRARY_PATH="$(library_path)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
  command -v nvidia-smi >/dev/null && nvidia-smi -L
  echo "==> GPU checks (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)"
  GLIMPSE_FIXTURES="$PWD/test/fixtures" "$out/gpu_parity" --include-ignored --test-threads=1 --nocapture
}

case "${1:-all}" in
  build) build ;;
  run) run ;;
  # The CUDA library directories found here, joined for LD_LIBRARY_PATH (used by bench-gpu.sh).
  libs) library_path ;;
  all)
    build
    run
    ;;
  *)
    echo "usage: scripts/test-gpu.sh [build|run|libs]" >&2
    exit 1
    ;;
esac
