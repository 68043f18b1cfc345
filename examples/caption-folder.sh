#!/usr/bin/env bash
# Captions every image in a folder into a JSONL file, one line per image.
#
#   examples/caption-folder.sh [OUTPUT.jsonl] [FOLDER]
#
# OUTPUT defaults to captions.jsonl in a new temporary folder, FOLDER to examples/images.
# Runs as-is on the built-in model (random weights: the captions are noise); set
# GLIMPSE_MODEL to a LLaVA checkpoint for real ones. Running it again on the same OUTPUT
# captions only images that are new or changed since (--resume).
set -euo pipefail

here=$(dirname "$0")
output=${1:-$(mktemp -d)/captions.jsonl}
folder=${2:-$here/images}

status=0
node "$here/../bin/glimpse.js" caption --recursive --resume --output "$output" "$folder" || status=$?
# Exit code 2: some images could not be captioned; their lines hold `error` and `code`.
if [ "$status" -ne 0 ] && [ "$status" -ne 2 ]; then
  exit "$status"
fi

echo "captions: $output" >&2
# One line per image: its path and caption (or its error), without needing jq.
node -e '
  const lines = require("node:fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean);
  for (const { path, caption, error } of lines.map((line) => JSON.parse(line))) {
    console.log(`${path}\t${error === undefined ? caption : `error: ${error}`}`);
  }
' "$output"
exit "$status"
