#!/usr/bin/env bash
# Captioning throughput (images/min) without and with a visual-token reduction, measured in
# the same run on the same images: COUNT images (the example and fixture images, copied
# round-robin and turned by 0/90/180/270 degrees so that the copies differ) are captioned
# with `--reduce none` and with REDUCE, alternating for ROUNDS rounds so that both see the
# same load on the machine.
#
#   scripts/caption-throughput.sh [REDUCE [CAPTION OPTION...]]
#
# REDUCE defaults to mustdrop:keep=64; further arguments go to every `glimpse caption`
# (e.g. --threads 2, --max-tokens 16). Environment: COUNT (default 32), ROUNDS (default 2),
# GLIMPSE_MODEL (default the built-in model). Run `npm run build` first.
#
# A rate is images over the sum of the records' `ms` (each image's wall time from the end
# of the previous one, decoding included), so loading the model is not counted. The mean
# generated tokens per image are printed too: a model that stops earlier with one setting
# captions faster for that reason alone.
set -euo pipefail
cd "$(dirname "$0")/.."

reduce=${1:-mustdrop:keep=64}
shift || true
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
  local spec=$1 output=$2
  shift 2
  node bin/glimpse.js caption --reduce "$spec" --output "$output" "$@" "$workdir/images" 2>"$workdir/stderr" || {
    cat "$workdir/stderr" >&2
    exit 1
  }
}

for round in $(seq 1 "$rounds"); do
  echo "round $round/$rounds: none, then $reduce" >&2
  caption none "$workdir/none-$round.jsonl" "$@"
  caption "$reduce" "$workdir/reduced-$round.jsonl" "$@"
done

node - "$workdir" "$rounds" "$reduce" <<'EOF'
const { readFileSync } = require('node:fs');
const [dir, rounds, reduce] = process.argv.slice(2);
function measure(prefix) {
  let images = 0;
  let ms = 0;
  let tokens = 0;
  for (let round = 1; round <= Number(rounds); round += 1) {
    const lines = readFileSync(`${dir}/${prefix}-${round}.jsonl`, 'utf8').split('\n').filter(Boolean);
    for (const record of lines.map((line) => JSON.parse(line))) {
      if (record.error !== undefined) throw new Error(`${record.path}: ${record.error}`);
      images += 1;
      ms += record.ms;
      tokens += record.generated_tokens;
    }
  }
  return { images, perMinute: (images / ms) * 60_000, tokens: tokens / images };
}
const none = measure('none');
const reduced = measure('reduced');
const row = (name, m) =>
  `${name.padEnd(Math.max(reduce.length, 4))}  ${m.perMinute.toFixed(1).padStart(8)} images/min` +
  `  (${m.images} images, ${m.tokens.toFixed(1)} generated tokens each)`;
console.log(row('none', none));
console.log(row(reduce, reduced));
console.log(`ratio ${reduce} / none: ${(reduced.perMinute / none.perMinute).toFixed(2)}`);
EOF
