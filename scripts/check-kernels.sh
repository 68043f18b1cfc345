#!/usr/bin/env bash
# Checks that every CUDA kernel compiles, on a machine without GPU or CUDA toolkit: NVRTC
# and ptxas 13.0 come from NVIDIA's PyPI wheels (cached in .cache/cu13), the `cuda`
# feature build compiles each kernel file for sm_80 and sm_90 through the backend's own
# NVRTC path (test kernels_compile, made to fail if NVRTC cannot be loaded), and ptxas
# then assembles the PTX, which catches errors NVRTC leaves to the assembler and reports
# registers and spills per kernel.
set -euo pipefail
cd "$(dirname "$0")/.."

wheels=.cache/cu13
cuda="$PWD/$wheels/nvidia/cu13"
if [ ! -e "$cuda/lib/libnvrtc.so.13" ] || [ ! -x "$cuda/bin/ptxas" ]; then
  # --no-deps: the nvcc wheel is wanted for ptxas alone, which needs none of the
  # (unpinned, newer) packages it lists.
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$wheels" \
    "nvidia-cuda-nvrtc==13.0.*" "nvidia-cuda-nvcc==13.0.*"
fi

# libnvrtc finds libnvrtc-builtins through the loader path.
export LD_LIBRARY_PATH="$cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export GLIMPSE_REQUIRE_NVRTC=1
export GLIMPSE_PTX_DIR="$PWD/target/kernels-ptx"
rm -rf "$GLIMPSE_PTX_DIR"
cargo test -p glimpse-core --locked --features cuda --lib backend::cuda::nvrtc::

echo "==> ptxas"
for ptx in "$GLIMPSE_PTX_DIR"/*.ptx; do
  arch=${ptx%.ptx}
  arch=${arch##*.}
  # One line per kernel: name, registers, spill bytes.
  "$cuda/bin/ptxas" -arch="$arch" -v "$ptx" -o /dev/null 2>&1 | awk -v arch="$arch" '
    /Compiling entry function/ { name = $7; gsub(/\047/, "", name) }
    /spill stores/ { spill = $5 + $9 }
    /Used [0-9]+ registers/ { printf "%-6s %-28s %3d registers, %d bytes spilled\n", arch, name, $5, spill }
    /error/ { print; failed = 1 }
    END { exit failed }'
done
