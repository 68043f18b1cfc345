"""Builds one fixture model directory and the outputs transformers computes from it."""

import copy
import shutil
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig
from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

from . import layouts
from .catalogue import Fixture
from .jsonfmt import round_float
from .models import IMAGE_SIZE, build_config, build_model, build_processor
from .reference import (
    Generation,
    Prompt,
    generate,
    load_checkpoint,
    load_images,
    load_processor,
    min_top2_margin,
    penalised_record,
    prepare,
)

MAX_SEED_TRIES = 50
# Greedy tokens must win by this fraction of max|logit|: ten times the tolerance the engine is held
# to (1e-4), so an engine within tolerance cannot pick a different token.
MIN_MARGIN_FRACTION = 1e-3
# Changing the image or the vision feature layer must move the logits by at least this fraction of
# max|logit|, so an engine with a broken vision path cannot pass by accident.
MIN_SENSITIVITY_FRACTION = 0.05
MIN_DISTINCT_GREEDY_TOKENS = 8
SHORT_DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "f16"}


def control_token_ids(tokenizer) -> list[int]:
    """Ids of every special added token: <unk>, <s>, </s>, <image>, <pad>."""
    return sorted(token_id for token_id, token in tokenizer.added_tokens_decoder.items() if token.special)


def build_fixture(fixture: Fixture, tokenizer, out_dir: Path, fixed_seed: int | None = None) -> dict:
    """Writes models/<name>/ under out_dir and returns the expected-output record for it.

    With `fixed_seed` the model is built from that seed only (it must pass the quality checks);
    otherwise seeds are tried from `fixture.first_seed` on.
    """
    image_paths = [out_dir / "images" / name for name in fixture.images]
    images = load_images(image_paths)
    template_in_tokenizer = fixture.chat_template_file == layouts.TOKENIZER_CONFIG
    processor = build_processor(fixture.spec, tokenizer, fixture.chat_template)
    # In memory the template sits on the processor; from disk it is read from where the fixture keeps it.
    prompt = prepare(processor, fixture.messages, images, template_in_tokenizer=False)

    config = build_config(
        fixture.spec,
        vocab_size=len(tokenizer),
        image_token_id=processor.image_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    controls = control_token_ids(tokenizer)
    seeds = [fixed_seed] if fixed_seed is not None else range(fixture.first_seed, fixture.first_seed + MAX_SEED_TRIES)
    model, seed, generation = _first_good_model(fixture, seeds, config, prompt, controls, tokenizer.eos_token_id)

    directory = out_dir / "models" / fixture.name
    _save(fixture, model, processor, directory)

    # Everything recorded below comes from the files on disk, loaded back by transformers.
    disk_processor = load_processor(directory)
    disk_prompt = prepare(disk_processor, fixture.messages, images, template_in_tokenizer)
    _same_prompt(prompt, disk_prompt, fixture.name)
    _raw_tokenizer_agrees(directory, disk_prompt, disk_processor, fixture)
    disk_model = load_checkpoint(directory, torch.float32)
    _same_weights(model, disk_model, fixture.name)
    if fixture.legacy_checkpoint:
        _same_config(config, disk_model.config, fixture.name)
    disk_generation = generate(disk_model, disk_prompt.inputs, tokenizer.eos_token_id)
    _same_generation(generation, disk_generation, fixture.name)

    record = _record(fixture, seed, disk_processor, disk_prompt, disk_generation, tokenizer)
    record["repetition_penalty"] = penalised_record(
        disk_model, disk_prompt.inputs, tokenizer.eos_token_id, fixture.name
    )
    if fixture.spec.storage_dtype != torch.float32:
        native_model = load_checkpoint(directory, fixture.spec.storage_dtype)
        native = generate(native_model, disk_prompt.inputs, tokenizer.eos_token_id)
        record[f"greedy_ids_native_{SHORT_DTYPE_NAMES[fixture.spec.storage_dtype]}"] = native.greedy_ids
    return record


def _first_good_model(fixture: Fixture, seeds, config, prompt: Prompt, controls: list[int], eos_token_id: int):
    for seed in seeds:
        model = build_model(config, seed, fixture.spec.storage_dtype, controls)
        generation = generate(model, prompt.inputs, eos_token_id)
        problem = _quality_problem(model, fixture, prompt, generation, controls)
        if problem is None:
            return model, seed, generation
        print(f"  {fixture.name}: seed {seed} rejected ({problem})")
    raise RuntimeError(f"{fixture.name}: none of the seeds {list(seeds)} gives a usable model")


@torch.no_grad()
def _quality_problem(model, fixture: Fixture, prompt: Prompt, generation: Generation, controls: list[int]):
    """Why this random model would make a weak fixture, or None if it is a good one."""
    max_abs = generation.last_logits.abs().max().item()
    if any(token in controls for token in generation.greedy_ids):
        return "greedy output contains a control token"
    if len(set(generation.greedy_ids)) < MIN_DISTINCT_GREEDY_TOKENS:
        return f"greedy output repeats: {generation.greedy_ids}"
    for token, logits in zip(generation.greedy_ids, generation.step_logits):
        if token != int(torch.argmax(logits)):
            return "a greedy token is not the argmax of its raw logits"
    margin = min_top2_margin(generation.step_logits)
    if margin < MIN_MARGIN_FRACTION * max_abs:
        return f"top-2 margin {margin:.2e} too small"
    blank = dict(prompt.inputs, pixel_values=torch.zeros_like(prompt.inputs["pixel_values"]))
    if _logit_shift(model, blank, generation) < MIN_SENSITIVITY_FRACTION * max_abs:
        return "logits barely depend on the image"
    other_layer = -1 if fixture.spec.vision_feature_layer == -2 else -2
    shifted = _logit_shift(model, dict(prompt.inputs, vision_feature_layer=other_layer), generation)
    if shifted < MIN_SENSITIVITY_FRACTION * max_abs:
        return "logits barely depend on the vision feature layer"
    if fixture.spec.is_next:
        newline = model.model.image_newline
        saved = newline.detach().clone()
        newline.zero_()
        shifted = _logit_shift(model, prompt.inputs, generation)
        newline.copy_(saved)
        if shifted < MIN_SENSITIVITY_FRACTION * max_abs:
            return "logits barely depend on the image_newline embedding"
    return None


def _logit_shift(model, inputs: dict, generation: Generation) -> float:
    logits = model(**inputs).logits[0, -1].float()
    return (logits - generation.last_logits).abs().max().item()


def _save(fixture: Fixture, model, processor, directory: Path) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    stored = model
    if fixture.spec.storage_dtype != torch.float32:
        stored = copy.deepcopy(model).to(fixture.spec.storage_dtype)
    save_options = {"max_shard_size": fixture.max_shard_size} if fixture.max_shard_size else {}
    stored.save_pretrained(directory, **save_options)
    processor.save_pretrained(directory)

    if fixture.processor_files == "split":
        layouts.split_processor_config(directory)
    if fixture.chat_template_file == layouts.CHAT_TEMPLATE_JSON:
        layouts.chat_template_to_json_file(directory)
    elif fixture.chat_template_file == layouts.TOKENIZER_CONFIG:
        layouts.chat_template_to_tokenizer_config(directory)
    if fixture.legacy_checkpoint:
        layouts.legacy_model_config(
            directory,
            LlavaConfig().to_dict(),
            LlamaConfig().to_dict(),
            CLIPVisionConfig().to_dict(),
        )
        layouts.hub_weight_names(directory)


def _same_prompt(built: Prompt, loaded: Prompt, name: str) -> None:
    if built.text != loaded.text:
        raise RuntimeError(f"{name}: prompt from the saved files differs: {loaded.text!r} vs {built.text!r}")
    for key in ("input_ids", "pixel_values"):
        if not torch.equal(built.inputs[key], loaded.inputs[key]):
            raise RuntimeError(f"{name}: {key} from the saved processor differ from the in-memory one")


def _raw_tokenizer_agrees(directory: Path, prompt: Prompt, processor, fixture: Fixture) -> None:
    """The `tokenizers` library on tokenizer.json alone (what a Rust engine loads) gives the same ids
    for the prompt with every <image> expanded to its placeholder tokens."""
    raw = Tokenizer.from_file(str(directory / "tokenizer.json"))
    ids = prompt.inputs["input_ids"][0].tolist()
    pieces = prompt.text.split(processor.image_token)
    expanded = pieces[0]
    for count, piece in zip(image_token_runs(ids, processor.image_token_id), pieces[1:]):
        expanded += processor.image_token * count + piece
    ids = raw.encode(expanded).ids
    if ids != prompt.inputs["input_ids"][0].tolist():
        raise RuntimeError(f"{fixture.name}: tokenizer.json alone tokenises the expanded prompt differently")


def image_token_runs(ids: list[int], image_token_id: int) -> list[int]:
    """The length of each run of image tokens in `ids`: one per image, in order."""
    runs = []
    previous = None
    for token in ids:
        if token == image_token_id:
            if previous == image_token_id:
                runs[-1] += 1
            else:
                runs.append(1)
        previous = token
    return runs


def _same_weights(built, loaded, name: str) -> None:
    expected = built.state_dict()
    actual = loaded.state_dict()
    if expected.keys() != actual.keys():
        raise RuntimeError(f"{name}: parameter names differ after reload: {sorted(expected.keys() ^ actual.keys())}")
    for key, tensor in expected.items():
        if not torch.equal(tensor, actual[key]):
            raise RuntimeError(f"{name}: {key} differs after reload")


def _same_config(built: LlavaConfig, loaded: LlavaConfig, name: str) -> None:
    for section in ("text_config", "vision_config"):
        expected = getattr(built, section).to_dict()
        actual = getattr(loaded, section).to_dict()
        keys = (expected.keys() | actual.keys()) - {"dtype"}
        differing = sorted(key for key in keys if expected.get(key) != actual.get(key))
        if differing:
            raise RuntimeError(f"{name}: {section} loads differently from the legacy config.json: {differing}")


def _same_generation(built: Generation, loaded: Generation, name: str) -> None:
    if built.greedy_ids != loaded.greedy_ids:
        raise RuntimeError(f"{name}: greedy tokens differ after reload")
    if not torch.equal(built.last_logits, loaded.last_logits):
        delta = (built.last_logits - loaded.last_logits).abs().max().item()
        raise RuntimeError(f"{name}: logits differ after reload by {delta:.3e}")


def pixel_record(fixture: Fixture, prompt: Prompt, pixel_values: torch.Tensor) -> dict:
    """Every pixel value for a LLaVA model. A NeXT prompt holds several crops per image (~7k values
    each), so only each real crop's mean and mean absolute value are kept (tile order and content
    still show in them; the tiles' pixels themselves are held to transformers by the anyres goldens)."""
    if not fixture.spec.is_next:
        return {
            "shape": list(pixel_values.shape),
            "data": [round_float(value) for value in pixel_values.flatten().tolist()],
        }
    means, mean_abs = [], []
    for crops, count in zip(pixel_values, next_crop_counts(fixture, prompt)):
        for crop in crops[:count]:
            means.append(round_float(crop.mean().item()))
            mean_abs.append(round_float(crop.abs().mean().item()))
    return {"shape": list(pixel_values.shape), "crop_mean": means, "crop_mean_abs": mean_abs}


def next_crop_counts(fixture: Fixture, prompt: Prompt) -> list[int]:
    """Crops (base + tiles) of each image of a NeXT prompt; pixel_values pads every image to the most."""
    grids = [list(grid) for grid in fixture.spec.grid_pinpoints]
    sizes = prompt.inputs["image_sizes"].tolist()
    return [image_size_to_num_patches(size, grids, IMAGE_SIZE) for size in sizes]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _record(fixture: Fixture, seed: int, processor, prompt: Prompt, generation: Generation, tokenizer) -> dict:
    pixel_values = prompt.inputs["pixel_values"]
    logits = generation.last_logits
    input_ids = prompt.inputs["input_ids"][0].tolist()
    if fixture.spec.is_next:
        # Each image's count depends on its size; its tiles stand in pixel_values one after another.
        image_tokens = {
            "image_tokens": image_token_runs(input_ids, processor.image_token_id),
            "image_sizes": prompt.inputs["image_sizes"].tolist(),
            "image_grid_pinpoints": [list(grid) for grid in fixture.spec.grid_pinpoints],
        }
    else:
        image_tokens = {"num_image_tokens_per_image": fixture.spec.image_tokens_per_image}
    return {
        "model": fixture.name,
        "seed": seed,
        "storage_dtype": _dtype_name(fixture.spec.storage_dtype),
        "chat_template_file": fixture.chat_template_file,
        "image_processor_class": type(processor.image_processor).__name__,
        "messages": fixture.messages,
        "images": [f"images/{name}" for name in fixture.images],
        "prompt_text": prompt.text,
        "input_ids": input_ids,
        "image_token_index": processor.image_token_id,
        **image_tokens,
        "pixel_values": pixel_record(fixture, prompt, pixel_values),
        "max_abs_logit": round_float(logits.abs().max().item()),
        "greedy_min_top2_margin": round_float(min_top2_margin(generation.step_logits)),
        "greedy_ids": generation.greedy_ids,
        "greedy_text": tokenizer.decode(generation.greedy_ids, skip_special_tokens=True),
        "last_logits": [round_float(value) for value in logits.tolist()],
    }
