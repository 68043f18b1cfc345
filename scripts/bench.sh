#!/usr/bin/env bash
# Benchmarks (not tests). Each glimpse-bench run loads one model once and measures every
# --reduce spec on the same prompt, printing one JSON object on stdout and a table of
# ratios to the first spec (none) on stderr.
#
#  1. the fixture model (a quick sanity run);
#  2. reductions on a random-weight checkpoint with llava-1.5-7b's shapes: the full
#     24-layer CLIP-L/336 tower (576 image tokens) and 20 of the 32 Vicuna-7B layers (enough
#     for every method's filter layers), bf16, about 9 GB written to a temporary folder;
#  3. decode KV-cache bytes after 1,000 generated tokens with and without Dynamic-LLaVA's
#     online admission (4 language layers, so it finishes in minutes);
#  4. LLaVA-NeXT: a random-weight checkpoint with llava-v1.6-vicuna-7b's shapes (the same
#     layers, 20 of them, plus the tile grids), an image filling the 2×2 grid (2,880 patch
#     tokens and 48 row ends), every method at 320 tokens (Dynamic-LLaVA at the same share).
# Extra arguments (e.g. --threads 4) go to every run.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p glimpse-core --bin glimpse-bench >&2
bench=./target/release/glimpse-bench
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

"$bench" --model test/fixtures/models/tiny-llava-mha "$@"

methods=(--reduce none)
for keep in 192 128 64; do
  methods+=(--reduce "fastv:k=2,keep=$keep" --reduce "sparsevlm:keep=$keep" --reduce "mustdrop:keep=$keep")
done
methods+=(--reduce dynamic)
"$bench" --synthetic-7b 20 --vision-layers 24 --workdir "$workdir/synthetic-7b-20" --decode-tokens 4 "${methods[@]}" "$@"
rm -rf "$workdir/synthetic-7b-20"

"$bench" --synthetic-7b 4 --vision-layers 24 --workdir "$workdir/synthetic-7b-4" --decode-tokens 1000 \
  --reduce dynamic:text=off --reduce dynamic "$@"
rm -rf "$workdir/synthetic-7b-4"

# 320 of the 2,928 tokens, as MustDrop's LLaVA-NeXT result.
next_methods=(--reduce none --reduce "fastv:k=2,keep=320" --reduce "sparsevlm:keep=320" --reduce "mustdrop:keep=320")
next_methods+=(--reduce "dynamic:keep_rate=0.1093")
"$bench" --synthetic-next-7b 20 --vision-layers 24 --workdir "$workdir/synthetic-next-7b-20" --decode-tokens 4 \
  "${next_methods[@]}" "$@"
