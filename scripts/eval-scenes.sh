#!/usr/bin/env bash
# Accuracy against reduction on the held-out scenes (examples/scenes), as the README reports it.
#
#   scripts/eval-scenes.sh [MODEL] [OUT] [EVAL OPTIONS...]
#
# MODEL defaults to the built-in model, OUT to eval-scenes/; further options go to every
# `glimpse eval` (`--limit 50` for a quick look, `--threads N`).
#
# 1. `glimpse eval` under no reduction, FastV, SparseVLM and MustDrop at 192 / 128 / 64 kept
#    tokens, and Dynamic-LLaVA when the model carries its predictors: OUT/table.txt (with the
#    accuracy per kind of question), OUT/results.json (every answer), OUT/accuracy.png.
# 2. MustDrop's output-aware decode policy on the caption lines, the only answers long enough
#    for it to act: caption accuracy, tokens evicted and the final KV cache for each eviction
#    threshold and warm-up, at 64 kept tokens: OUT/decode-policy.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/default}
out=${2:-eval-scenes}
shift $(($# < 2 ? $# : 2))
glimpse=(node bin/glimpse.js)
data=examples/scenes/eval.jsonl
mkdir -p "$out"

specs=(--reduce none)
for method in fastv sparsevlm mustdrop; do
  for keep in 192 128 64; do specs+=(--reduce "$method:keep=$keep"); done
done
if [[ -f "$model/predictors.safetensors" ]]; then specs+=(--reduce dynamic); fi
"${glimpse[@]}" eval --model "$model" "$@" "${specs[@]}" --by-kind --json "$out/results.json" \
  --plot "$out/accuracy.png" "$data" | tee "$out/table.txt"

# The caption lines, with image paths made absolute so the file can live in OUT.
captions="$out/captions.jsonl"
node -e '
const fs = require("fs"), path = require("path");
const [data, out] = process.argv.slice(1);
const lines = fs.readFileSync(data, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
const captions = lines.filter((l) => l.kind === "caption").map((l) => ({ ...l, image: path.resolve(path.dirname(data), l.image) }));
fs.writeFileSync(out, captions.map((l) => JSON.stringify(l)).join("\n") + "\n");
' "$data" "$captions"

policy=(--reduce mustdrop:keep=64,evict=0)
for evict in 0.1 0.25 0.5 1; do
  for warmup in 4 8 16 32; do policy+=(--reduce "mustdrop:keep=64,evict=$evict,warmup=$warmup"); done
done
"${glimpse[@]}" eval --model "$model" "$@" "${policy[@]}" --json "$out/decode-policy.json" "$captions" >/dev/null
node -e '
const run = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const rows = new Map();
for (const r of run.results) {
  const row = rows.get(r.reduce) ?? { right: 0, n: 0, evicted: 0, tokens: 0, kv: 0 };
  row.right += r.correct ? 1 : 0;
  row.n += 1;
  row.evicted += r.stats.decode_evicted ?? 0;
  row.tokens += r.stats.generated_tokens;
  row.kv += r.stats.kv_bytes_final;
  rows.set(r.reduce, row);
}
console.log("reduce                                    captions  evicted/answer  generated/answer  kv_final_KiB");
for (const [spec, r] of rows) {
  const cells = [`${r.right}/${r.n}`, (r.evicted / r.n).toFixed(1), (r.tokens / r.n).toFixed(1), (r.kv / r.n / 1024).toFixed(1)];
  console.log(spec.padEnd(42) + cells[0].padStart(8) + cells[1].padStart(16) + cells[2].padStart(18) + cells[3].padStart(14));
}
' "$out/decode-policy.json" | tee "$out/decode-policy.txt"
