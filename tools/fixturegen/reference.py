"""Reference outputs computed by transformers itself: prompt, token ids, pixels, logits, greedy tokens."""

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, LlavaForConditionalGeneration, LlavaProcessor

NEW_TOKENS = 16
# The repetition penalty of the penalised greedy run: strong enough to change the greedy tokens.
REPETITION_PENALTY = 1.3
# The penalised run's top two scores must differ by this much at every step, so that rounding
# differences between implementations cannot change a token.
MIN_PENALISED_MARGIN = 1e-3


@dataclass
class Prompt:
    text: str
    inputs: dict  # input_ids, attention_mask, pixel_values (and NeXT's image_sizes) as tensors


@dataclass
class Generation:
    last_logits: torch.Tensor  # prefill logits at the last prompt position, f32
    greedy_ids: list[int]
    step_logits: list[torch.Tensor]  # raw logits that chose each greedy token


def load_images(paths: list[Path]) -> list[Image.Image]:
    images = []
    for path in paths:
        with Image.open(path) as image:
            image.load()
            images.append(image.copy())
    return images


def render_prompt(processor: LlavaProcessor, messages: list[dict], template_in_tokenizer: bool) -> str:
    # LlavaProcessor does not fall back to the tokenizer's template, so a checkpoint that keeps it in
    # tokenizer_config.json is rendered through the tokenizer, as its users would have to.
    renderer = processor.tokenizer if template_in_tokenizer else processor
    return renderer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prepare(processor: LlavaProcessor, messages, images, template_in_tokenizer: bool) -> Prompt:
    text = render_prompt(processor, messages, template_in_tokenizer)
    inputs = processor(text=text, images=images, return_tensors="pt")
    return Prompt(text=text, inputs=dict(inputs))


def load_checkpoint(directory: Path, dtype: torch.dtype = torch.float32) -> LlavaForConditionalGeneration:
    """The class config.json names (LLaVA or LLaVA-NeXT)."""
    model = AutoModelForImageTextToText.from_pretrained(directory, dtype=dtype, attn_implementation="eager")
    return model.eval()


def load_processor(directory: Path) -> LlavaProcessor:
    processor = AutoProcessor.from_pretrained(directory)
    name = type(processor.image_processor).__name__
    if not name.endswith("Pil"):
        raise RuntimeError(f"{directory} loaded image processor {name}; the fixtures need the PIL backend")
    return processor


def _cast_pixels(inputs: dict, dtype: torch.dtype) -> dict:
    return {key: value.to(dtype) if key == "pixel_values" else value for key, value in inputs.items()}


@torch.no_grad()
def generate(model: LlavaForConditionalGeneration, inputs: dict, eos_token_id: int) -> Generation:
    """Prefill logits and exactly NEW_TOKENS greedy tokens (end-of-sequence suppressed, never a stop)."""
    dtype = model.dtype
    inputs = _cast_pixels(inputs, dtype)
    last_logits = model(**inputs).logits[0, -1].float()
    output = model.generate(
        **inputs,
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos_token_id,
        output_logits=True,
        return_dict_in_generate=True,
    )
    prompt_length = inputs["input_ids"].shape[1]
    greedy_ids = output.sequences[0, prompt_length:].tolist()
    if len(greedy_ids) != NEW_TOKENS:
        raise RuntimeError(f"generate returned {len(greedy_ids)} tokens, expected {NEW_TOKENS}")
    step_logits = [step[0].float() for step in output.logits]
    return Generation(last_logits=last_logits, greedy_ids=greedy_ids, step_logits=step_logits)


@torch.no_grad()
def penalised_record(model: LlavaForConditionalGeneration, inputs: dict, eos_token_id: int, name: str) -> dict:
    """NEW_TOKENS greedy tokens under transformers' repetition penalty (a logits processor over every id
    of the sequence so far, the prompt's image tokens included), end-of-sequence suppressed as in
    `generate`."""
    output = model.generate(
        **_cast_pixels(inputs, model.dtype),
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos_token_id,
        repetition_penalty=REPETITION_PENALTY,
        output_scores=True,
        return_dict_in_generate=True,
    )
    ids = output.sequences[0, inputs["input_ids"].shape[1] :].tolist()
    margin = min_top2_margin([step[0].float() for step in output.scores])
    if margin < MIN_PENALISED_MARGIN:
        raise RuntimeError(f"{name}: the penalised greedy run has a top-2 margin of only {margin:.2e}")
    if eos_token_id in ids:
        raise RuntimeError(f"{name}: the penalised greedy run chose end-of-sequence")
    return {"penalty": REPETITION_PENALTY, "greedy_ids": ids, "min_top2_margin": round(margin, 6)}


def min_top2_margin(step_logits: list[torch.Tensor]) -> float:
    """Smallest gap between the best and second-best logit over the greedy steps."""
    margins = []
    for logits in step_logits:
        top = torch.topk(logits, 2).values
        margins.append((top[0] - top[1]).item())
    return min(margins)
