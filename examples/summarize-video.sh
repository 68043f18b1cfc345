#!/usr/bin/env bash
# Summarizes examples/videos/bouncing-ball.mp4 from 4 frames and captions each frame on
# its own, then prints the captions with their times.
#
# It runs as-is on the built-in model, whose weights are random: the pipeline is real,
# the words are noise. For real answers, pass a LLaVA checkpoint:
#   examples/summarize-video.sh --model ~/models/llava-1.5-7b-hf
set -euo pipefail

here="$(dirname "$0")"
glimpse() { node "$here/../bin/glimpse.js" "$@"; }
video="$here/videos/bouncing-ball.mp4"
captions="$(mktemp)"
trap 'rm -f "$captions"' EXIT

echo "== Summary (frames and statistics on stderr)"
# The built-in model's context window holds at most 6 frames with this prompt; --frames
# keeps the prompt inside it.
glimpse video --frames 4 --max-tokens 48 --per-frame "$captions" --stats "$@" "$video"

echo
echo "== Each frame on its own"
node -e '
  const fs = require("node:fs");
  for (const line of fs.readFileSync(process.argv[1], "utf8").split("\n")) {
    if (line === "") continue;
    const frame = JSON.parse(line);
    console.log(`${frame.timestamp_s.toFixed(2)} s: ${frame.caption}`);
  }
' "$captions"
