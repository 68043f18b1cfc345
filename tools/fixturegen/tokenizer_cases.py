"""Golden encode/decode cases for the fixture tokenizer, from transformers' LlamaTokenizer."""

from pathlib import Path

from tokenizers import Tokenizer

TRICKY_TEXTS = [
    "What is in this image?",
    "Describe the red circle and the blue square.",
    "",
    " ",
    "  two leading spaces",
    "trailing spaces  ",
    "a  b   c",
    "line one\nline two\n\nlast line\n",
    "tab\tseparated",
    "café au lait",
    "日本の画像",
    "🙂 smile",
    "Ünïcödé ÀÉÎ ß",
    "USER: <image>\nWhat is this? ASSISTANT:",
    "<image><image>text after images",
    "before<image>after",
    "<s> and </s> written in text",
    "<0x41> is not a byte token here",
    "Digits 0123456789 and 3.14159, 42!",
    "It's (almost) [all] {punctuation}: ?!.,;'\"-_/\\|@#$%^&*+=~`",
]

STREAM_TEXT = "a 🙂 b"


def build_cases(tokenizer, tokenizer_json: Path) -> dict:
    """Cases for the tokenizer saved at `tokenizer_json`, checked against the `tokenizers` library."""
    raw = Tokenizer.from_file(str(tokenizer_json))
    cases = []
    for text in TRICKY_TEXTS:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        ids_no_special = tokenizer(text, add_special_tokens=False)["input_ids"]
        case = {
            "text": text,
            "ids": ids,
            "ids_no_special": ids_no_special,
            "tokens": tokenizer.convert_ids_to_tokens(ids),
            "decoded": tokenizer.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": tokenizer.decode(ids, skip_special_tokens=True),
        }
        _check_raw(raw, case)
        cases.append(case)

    stream_ids = tokenizer(STREAM_TEXT, add_special_tokens=False)["input_ids"]
    stream = {
        "text": STREAM_TEXT,
        "ids": stream_ids,
        "tokens": tokenizer.convert_ids_to_tokens(stream_ids),
        "decoded": tokenizer.decode(stream_ids),
        # decode(ids[:k]) for k = 1..len(ids): what a detokenizer sees as tokens arrive one at a time;
        # a prefix that ends inside a multi-byte character shows U+FFFD, which must not be printed.
        "prefix_decodes": [tokenizer.decode(stream_ids[: k + 1]) for k in range(len(stream_ids))],
    }
    if stream["decoded"] != STREAM_TEXT:
        raise RuntimeError(f"stream case does not round-trip: {stream['decoded']!r}")
    return {
        "tokenizer": "models/tiny-llava-mha/tokenizer.json",
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "unk_token_id": tokenizer.unk_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "image_token_id": tokenizer.convert_tokens_to_ids("<image>"),
        "cases": cases,
        "stream": stream,
    }


def _check_raw(raw: Tokenizer, case: dict) -> None:
    """transformers rebuilds the Llama pipeline on load; make sure the file alone behaves the same."""
    text = case["text"]
    if raw.encode(text, add_special_tokens=True).ids != case["ids"]:
        raise RuntimeError(f"tokenizer.json encodes {text!r} differently from transformers")
    if raw.encode(text, add_special_tokens=False).ids != case["ids_no_special"]:
        raise RuntimeError(f"tokenizer.json encodes {text!r} (no specials) differently from transformers")
    if raw.decode(case["ids"], skip_special_tokens=False) != case["decoded"]:
        raise RuntimeError(f"tokenizer.json decodes {text!r} differently from transformers")
    if raw.decode(case["ids"], skip_special_tokens=True) != case["decoded_skip_special"]:
        raise RuntimeError(f"tokenizer.json decodes {text!r} (skipping specials) differently from transformers")
