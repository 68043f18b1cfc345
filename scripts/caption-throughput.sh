#!/usr/bin/env bash
# Captioning throughput (images/min) of two settings measured in the same run on the same
# images: COUNT images (the example and fixture images, copied round-robin and turned by
# 0/90/180/270 degrees so that the copies differ) are captioned with each setting in turn,
# for ROUNDS rounds, the first setting going first in odd rounds and second in even ones,
# so that both see the same load on the machine.
#
#   scripts/caption-throughput.sh [REDUCE [CAPTION OPTION...]]
#       `--reduce none` against `--reduce REDUCE` (default mustdrop:keep=64)
#   scripts/caption-throughput.sh --batch N [REDUCE [CAPTION OPTION...]]
#       `--batch 1` against `--batch N`, both with `--reduce REDUCE` (default none)
#
# Further arguments go to every `glimpse caption` (e.g. --threads 2, --max-tokens 16).
# Environment: COUNT (default 32), ROUNDS (default 2), GLIMPSE_MODEL (default the built-in
# model). Run `npm run build` first.
#
# A rate is images over the sum of the records' `ms` (each image's wall time from the end
# of the previous one, decoding included; with --batch, its batch's time shared by the
# batch's captions), so loading the model is not counted. The mean generated tokens per
# image are printed too: a model that stops earlier with one setting captions faster for
# that reason alone.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --batch ]; then
  batch=${2:?--batch needs a number of images}
  shift 2
  reduce=${1:-none}
  shift || true
  labels=("batch 1" "batch $batch")
  settings=("--reduce $reduce --batch 1" "--reduce $reduce --batch $batch")
else
  reduce=${1:-mustdrop:keep=64}
  shift || true
  labels=("none" "$reduce")
  settings=("--reduce none" "--reduce $reduce")
fi
count=${COUNT:-32}
rounds=${ROUNDS:-2}

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
mkdir "$workdir/images"

node --input-type=module - "$workdir/images" "$count" <<'EOF'
import sharp from 'sharp';
const [dir, count] = process.argv.slice(2);
const sources = ['examples/images/shapes.png', 'rings-90x72.png', 'shapes-64x40.png', 'stripes-45x70.png'].map(
  (name) => (name.includes('/') ? name : `test/fixtures/images/${name}`),
);
for (let i = 0; i < Number(count); i += 1) {
  const turn = 90 * (Math.floor(i / sources.length) % 4);
  await sharp(sources[i % sources.length]).rotate(turn).png().toFile(`${dir}/img-${String(i).padStart(3, '0')}.png`);
}
EOF

caption() {
  local setting=$1 output=$2
  shift 2
  # shellcheck disable=SC2086 # a setting is several options
  node bin/glimpse.js caption $setting --output "$output" "$@" "$workdir/images" 2>"$workdir/stderr" || {
    cat "$workdir/stderr" >&2
    exit 1
  }
}

for round in $(seq 1 "$rounds"); do
  order=(0 1)
  [ $((round % 2)) -eq 0 ] && order=(1 0)
  echo "round $round/$rounds: ${labels[${order[0]}]}, then ${labels[${order[1]}]}" >&2
  for which in "${order[@]}"; do
    caption "${settings[$which]}" "$workdir/setting$which-$round.jsonl" "$@"
  done
done

node - "$workdir" "$rounds" "${labels[0]}" "${labels[1]}" <<'EOF'
const { readFileSync } = require('node:fs');
const [dir, rounds, ...labels] = process.argv.slice(2);
function measure(which) {
  let images = 0;
  let ms = 0;
  let tokens = 0;
  for (let round = 1; round <= Number(rounds); round += 1) {
    const lines = readFileSync(`${dir}/setting${which}-${round}.jsonl`, 'utf8').split('\n').filter(Boolean);
    for (const record of lines.map((line) => JSON.parse(line))) {
      if (record.error !== undefined) throw new Error(`${record.path}: ${record.error}`);
      images += 1;
      ms += record.ms;
      tokens += record.generated_tokens;
    }
  }
  return { images, perMinute: (images / ms) * 60_000, tokens: tokens / images };
}
const [first, second] = [measure(0), measure(1)];
const width = Math.max(...labels.map((label) => label.length));
const row = (name, m) =>
  `${name.padEnd(width)}  ${m.perMinute.toFixed(1).padStart(8)} images/min` +
  `  (${m.images} images, ${m.tokens.toFixed(1)} generated tokens each)`;
console.log(row(labels[0], first));
console.log(row(labels[1], second));
console.log(`ratio ${labels[1]} / ${labels[0]}: ${(second.perMinute / first.perMinute).toFixed(2)}`);
EOF
