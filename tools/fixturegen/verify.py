"""Independent check of committed fixtures: reload every model directory with transformers and
compare with the numbers stored in expected/*.json (after their rounding to 8 digits)."""

import json
from pathlib import Path

import torch

from .build import pixel_record
from .catalogue import FIXTURES
from .reference import NEW_TOKENS, generate, load_checkpoint, load_images, load_processor, penalised_record, prepare
from .tokenizer_cases import build_cases

# Stored floats carry 8 significant digits; allow a little more than that rounding.
ROUNDING_TOLERANCE = 1e-6


def verify_all(out_dir: Path) -> list[str]:
    """Returns one line per fixture describing what was checked; raises on the first mismatch."""
    lines = []
    for fixture in FIXTURES:
        expected = json.loads((out_dir / "expected" / f"{fixture.name}.json").read_text(encoding="utf-8"))
        lines.append(_verify_model(out_dir, fixture, expected))
    lines.append(_verify_tokenizer_cases(out_dir))
    return lines


def _verify_model(out_dir: Path, fixture, expected: dict) -> str:
    directory = out_dir / "models" / expected["model"]
    processor = load_processor(directory)
    images = load_images([out_dir / path for path in expected["images"]])
    in_tokenizer = expected["chat_template_file"] == "tokenizer_config.json"
    prompt = prepare(processor, expected["messages"], images, in_tokenizer)
    _check(prompt.text == expected["prompt_text"], fixture.name, "prompt_text")
    _check(prompt.inputs["input_ids"][0].tolist() == expected["input_ids"], fixture.name, "input_ids")
    image_tokens = expected["input_ids"].count(expected["image_token_index"])
    if fixture.spec.is_next:
        _check(image_tokens == sum(expected["image_tokens"]), fixture.name, "image token count")
        _check(prompt.inputs["image_sizes"].tolist() == expected["image_sizes"], fixture.name, "image_sizes")
    else:
        _check(image_tokens == expected["num_image_tokens_per_image"] * len(images), fixture.name, "image token count")

    pixels = prompt.inputs["pixel_values"]
    _check(list(pixels.shape) == expected["pixel_values"]["shape"], fixture.name, "pixel_values shape")
    if fixture.spec.is_next:
        # Crop means are recomputed the way build.py recorded them.
        recorded = pixel_record(fixture, prompt, pixels)
        stored = expected["pixel_values"]
        pairs = list(zip(recorded["crop_mean"] + recorded["crop_mean_abs"], stored["crop_mean"] + stored["crop_mean_abs"]))
        _check(len(recorded["crop_mean"]) == len(stored["crop_mean"]), fixture.name, "crop count")
        pixel_delta = max(abs(a - b) for a, b in pairs)
        _check(pixel_delta <= ROUNDING_TOLERANCE, fixture.name, "crop pixel means")
    else:
        stored_pixels = torch.tensor(expected["pixel_values"]["data"]).reshape(pixels.shape)
        pixel_delta = (pixels - stored_pixels).abs().max().item()
        _check(pixel_delta <= ROUNDING_TOLERANCE * max(1.0, stored_pixels.abs().max().item()), fixture.name, "pixel_values")

    model = load_checkpoint(directory, torch.float32)
    generation = generate(model, prompt.inputs, processor.tokenizer.eos_token_id)
    stored_logits = torch.tensor(expected["last_logits"])
    max_abs = stored_logits.abs().max().item()
    logit_delta = (generation.last_logits - stored_logits).abs().max().item()
    _check(logit_delta <= ROUNDING_TOLERANCE * max_abs, fixture.name, f"last_logits (max delta {logit_delta:.2e})")
    _check(abs(max_abs - expected["max_abs_logit"]) <= ROUNDING_TOLERANCE * max_abs, fixture.name, "max_abs_logit")
    _check(generation.greedy_ids == expected["greedy_ids"], fixture.name, "greedy_ids")
    _check(len(expected["greedy_ids"]) == NEW_TOKENS, fixture.name, "greedy length")
    penalised = penalised_record(model, prompt.inputs, processor.tokenizer.eos_token_id, fixture.name)
    stored = expected["repetition_penalty"]
    same = (penalised["penalty"], penalised["greedy_ids"]) == (stored["penalty"], stored["greedy_ids"])
    _check(same, fixture.name, "repetition_penalty greedy_ids")
    text = processor.tokenizer.decode(generation.greedy_ids, skip_special_tokens=True)
    _check(text == expected["greedy_text"], fixture.name, "greedy_text")
    if "greedy_ids_native_bf16" in expected:
        native = generate(load_checkpoint(directory, torch.bfloat16), prompt.inputs, processor.tokenizer.eos_token_id)
        _check(native.greedy_ids == expected["greedy_ids_native_bf16"], fixture.name, "greedy_ids_native_bf16")
    return (
        f"{fixture.name}: prompt, {len(expected['input_ids'])} ids, pixels (max delta {pixel_delta:.1e}), "
        f"logits (max delta {logit_delta:.1e} of max {max_abs:.2f}), {NEW_TOKENS} greedy tokens match, "
        f"also with repetition penalty {stored['penalty']}"
    )


def _verify_tokenizer_cases(out_dir: Path) -> str:
    expected = json.loads((out_dir / "expected" / "tokenizer-cases.json").read_text(encoding="utf-8"))
    tokenizer_json = out_dir / expected["tokenizer"]
    tokenizer = load_processor(tokenizer_json.parent).tokenizer
    _check(build_cases(tokenizer, tokenizer_json) == expected, "tokenizer-cases", "cases")
    return f"tokenizer-cases: {len(expected['cases'])} cases and the stream case match"


def _check(ok: bool, name: str, what: str) -> None:
    if not ok:
        raise RuntimeError(f"{name}: {what} does not match the stored expectation")
