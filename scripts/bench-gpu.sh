#!/usr/bin/env bash
# glimpse against transformers on one GPU, LLaVA-1.5-7B shapes in fp16 with random weights:
# decode tokens/s against the weight-bandwidth bound, time to first token without a
# reduction, with mustdrop:keep=64 and with dynamic, and KV bytes after 2000 generated
# tokens with and without Dynamic-LLaVA's decode-time admission.
#
# Runs on the GPU machine from a copy of the repository holding target/gpu-checks/ (made
# by `scripts/test-gpu.sh build`); the transformers peer needs python3 with torch and
# transformers there. Writes a ~14 GB checkpoint to $WORKDIR (default /tmp).
#
#   scripts/bench-gpu.sh [DECODE_TOKENS]      (default 2000)
set -euo pipefail
cd "$(dirname "$0")/.."

decode=${1:-2000}
workdir=${WORKDIR:-/tmp}/glimpse-bench-7b
bench=target/gpu-checks/glimpse-bench
if [ ! -x "$bench" ]; then
  echo "bench-gpu: $bench is missing; run 'scripts/test-gpu.sh build' on a machine with cargo first" >&2
  exit 1
fi
# The CUDA library directories, as the GPU checks find them.
LD_LIBRARY_PATH=$(bash scripts/test-gpu.sh libs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH

echo "==> glimpse (32 text layers, 24 vision layers, f16 weights, $decode decode tokens)"
"$bench" --synthetic-7b 32 --vision-layers 24 --workdir "$workdir" --device cuda --dtype f16 \
  --text-tokens 32 --decode-tokens "$decode" \
  --reduce none --reduce mustdrop:keep=64 --reduce dynamic | tee "$workdir.glimpse.json"

echo "==> transformers, same checkpoint, prompt and pixels"
python3 tools/bench_transformers.py --model "$workdir" --text-tokens 32 --decode-tokens "$decode" \
  | tee "$workdir.transformers.json"
