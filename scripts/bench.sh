#!/usr/bin/env bash
# Throughput benchmark (not a test): image encode, prefill and decode speed and peak
# memory, for the embedded fixture model and for a random-weight checkpoint with
# llava-1.5-7b's layer shapes (2 language layers, the full 24-layer CLIP-L/336 tower, bf16,
# about 2 GB written to a temporary folder). One JSON object per model on stdout.
# Extra arguments (e.g. --threads 4, --decode-tokens 64) go to every run.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p glimpse-core --bin glimpse-bench >&2
bench=./target/release/glimpse-bench
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

"$bench" --model test/fixtures/models/tiny-llava-mha "$@"
"$bench" --synthetic-7b 2 --vision-layers 24 --workdir "$workdir/synthetic-7b" "$@"
