#!/usr/bin/env bash
# Three ways to ask about examples/images/shapes.png: a plain question, the --json event
# stream read without jq, and a prompt from standard input.
#
# It runs as-is on the built-in model, whose weights are random: the pipeline is real,
# the words are noise. For real answers, pass a LLaVA checkpoint:
#   examples/ask.sh --model ~/models/llava-1.5-7b-hf
set -euo pipefail

here="$(dirname "$0")"
glimpse() { node "$here/../bin/glimpse.js" "$@"; }
image="$here/images/shapes.png"

echo "== A question"
glimpse ask --max-tokens 32 "$@" "$image" "What shapes are in this picture, and what colours are they?"

echo
echo "== --json: the answer from the done event, and the token count"
events="$(glimpse ask --json --max-tokens 32 "$@" "$image" "Describe the picture.")"
node -e '
  const events = process.argv[1].split("\n").map((line) => JSON.parse(line));
  const done = events.find((event) => event.type === "done");
  console.log(`answer (${done.finish_reason}): ${done.text}`);
' "$events"
echo "token events: $(grep -c '"type":"token"' <<< "$events")"

echo
echo "== The prompt from standard input"
echo "Which shape is largest?" | glimpse ask --max-tokens 32 "$@" "$image" -
