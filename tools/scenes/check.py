"""Scores a saved scene model with transformers on an eval.jsonl, per kind of question.

    cd tools && ../.venv/bin/python -m scenes.check --model ../models/default --data ../examples/scenes/eval.jsonl

The reference the engine's `glimpse eval` (no reduction) is compared against: the same greedy
answers, scored by the same rules.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import unicodedata
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration


def normalise(text: str) -> str:
    """The rules of `glimpse eval` (src/eval/score.ts): lowercase, whitespace collapsed, trailing
    punctuation and one leading article removed."""
    text = re.sub(r"\s+", " ", text.lower()).strip()
    while text and unicodedata.category(text[-1]).startswith("P"):
        text = text[:-1]
    return re.sub(r"^(a|an|the) ", "", text.rstrip())


def correct(answer: str, line: dict) -> bool:
    said = normalise(answer)
    if "answers" in line:
        accepted = {normalise(a) for a in line["answers"]}
        return said in accepted or normalise(said.split(" ")[0]) in accepted
    return all(re.search(rf"(?<![^\W_]){re.escape(normalise(p))}(?![^\W_])", said) for p in line["must_mention"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--show-wrong", action="store_true")
    parser.add_argument("--answers", type=Path, help="write each line's answer here, one JSON string per line")
    args = parser.parse_args()

    processor = AutoProcessor.from_pretrained(args.model)
    model = LlavaForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32).eval()
    lines = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    if args.limit:
        lines = lines[: args.limit]
    right, total = collections.Counter(), collections.Counter()
    answers = []
    for line in lines:
        image = Image.open(args.data.parent / line["image"]).convert("RGB")
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": line["question"]}]}]
        prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
        inputs = processor(images=image, text=prompt, return_tensors="pt")
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=line.get("max_tokens", 16), do_sample=False)
        answer = processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        answers.append(answer)
        ok = correct(answer, line)
        right[line["kind"]] += ok
        total[line["kind"]] += 1
        if args.show_wrong and not ok:
            print(f"  wrong: {line['image']} {line['question']!r} -> {answer!r} (want {line.get('answers') or line['must_mention']})")
    if args.answers:
        args.answers.write_text("".join(json.dumps(a) + "\n" for a in answers))
    for kind in sorted(total):
        print(f"{kind:10s} {right[kind] / total[kind]:6.1%}  ({right[kind]}/{total[kind]})")
    questions = sum(total[k] for k in total if k != "caption")
    print(f"{'questions':10s} {sum(right[k] for k in total if k != 'caption') / max(1, questions):6.1%}  ({questions})")


if __name__ == "__main__":
    main()
