#!/usr/bin/env bash
# Runs every CUDA kernel on the CPU, through the C++ emulation of CUDA (feature
# kernel-emu, needs g++), against the CPU backend. No GPU or CUDA toolkit involved. (The
# launch-shape and kernel-source tests need no feature and run with the rest.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test -p glimpse-core --locked --features kernel-emu --lib backend::cuda::emu::
