"""Builds the tiny-llava-reduce model directory, checks the reference against transformers on it, and
turns reference runs into expected/reduce-<case>.json records."""

from dataclasses import dataclass
from pathlib import Path

import torch

from .build import _quality_problem, _same_prompt, _save, control_token_ids
from .jsonfmt import round_float
from .models import build_processor
from .reduce_catalogue import MODEL_NAME, MODEL_SEED, NEW_TOKENS, REDUCE_FIXTURE, TOKENIZER_SEED
from .reduce_margins import MIN_MARGIN
from .reduce_model import build_reduce_config, build_reduce_model
from .reduce_predictor_fixture import reduce_predictors, save_predictor_file
from .reduce_reference import ReferencePrompt, run_reduction
from .reduce_weights import ReferenceModel, load_reference_model
from .reference import Prompt, generate, load_checkpoint, load_images, load_processor, prepare
from .tokenizer import build_tokenizer

# Reference (f64) against transformers (f32 eager) on the unreduced model, as a fraction of max|logit|.
TRANSFORMERS_TOLERANCE = 1e-5
# Runs that must reproduce the unreduced one: they exercise the row bookkeeping with nothing dropped.
NO_OP_SPECS = ("fastv:k=2,keep=144", "fastv:k=2,keep=144,positions=compact", "mustdrop:g=0,i=0,merge=off,evict=0")


@dataclass
class ReduceFixture:
    directory: Path
    prompt: Prompt  # from the processor saved in the directory
    reference_prompt: ReferencePrompt
    model: ReferenceModel
    tokenizer: object


def build_model_dir(fixtures_dir: Path) -> ReduceFixture:
    """Writes models/tiny-llava-reduce (weights, processor, predictors side file) and loads it back."""
    tokenizer = build_tokenizer(TOKENIZER_SEED)
    processor = build_processor(REDUCE_FIXTURE.spec, tokenizer, REDUCE_FIXTURE.chat_template)
    images = load_images([fixtures_dir / "images" / name for name in REDUCE_FIXTURE.images])
    prompt = prepare(processor, REDUCE_FIXTURE.messages, images, template_in_tokenizer=False)
    config = build_reduce_config(len(tokenizer), processor.image_token_id, tokenizer.pad_token_id)
    controls = control_token_ids(tokenizer)
    model = build_reduce_model(config, MODEL_SEED, controls)
    generation = generate(model, prompt.inputs, tokenizer.eos_token_id)
    problem = _quality_problem(model, REDUCE_FIXTURE, prompt, generation, controls)
    if problem is not None:
        raise RuntimeError(f"{MODEL_NAME}: seed {MODEL_SEED} gives a weak model ({problem})")
    directory = fixtures_dir / "models" / MODEL_NAME
    _save(REDUCE_FIXTURE, model, processor, directory)
    save_predictor_file(reduce_predictors(), directory)
    fixture = load_fixture(fixtures_dir)
    _same_prompt(prompt, fixture.prompt, MODEL_NAME)
    return fixture


def load_fixture(fixtures_dir: Path) -> ReduceFixture:
    directory = fixtures_dir / "models" / MODEL_NAME
    processor = load_processor(directory)
    images = load_images([fixtures_dir / "images" / name for name in REDUCE_FIXTURE.images])
    prompt = prepare(processor, REDUCE_FIXTURE.messages, images, template_in_tokenizer=False)
    reference_prompt = ReferencePrompt(
        prompt.inputs["input_ids"][0].tolist(), prompt.inputs["pixel_values"], processor.image_token_id
    )
    return ReduceFixture(directory, prompt, reference_prompt, load_reference_model(directory), processor.tokenizer)


@torch.no_grad()
def check_against_transformers(fixture: ReduceFixture) -> str:
    """The unreduced reference must be transformers' LlavaForConditionalGeneration; no-op reductions
    must be the unreduced run; MustDrop's key tokens must follow transformers' CLIP attention."""
    model = load_checkpoint(fixture.directory, torch.float32)
    inputs = fixture.prompt.inputs
    prefill = model(**inputs).logits[0, -1].double()
    output = model.generate(
        **inputs,
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS,
        do_sample=False,
        eos_token_id=fixture.tokenizer.eos_token_id,
        output_logits=True,
        return_dict_in_generate=True,
    )
    greedy = output.sequences[0, inputs["input_ids"].shape[1] :].tolist()
    ours = run_reduction(fixture.model, "none", fixture.reference_prompt, NEW_TOKENS)
    scale = prefill.abs().max().item()
    worst = max(
        (ours["prefill_logits"] - prefill).abs().max().item(),
        (ours["last_logits"] - output.logits[-1][0].double()).abs().max().item(),
    )
    if ours["greedy_ids"] != greedy or worst > TRANSFORMERS_TOLERANCE * scale:
        raise RuntimeError(f"reference differs from transformers: {ours['greedy_ids']} vs {greedy}, Δ {worst:.2e}")
    for spec in NO_OP_SPECS:
        same = run_reduction(fixture.model, spec, fixture.reference_prompt, NEW_TOKENS)
        delta = (same["prefill_logits"] - ours["prefill_logits"]).abs().max().item()
        if same["greedy_ids"] != ours["greedy_ids"] or delta > 1e-9 * scale:
            raise RuntimeError(f"{spec} should equal the unreduced run (Δ {delta:.2e})")
    _check_key_tokens(fixture, model)
    return f"reference = transformers: {NEW_TOKENS} greedy tokens, logits Δ {worst:.1e} of max {scale:.2f}"


def _check_key_tokens(fixture: ReduceFixture, model) -> None:
    """Without merging, MustDrop's key tokens are the top CLS-attention patches of the last CLIP layer."""
    spec = "mustdrop:g=0,i=0,merge=off"
    ours = run_reduction(fixture.model, spec, fixture.reference_prompt, 1)["stage1"][0]["key_tokens"]
    tower = model.model.vision_tower
    tower.config._attn_implementation = "eager"
    attentions = tower(fixture.prompt.inputs["pixel_values"], output_attentions=True).attentions
    scores = attentions[-1][0, :, 0, 1:].mean(0)
    theirs = sorted(torch.topk(scores, len(ours)).indices.tolist())
    if ours != theirs:
        raise RuntimeError(f"key tokens {ours} differ from transformers' CLS attention {theirs}")


def case_record(fixture: ReduceFixture, name: str, spec: str) -> dict:
    result = run_reduction(fixture.model, spec, fixture.reference_prompt, NEW_TOKENS)
    margins = result["margins"]
    margins.check(name)
    prompt = fixture.prompt
    greedy = result["greedy_ids"]
    return {
        "model": MODEL_NAME,
        "seed": MODEL_SEED,
        "spec": spec,
        "messages": REDUCE_FIXTURE.messages,
        "images": [f"images/{image}" for image in REDUCE_FIXTURE.images],
        "prompt_text": prompt.text,
        "input_ids": prompt.inputs["input_ids"][0].tolist(),
        "image_token_index": fixture.reference_prompt.image_token_id,
        "num_image_tokens_per_image": fixture.model.config["image_seq_length"],
        "stage1": [_stage1(image) for image in result["stage1"]],
        "filters": result["filters"],
        "stats": result["stats"],
        "cache_rows_after_prefill": result["cache_rows_after_prefill"],
        "cache_rows_after_decode": result["cache_rows_after_decode"],
        "prefill_logits": _floats(result["prefill_logits"]),
        "greedy_ids": greedy,
        "greedy_text": fixture.tokenizer.decode(greedy, skip_special_tokens=True),
        "steps": result["steps"],
        "last_logits": _floats(result["last_logits"]),
        "min_margin_required": MIN_MARGIN,
        "margins": margins.record(),
    }


def _stage1(image: dict) -> dict:
    record = dict(image)
    if "windows" in record:
        record["windows"] = [dict(window, similarity=round_float(window["similarity"])) for window in record["windows"]]
    return record


def _floats(values: torch.Tensor) -> list[float]:
    return [round_float(value) for value in values.float().tolist()]
